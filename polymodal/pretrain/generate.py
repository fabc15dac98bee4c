"""Predicted modalities written as files: PNG (images, depth), WAV (audio, via the inverse mel), ``.npy`` otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


def to_png(image: np.ndarray, path: Path) -> Path:
    """``image[H, W, C]`` in [0, 1] -> an 8-bit PNG (grey for one channel)."""
    from PIL import Image

    a = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)
    return path


def write_predictions(target, kind: str, preds: Tensor, out: Path, name: str) -> list[Path]:
    """One file per row of ``preds[N, tokens, out_dim]`` into ``out`` (created), named ``<row>_<name>.<ext>``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(preds.shape[0]):
        value = target.decode(preds[i])
        if kind in ("image", "depth"):
            paths.append(to_png(value, out / f"{i:05d}_{name}.png"))
        elif kind == "audio":
            import soundfile as sf

            wave = target.to_wave(value)
            wave = wave / max(1.0, float(np.abs(wave).max()))  # never clip
            path = out / f"{i:05d}_{name}.wav"
            sf.write(path, wave.astype(np.float32), target.encoder.sample_rate)
            paths.append(path)
        else:
            path = out / f"{i:05d}_{name}.npy"
            np.save(path, np.asarray(value), allow_pickle=False)
            paths.append(path)
    return paths
