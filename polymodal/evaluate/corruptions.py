"""Per-modality corruptions of *decoded* arrays, at a severity ``level`` in [0, 1] (0 = unchanged).

A corruption maps one modality's decoded arrays (the processor contract in ``data/kinds/base.py``) to corrupted
copies; it never touches absent rows (they hold zeros and stay zeros) nor padding (beyond ``length``).

===============  ===============  ====================================================================
name             kinds            what ``level`` means
===============  ===============  ====================================================================
``gaussian``     image, depth,    additive N(0, level^2) noise: image pixels are in [0, 1] (and clipped
                 tabular,         back to it); depth, numeric tabular and time series are standardised,
                 timeseries       so ``level`` is in standard deviations
``occlusion``    image, depth     a square of side ``level * min(H, W)`` at a random place set to 0
``audio_noise``  audio            white noise with RMS = ``level`` x the clip's RMS (0.5 -> SNR 6 dB)
``token_drop``   text             each token removed with probability ``level`` (the rest close up)
``feature_drop`` tabular          each numeric / categorical feature hidden with probability ``level``
===============  ===============  ====================================================================

``DEFAULT_CORRUPTION`` picks one per kind (MultiBench's choices: Gaussian noise for images and signals, additive
noise for audio, token dropout for text). ``corrupt_dataset`` applies one to one modality of a
``DecodedDataset`` and returns a new dataset sharing every other array.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from polymodal.data.dataset import DecodedDataset
from polymodal.registry import Registry

Arrays = dict[str, Tensor]
Corruption = Callable[[Arrays, Tensor, float, np.random.Generator], Arrays]

CORRUPTIONS: Registry = Registry("corruption")
CORRUPTION_KINDS: dict[str, tuple[str, ...]] = {}

DEFAULT_CORRUPTION = {
    "image": "gaussian",
    "depth": "gaussian",
    "audio": "audio_noise",
    "text": "token_drop",
    "tabular": "gaussian",
    "timeseries": "gaussian",
}


def _register(name: str, kinds: tuple[str, ...]):
    def deco(fn: Corruption) -> Corruption:
        CORRUPTION_KINDS[name] = kinds
        return CORRUPTIONS.register(name)(fn)

    return deco


def _normal(rng: np.random.Generator, shape, like: Tensor) -> Tensor:
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(like.dtype)


def _length_mask(length: Tensor, steps: int) -> Tensor:
    return torch.arange(steps)[None, :] < length[:, None]


@_register("gaussian", ("image", "depth", "tabular", "timeseries"))
def gaussian(arrays: Arrays, present: Tensor, level: float, rng: np.random.Generator) -> Arrays:
    out = dict(arrays)
    rows = present[:, None]
    if "pixels" in arrays:
        x = arrays["pixels"]
        noisy = x + level * _normal(rng, x.shape, x)
        if float(x.min()) >= 0.0 and float(x.max()) <= 1.0:  # images live in [0, 1]; depth is standardised
            noisy = noisy.clamp(0.0, 1.0)
        out["pixels"] = torch.where(present[:, None, None, None], noisy, x)
    if "series" in arrays:
        x = arrays["series"]
        real = _length_mask(arrays["length"], x.shape[1])[..., None] & present[:, None, None]
        out["series"] = torch.where(real, x + level * _normal(rng, x.shape, x), x)
    if "num" in arrays:
        x = arrays["num"]
        real = arrays["num_mask"] & rows
        out["num"] = torch.where(real, x + level * _normal(rng, x.shape, x), x)
    return out


@_register("occlusion", ("image", "depth"))
def occlusion(arrays: Arrays, present: Tensor, level: float, rng: np.random.Generator) -> Arrays:
    x = arrays["pixels"].clone()
    _, _, h, w = x.shape
    side = int(round(level * min(h, w)))
    if side > 0:
        for i in np.flatnonzero(present.numpy()):
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            x[i, :, top : top + side, left : left + side] = 0.0
    return {**arrays, "pixels": x}


@_register("audio_noise", ("audio",))
def audio_noise(arrays: Arrays, present: Tensor, level: float, rng: np.random.Generator) -> Arrays:
    wave, length = arrays["wave"], arrays["length"]
    real = _length_mask(length, wave.shape[1]) & present[:, None]
    power = (wave.pow(2) * real).sum(1) / length.clamp(min=1)
    rms = power.sqrt()[:, None]
    noisy = wave + level * rms * _normal(rng, wave.shape, wave)
    return {**arrays, "wave": torch.where(real, noisy, wave)}


@_register("token_drop", ("text",))
def token_drop(arrays: Arrays, present: Tensor, level: float, rng: np.random.Generator) -> Arrays:
    ids, length = arrays["ids"], arrays["length"]
    n, steps = ids.shape
    real = _length_mask(length, steps) & present[:, None]
    keep = torch.from_numpy(rng.random((n, steps)) >= level) | ~real
    keep &= _length_mask(length, steps)  # padding is re-made below
    new_ids = torch.zeros_like(ids)
    new_len = keep.sum(1)
    for i in range(n):
        kept = ids[i][keep[i]]
        new_ids[i, : len(kept)] = kept
    return {**arrays, "ids": new_ids, "length": new_len.to(length.dtype)}


@_register("feature_drop", ("tabular",))
def feature_drop(arrays: Arrays, present: Tensor, level: float, rng: np.random.Generator) -> Arrays:
    out = dict(arrays)
    for values, mask in (("num", "num_mask"), ("cat", "cat_mask")):
        if values in arrays and arrays[values].shape[1]:
            hide = torch.from_numpy(rng.random(tuple(arrays[mask].shape)) < level) & present[:, None]
            out[mask] = arrays[mask] & ~hide
            out[values] = torch.where(hide, torch.zeros_like(arrays[values]), arrays[values])
    return out


def corruption_for(kind: str, name: str | None = None) -> str:
    """The corruption to use for a modality kind: ``name`` if it applies to ``kind``, else the kind's default."""
    if name is None:
        return DEFAULT_CORRUPTION[kind]
    CORRUPTIONS.get(name)  # unknown name -> a clear registry error listing the choices
    if kind not in CORRUPTION_KINDS[name]:
        raise ValueError(
            f"corruption {name!r} does not apply to {kind} modalities (it applies to {list(CORRUPTION_KINDS[name])}); "
            f"the {kind} default is {DEFAULT_CORRUPTION[kind]!r}"
        )
    return name


def corrupt_dataset(
    ds: DecodedDataset, modality: str, kind: str, level: float, *, corruption: str | None = None, seed: int = 0
) -> DecodedDataset:
    """A copy of ``ds`` whose ``modality`` is corrupted at ``level`` (same rows, other modalities shared)."""
    if not 0.0 <= level:
        raise ValueError(f"a corruption level must be >= 0, got {level}")
    if modality not in ds.arrays:
        raise KeyError(f"no modality {modality!r} in this dataset; it has {sorted(ds.arrays)}")
    if level == 0:
        return ds
    fn = CORRUPTIONS.get(corruption_for(kind, corruption))
    rng = np.random.default_rng([seed, zlib.crc32(modality.encode())])
    out = DecodedDataset.__new__(DecodedDataset)
    out.n, out.rows, out.present, out.target = ds.n, ds.rows, ds.present, ds.target
    out.arrays = dict(ds.arrays)
    out.arrays[modality] = fn(ds.arrays[modality], ds.present[modality], float(level), rng)
    return out


def with_presence(ds: DecodedDataset, present: dict[str, np.ndarray | Tensor]) -> DecodedDataset:
    """A copy of ``ds`` where the given modalities' presence is ANDed with ``present`` (indexed like ``ds``'s rows).

    Hiding is all this can do: a modality absent in the data cannot be made present.
    """
    out = DecodedDataset.__new__(DecodedDataset)
    out.n, out.rows, out.arrays, out.target = ds.n, ds.rows, ds.arrays, ds.target
    out.present = dict(ds.present)
    rows = torch.as_tensor(ds.rows, dtype=torch.long)
    for m, keep in present.items():
        keep = torch.as_tensor(np.asarray(keep), dtype=torch.bool)
        if keep.shape != (len(ds),):
            raise ValueError(f"presence for {m!r} has shape {tuple(keep.shape)}; expected ({len(ds)},)")
        full = ds.present[m].clone()
        full[rows] = full[rows] & keep
        out.present[m] = full
    return out
