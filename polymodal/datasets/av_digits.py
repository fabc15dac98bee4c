"""`av-digits`: a small AV-MNIST-style audio-visual benchmark shipped with polymodal.

Each sample pairs a spoken digit from the Free Spoken Digit Dataset (FSDD, 8 kHz mono, CC BY-SA 4.0)
with a handwritten MNIST image of the same digit (CC BY-SA 3.0, Y. LeCun and C. Cortes). The pairing is
fixed (seeded) and made once by ``scripts/build_av_digits.py``:

- ``train``: the 2700 FSDD clips with takes 5-49, each paired with a distinct MNIST *train* image;
- ``test``: the 300 FSDD clips with takes 0-4 (the official FSDD test split), each paired with a distinct
  MNIST *test* image.

Six speakers appear in both splits (FSDD's official split is by take, not by speaker); the MNIST images of
the two splits come from MNIST's own disjoint train/test sets. Labels are balanced: 270 train and 30 test
samples per digit.

Degradation (``degrade=True``, the default) follows the AV-MNIST idea of making each modality alone
insufficient, so that fusion and missing-modality robustness become measurable. It is applied at load time,
deterministically: every sample has its own random stream, seeded by ``(DEGRADE_SEED, split, row)``, so a
sample is degraded the same way whatever else is loaded with it (``limit`` subsets included).

- image: a black ``OCCLUSION_SIZE`` x ``OCCLUSION_SIZE`` pixel square at a uniformly random position
  (fully inside the 28x28 image) erases part of the digit, then Gaussian noise with standard deviation
  ``IMAGE_NOISE_STD`` is added to the pixels scaled to [0, 1]; the result is clipped to [0, 1] and
  rounded back to uint8;
- audio: additive white Gaussian noise at ``AUDIO_SNR_DB`` dB signal-to-noise ratio (signal power = the
  clip's mean squared amplitude); where the noisy clip would leave [-1, 1] it is scaled down by its peak,
  which leaves the SNR unchanged.

Calibrated so that polymodal's own unimodal models (the built-in ``image_conv`` / ``audio_logmel`` encoders,
trained as ``polymodal demo`` trains them) land between 0.60 and 0.80 test accuracy: 0.65 (image) and 0.72
(audio); see ``_data/av_digits/README.md``.

    from polymodal.datasets import load_av_digits
    train = load_av_digits("train")   # columns: image (PNG bytes), audio ({"array", "sampling_rate"}), digit
    test = load_av_digits("test", with_meta=True)   # + speaker, take, mnist_index
"""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "_data" / "av_digits"
SPLITS = ("train", "test")
SAMPLING_RATE = 8000
N_PER_SPLIT = {"train": 2700, "test": 300}

# degradation parameters (see the module docstring; calibrated by scripts/calibrate_av_digits.py)
OCCLUSION_SIZE = 14
IMAGE_NOISE_STD = 0.25
AUDIO_SNR_DB = -7.0
DEGRADE_SEED = 1234

__all__ = ["SPLITS", "load_av_digits", "export_av_digits"]


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown av-digits split {split!r}; valid splits: {', '.join(repr(s) for s in SPLITS)}")
    return SPLITS.index(split)


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, np.ndarray]:
    """The shipped arrays, decoded once per process (read-only; callers copy what they hand out)."""
    import soundfile as sf

    meta_path, audio_path = DATA_DIR / "meta.npz", DATA_DIR / "audio.flac"
    for p in (meta_path, audio_path):
        if not p.exists():
            raise FileNotFoundError(
                f"av-digits data file {p} is missing; reinstall polymodal or rebuild it with "
                f"`python scripts/build_av_digits.py`"
            )
    with np.load(meta_path, allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    audio, sr = sf.read(str(audio_path), dtype="int16")
    if sr != SAMPLING_RATE:
        raise ValueError(f"{audio_path}: expected {SAMPLING_RATE} Hz, found {sr} Hz")
    raw["audio"] = audio
    for a in raw.values():
        a.flags.writeable = False
    return raw


@functools.lru_cache(maxsize=len(SPLITS))
def _split_rows(split_id: int) -> np.ndarray:
    rows = np.flatnonzero(_raw()["split"] == split_id)
    rows.flags.writeable = False
    return rows


def _stratified(digits: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of a deterministic class-stratified subset: the first rows of each digit, in split order."""
    n = len(digits)
    if limit is None or limit >= n:
        return np.arange(n)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    classes = np.unique(digits)
    quota = {c: limit // len(classes) + (i < limit % len(classes)) for i, c in enumerate(classes)}
    keep = np.concatenate([np.flatnonzero(digits == c)[: quota[c]] for c in classes])
    return np.sort(keep)


def _rngs(split_id: int, position: int, seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (image, audio) random streams for one sample, fixed by its split and row."""
    img_ss, aud_ss = np.random.SeedSequence([seed, split_id, position]).spawn(2)
    return np.random.default_rng(img_ss), np.random.default_rng(aud_ss)


def degrade_image(image: np.ndarray, rng: np.random.Generator, occlusion: int = OCCLUSION_SIZE,
                  noise_std: float = IMAGE_NOISE_STD) -> np.ndarray:
    """Occlude a random ``occlusion``-pixel square, add N(0, noise_std) on [0, 1] pixels; uint8 in, uint8 out."""
    x = image.astype(np.float32) / 255.0
    h, w = x.shape
    if occlusion > 0:
        top, left = rng.integers(0, h - occlusion + 1), rng.integers(0, w - occlusion + 1)
        x[top : top + occlusion, left : left + occlusion] = 0.0
    if noise_std > 0:
        x += rng.normal(0.0, noise_std, size=x.shape).astype(np.float32)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def degrade_audio(wave: np.ndarray, rng: np.random.Generator, snr_db: float | None = AUDIO_SNR_DB) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` dB SNR to a float waveform; rescale by the peak if it leaves [-1, 1]."""
    x = wave.astype(np.float64)
    if snr_db is not None:
        power = float(np.mean(x**2)) if len(x) else 0.0
        x = x + rng.normal(0.0, np.sqrt(power / 10.0 ** (snr_db / 10.0)), size=x.shape)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 1.0:
            x /= peak
    return x.astype(np.float32)


def _arrays(split: str, degrade: bool = True, limit: int | None = None, *, occlusion: int = OCCLUSION_SIZE,
            noise_std: float = IMAGE_NOISE_STD, snr_db: float | None = AUDIO_SNR_DB,
            seed: int = DEGRADE_SEED) -> dict[str, object]:
    """Numpy view of a split (fresh arrays): images (N,28,28) uint8, audio list of float32, digit, metadata."""
    split_id = _check_split(split)
    raw = _raw()
    rows = _split_rows(split_id)
    positions = _stratified(raw["digit"][rows].astype(np.int64), limit)
    rows = rows[positions]
    images = raw["images"][rows].copy()
    audio = []
    for k, (pos, row) in enumerate(zip(positions, rows)):
        start, length = int(raw["audio_start"][row]), int(raw["audio_length"][row])
        wave = raw["audio"][start : start + length].astype(np.float32) / 32768.0
        if degrade:
            img_rng, aud_rng = _rngs(split_id, int(pos), seed)
            images[k] = degrade_image(images[k], img_rng, occlusion, noise_std)
            wave = degrade_audio(wave, aud_rng, snr_db)
        audio.append(wave)
    return {
        "images": images,
        "audio": audio,
        "digit": raw["digit"][rows].astype(np.int64),
        "speaker": raw["speaker"][rows].astype(str),
        "take": raw["take"][rows].astype(np.int64),
        "mnist_index": raw["mnist_index"][rows].astype(np.int64),
        "position": positions,
    }


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@functools.lru_cache(maxsize=2 * len(SPLITS))
def _cached_split(split: str, degrade: bool) -> dict[str, object]:
    """A whole split with the default degradation, PNG-encoded once per process (arrays read-only)."""
    a = _arrays(split, degrade=degrade)
    a["png"] = tuple(_png(img) for img in a["images"])
    for v in a.values():
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    for w in a["audio"]:
        w.flags.writeable = False
    return a


def load_av_digits(split: str = "train", degrade: bool = True, with_meta: bool = False,
                   limit: int | None = None) -> pd.DataFrame:
    """Load one split of `av-digits` as a DataFrame (a fresh one every call).

    Columns: ``image`` (PNG bytes, 28x28 grayscale uint8, white digit on black), ``audio``
    (``{"array": float32 waveform in [-1, 1], "sampling_rate": 8000}``) and ``digit`` (int 0-9); with
    ``with_meta`` also ``speaker`` (FSDD speaker name), ``take`` (FSDD take 0-49) and ``mnist_index`` (the
    row of the paired image in MNIST's own train or test set). ``degrade=False`` returns the clean
    source data. ``limit`` keeps a deterministic class-stratified subset of that many rows (the first rows
    of each digit; a sample is degraded identically with or without ``limit``).
    """
    _check_split(split)
    if limit is None or (not isinstance(limit, bool) and isinstance(limit, (int, np.integer))
                         and limit >= N_PER_SPLIT[split]):
        a = _cached_split(split, bool(degrade))  # whole split: decode, degrade and encode once per process
    else:  # a small subset: cheaper to compute than the whole split (identical rows either way)
        a = _arrays(split, degrade=bool(degrade), limit=limit)
        a["png"] = [_png(img) for img in a["images"]]
    keep = np.arange(len(a["digit"]))
    data: dict[str, object] = {
        "image": [a["png"][i] for i in keep],  # bytes are immutable: sharing them is safe
        "audio": [{"array": a["audio"][i].copy(), "sampling_rate": SAMPLING_RATE} for i in keep],
        "digit": a["digit"][keep].copy(),
    }
    if with_meta:
        data.update(speaker=a["speaker"][keep].copy(), take=a["take"][keep].copy(),
                    mnist_index=a["mnist_index"][keep].copy())
    return pd.DataFrame(data)


def export_av_digits(out_dir: str | Path, splits: tuple[str, ...] | list[str] = SPLITS, limit: int | None = None,
                     *, degrade: bool = True, progress: bool = True) -> dict[str, Path]:
    """Write `av-digits` as ordinary files, the way a user would hold their own data.

    ``out_dir/images/{split}_{i:05d}.png``, ``out_dir/audio/{split}_{i:05d}.wav`` (16-bit PCM, 8 kHz) and
    one manifest ``out_dir/{split}.parquet`` per split with columns ``image`` and ``audio`` (paths relative
    to ``out_dir``) and ``digit``; the license and README are copied alongside. Returns
    ``{split: manifest path}``.
    """
    import soundfile as sf
    from rich.progress import track

    if isinstance(splits, str):
        splits = (splits,)
    for split in splits:
        _check_split(split)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    manifests: dict[str, Path] = {}
    for split in splits:
        df = load_av_digits(split, degrade=degrade, limit=limit)
        image_paths, audio_paths = [], []
        rows = range(len(df))
        for i in track(rows, description=f"av-digits {split}", disable=not progress):
            img_rel, wav_rel = f"images/{split}_{i:05d}.png", f"audio/{split}_{i:05d}.wav"
            (out / img_rel).write_bytes(df["image"].iat[i])
            sf.write(str(out / wav_rel), df["audio"].iat[i]["array"], SAMPLING_RATE, subtype="PCM_16")
            image_paths.append(img_rel)
            audio_paths.append(wav_rel)
        manifest = pd.DataFrame({"image": image_paths, "audio": audio_paths, "digit": df["digit"].to_numpy()})
        manifests[split] = out / f"{split}.parquet"
        manifest.to_parquet(manifests[split], index=False)
    for name in ("LICENSE.md", "README.md"):
        shutil.copyfile(DATA_DIR / name, out / name)
    return manifests
