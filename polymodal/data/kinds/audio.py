"""Audio processor: file paths, encoded bytes or {"array", "sampling_rate"} -> ``wave`` float32 [N, T], ``length``.

Options (fitted unless the user set them):

* ``sample_rate``: the most common training sampling rate; other rates are resampled (``librosa.resample``);
* ``max_seconds``: the 95th percentile of training durations, rounded up to 0.1 s, capped at 10 s.

Every clip is mixed to mono, cropped to ``T = round(max_seconds * sample_rate)`` samples (the start is kept) and
zero-padded; ``length`` holds the real samples after cropping (>= 1). Cropping happens **before** resampling:
only the first ``T * rate / sample_rate`` source samples (plus ``RESAMPLE_MARGIN_SECONDS`` of context for the
resampling filter) are read and resampled, so a long clip at an odd rate (a 200 KB WAV at 1 Hz holds 100000 s)
costs what the kept seconds cost. A float wave value beyond ``_common.MAX_SCALED`` (1e6) in magnitude is a decode
error (``_common.check_scaled``; a wave is not standardised, the encoder sees it as it is). Paths go through
``_common.checked_file`` (regular files only, size-bounded).

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
    check_scaled,
    checked_file,
    describe,
    fail,
    file_problem,
    most_common,
    rows_and_values,
    sample_cells,
    to_numeric_array,
    track,
)
from polymodal.data.kinds._audio_header import truncation
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

DEFAULT_SAMPLE_RATE = 16000
MAX_DEFAULT_SECONDS = 10.0
RESAMPLE_MARGIN_SECONDS = 0.1  # source read past the crop point, so the resampler's filter sees real context
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


def source_samples(max_len: int | None, rate: int, target_rate: int | None) -> int | None:
    """How many samples at ``rate`` are needed for ``max_len`` samples at ``target_rate`` (None: all)."""
    if max_len is None or target_rate is None:
        return None
    if rate == target_rate:
        return max_len
    return int(math.ceil(max_len * rate / target_rate)) + 16 + int(math.ceil(RESAMPLE_MARGIN_SECONDS * rate))


def _read_sf(source: Any, target_rate: int | None, max_len: int | None) -> tuple[np.ndarray, int, int]:
    """soundfile: (mono float32 wave, rate, total frames in the file).

    Only the frames needed for ``max_len`` samples at ``target_rate`` are read (``source_samples``): the rest
    would be cropped after resampling anyway.
    """
    import soundfile as sf

    with sf.SoundFile(source) as f:
        rate, total = int(f.samplerate), int(f.frames)
        need = source_samples(max_len, rate, target_rate)
        frames = min(total, need) if need is not None and total >= 0 else -1
        y = f.read(frames, dtype="float32", always_2d=True)
    y = y[:, 0] if y.shape[1] == 1 else y.mean(axis=1)
    return y, rate, (total if total >= 0 else len(y))


def _read_librosa(path: str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, rate = librosa.load(path, sr=None, mono=True, duration=seconds)
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
        path = checked_file(ctx, cell)  # a regular file, not too large, inside ctx.root
        try:
            y, rate, total = _read_sf(path, target_rate, max_len)
        except Exception as e:  # noqa: BLE001 - every library error becomes a DecodeError
            problem = file_problem(path, cell, ctx)
            if problem is not None:
                raise problem from None
            if cell.lower().endswith(_LIBROSA_ONLY):
                try:
                    seconds = None
                    if max_len is not None and target_rate:
                        seconds = max_len / target_rate + RESAMPLE_MARGIN_SECONDS + 0.1
                    y, rate = _read_librosa(str(path), seconds)
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
            path = checked_file(ctx, v)  # never sf.info a FIFO: it would block
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
                    need = source_samples(max_len, rate, target)
                    if need is not None and len(y) > need:
                        y = y[:need]  # crop before resampling (arrays and decoders that read everything)
                    check_finite(y, "audio")
                    check_scaled(y, y, "audio", standardised=False)  # a float wave over 1e6 overflows too
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
