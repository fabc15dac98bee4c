"""A tiny two-modality table where the label needs both modalities (the ``xor_model`` fixture trains on it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUPS = {"a": ["a1", "a2"], "b": ["b1", "b2"]}


def xor_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """4 classes = 2 bits; modality ``a`` carries bit 0, modality ``b`` bit 1 (each with a noise column)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    bit0, bit1 = y & 1, y >> 1
    return pd.DataFrame({
        "a1": 2.0 * bit0 - 1 + 0.3 * rng.standard_normal(n), "a2": rng.standard_normal(n),
        "b1": 2.0 * bit1 - 1 + 0.3 * rng.standard_normal(n), "b2": rng.standard_normal(n),
        "y": [f"c{v}" for v in y],
    })


