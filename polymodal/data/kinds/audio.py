"""Audio processor: file paths, encoded bytes or {"array", "sampling_rate"} -> ``wave`` float32 [N, T], ``length``.

Options (fitted unless the user set them):

* ``sample_rate``: the most common training sampling rate; other rates are resampled (``librosa.resample``);
* ``max_seconds``: the 95th percentile of training durations, rounded up to 0.1 s, capped at 10 s.

Every clip is mixed to mono, cropped to ``T = round(max_seconds * sample_rate)`` samples (the start is kept) and
zero-padded; ``length`` holds the real samples after cropping (>= 1).

A WAV or AIFF file (or bytes) whose header declares more frames than it holds is truncated: a decode error (row,
column, file, declared and held frames), or a missing value counted as ``truncated audio file``.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import (
    CellError,
    check_finite,
    check_not_url,
    describe,
    fail,
    file_problem,
    most_common,
    resolve,
    rows_and_values,
    sample_cells,
    to_numeric_array,
    track,
)
from polymodal.data.kinds._audio_header import truncation
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

DEFAULT_SAMPLE_RATE = 16000
MAX_DEFAULT_SECONDS = 10.0
FIT_SAMPLE_AUDIO = 2000  # durations are cheap to read (headers only), so look at more clips than for images
_LIBROSA_ONLY = (".mp3", ".m4a", ".aac", ".wma", ".mp4")
CORRUPT = "corrupt audio file"  # the decode report's cause for a file or bytes no decoder can read
_EXPECTED = "a file path, encoded audio bytes, or a dict {'array': 1-D wave, 'sampling_rate': int}"


def _unwrap(v: Any) -> Any:
    """Hugging Face ``Audio`` cells: decoded {"array", "sampling_rate"} stays; undecoded {"bytes", "path"} unwraps."""
    if isinstance(v, dict):
        if "array" in v:
            return v
        if v.get("bytes") is not None:
            return v["bytes"]
        if v.get("path"):
            return v["path"]
        raise CellError(f"expected {_EXPECTED}, got a dict with keys {sorted(v)}")
    return v


def _mono(y: np.ndarray) -> np.ndarray:
    """[T] or [T, C] / [C, T] -> [T] float32 (channels-first when the first axis is short and the shorter one)."""
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise CellError(f"an audio array must be 1-D [T] (or 2-D with channels), got shape {y.shape}")
    if y.shape[0] < y.shape[1] and y.shape[0] <= 8:
        return y.mean(axis=0)
    return y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]


def _to_float_wave(arr: np.ndarray) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.integer):  # PCM integers -> [-1, 1]
        scale = float(np.iinfo(arr.dtype).max) + 1.0
        return arr.astype(np.float32) / np.float32(scale)
    return arr.astype(np.float32, copy=False)


def _read_sf(source: Any, target_rate: int | None, max_len: int | None) -> tuple[np.ndarray, int, int]:
    """soundfile: (mono float32 wave, rate, total frames in the file).

    When the file is already at ``target_rate``, only the first ``max_len`` frames are read (the rest is cropped).
    """
    import soundfile as sf

    with sf.SoundFile(source) as f:
        rate, total = int(f.samplerate), int(f.frames)
        crop = max_len is not None and rate == target_rate and total >= 0
        frames = min(total, max_len) if crop else -1
        y = f.read(frames, dtype="float32", always_2d=True)
    y = y[:, 0] if y.shape[1] == 1 else y.mean(axis=1)
    return y, rate, (total if total >= 0 else len(y))


def _read_librosa(path: str) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, rate = librosa.load(path, sr=None, mono=True)
    return np.asarray(y, dtype=np.float32), int(rate)


def _load(
    v: Any, ctx: DecodeContext, target_rate: int | None, max_len: int | None
) -> tuple[np.ndarray, int, int, str | None]:
    """A cell -> (mono float32 wave, its rate, its full length in samples, file name for errors).

    When the file's rate already equals ``target_rate`` only the first ``max_len`` samples are read.
    """
    v = _unwrap(v)
    if isinstance(v, (str, os.PathLike)):
        cell = os.fspath(v)
        check_not_url(cell)
        path = resolve(ctx, cell)
        try:
            y, rate, total = _read_sf(path, target_rate, max_len)
        except Exception as e:  # noqa: BLE001 - every library error becomes a DecodeError
            problem = file_problem(path, cell, ctx)
            if problem is not None:
                raise problem from None
            if cell.lower().endswith(_LIBROSA_ONLY):
                try:
                    y, rate = _read_librosa(str(path))
                    return y, rate, len(y), cell
                except Exception as e2:  # noqa: BLE001
                    raise CellError(f"cannot decode the audio file: {e2}", file=cell, cause=CORRUPT) from e2
            raise CellError(
                f"cannot decode the audio file (corrupt, or not a supported format): {e}", file=cell, cause=CORRUPT
            ) from e
        _check_complete(path, cell)
        return y, rate, total, cell
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if not b:
            raise CellError("the cell holds empty bytes (0 bytes)", cause="empty file")
        try:
            y, rate, total = _read_sf(io.BytesIO(b), target_rate, max_len)
        except Exception as e:  # noqa: BLE001
            raise CellError(
                f"cannot decode the audio bytes (corrupt, or not WAV/FLAC/OGG/MP3): {e}", cause=CORRUPT
            ) from e
        _check_complete(b, None)
        return y, rate, total, None
    if isinstance(v, dict):
        try:
            rate = int(v["sampling_rate"])
            assert rate > 0
        except Exception:  # noqa: BLE001
            raise CellError(
                f"the audio dict needs a positive integer 'sampling_rate', got {v.get('sampling_rate')!r}"
            ) from None
        arr = to_numeric_array(v["array"], "audio array")
        y = _mono(_to_float_wave(arr))
        check_finite(y, "audio array")
        return y, rate, len(y), None
    if isinstance(v, (np.ndarray, list, tuple)):
        raise CellError(
            "a bare array has no sampling rate",
            hint="store audio arrays as {'array': wave, 'sampling_rate': rate}, or as file paths / encoded bytes",
        )
    raise CellError(f"expected {_EXPECTED}, got {describe(v)}")


def _check_complete(source: Any, cell: str | None) -> None:
    """A WAV/AIFF whose header declares more frames than the file holds is truncated: libsndfile would read
    what is there without complaint, so the header is checked here (``_audio_header.truncation``)."""
    problem = truncation(source)
    if problem is not None:
        raise CellError(
            problem,
            file=cell,
            hint="the file was cut short (an interrupted copy or download): copy or export it again, or pass "
            "on_error='missing' (CLI: --on-error missing) to treat truncated files as missing values",
            cause="truncated audio file",
        )


def _info(v: Any, ctx: DecodeContext) -> tuple[int, float] | None:
    """(rate, duration in seconds) of a training cell, cheaply (headers only for files); None if unreadable."""
    import soundfile as sf

    try:
        v = _unwrap(v)
        if isinstance(v, dict):
            rate = int(v["sampling_rate"])
            return rate, len(_mono(to_numeric_array(v["array"], "audio array"))) / rate
        if isinstance(v, (str, os.PathLike)):
            path = resolve(ctx, v)
            try:
                info = sf.info(str(path))
            except Exception:  # noqa: BLE001
                y, rate, _, _ = _load(v, ctx, None, None)
                return rate, len(y) / rate
            return int(info.samplerate), float(info.frames) / info.samplerate
        if isinstance(v, (bytes, bytearray, memoryview)):
            info = sf.info(io.BytesIO(bytes(v)))
            return int(info.samplerate), float(info.frames) / info.samplerate
    except Exception:  # noqa: BLE001 - unreadable cells are reported when the column is decoded
        return None
    return None


def _resample(y: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Same result as ``librosa.resample(y, orig_sr=rate, target_sr=target)`` (its default ``soxr_hq``), calling
    soxr directly when available: importing librosa costs seconds (numba), soxr milliseconds."""
    try:
        import soxr
    except ImportError:  # pragma: no cover - soxr is a librosa dependency
        import librosa

        return np.asarray(librosa.resample(y, orig_sr=rate, target_sr=target), dtype=np.float32)
    out = np.asarray(soxr.resample(y, rate, target, quality="HQ"), dtype=np.float32)
    n = int(np.ceil(len(y) * target / rate))  # librosa's output length
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return out[:n]


def _options(spec: ModalitySpec) -> tuple[int, int]:
    try:
        rate = int(spec.options["sample_rate"])
        seconds = float(spec.options["max_seconds"])
        assert rate > 0 and seconds > 0
    except (KeyError, ValueError, TypeError, AssertionError):
        raise SchemaError(
            f"modality {spec.name!r}: options sample_rate (positive int) and max_seconds (positive number) are "
            f"required, got {spec.options!r}; fit the schema on a training table first"
        ) from None
    return rate, max(1, int(round(seconds * rate)))


@PROCESSORS.register("audio")
class AudioProcessor(Processor):
    """Audio (file paths, encoded bytes, {array, sampling_rate}) -> wave float32 [N, T] mono, length int64 [N]."""

    kind = "audio"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if "sample_rate" in opts and "max_seconds" in opts:
            return
        infos = [i for _r, v in sample_cells(frame, spec.column, k=FIT_SAMPLE_AUDIO) if (i := _info(v, ctx))]
        if "sample_rate" not in opts:
            opts["sample_rate"] = int(most_common([r for r, _ in infos])) if infos else DEFAULT_SAMPLE_RATE
        if "max_seconds" not in opts:
            durations = [d for _, d in infos if d > 0]
            if durations:
                p95 = float(np.percentile(durations, 95))
                seconds = math.ceil(round(p95 * 10, 6)) / 10
                opts["max_seconds"] = float(min(max(seconds, 0.1), MAX_DEFAULT_SECONDS))
            else:
                opts["max_seconds"] = MAX_DEFAULT_SECONDS

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        target, max_len = _options(spec)
        n, col = len(frame), spec.column
        wave = np.zeros((n, max_len), dtype=np.float32)
        length = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        for i, row, v in track(rows_and_values(frame, col), n, f"decoding audio ({spec.name})", ctx):
            if is_missing(v):
                n_missing += 1
                continue
            try:
                y, rate, total, file = _load(v, ctx, target, max_len)
                try:
                    if total == 0 or len(y) == 0:
                        raise CellError("the audio is empty (0 samples)", cause="empty file")
                    check_finite(y, "audio")
                    if rate != target:
                        y = _resample(y, rate, target)
                except CellError as e:
                    e.file = e.file or file
                    raise
                except Exception as e:  # noqa: BLE001
                    raise CellError(f"cannot resample the audio from {rate} Hz to {target} Hz: {e}", file=file) from e
            except CellError as e:
                fail(ctx, row, col, e)
                continue
            k = min(len(y), max_len)
            if k == 0:  # a clip so short that resampling left nothing
                k, y = 1, np.zeros(1, dtype=np.float32)
            wave[i, :k] = y[:k]
            length[i] = k
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"wave": wave, "length": length}, present
