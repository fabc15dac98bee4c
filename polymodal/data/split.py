"""The one row splitter behind every recipe's validation hold-out."""

from __future__ import annotations

import numpy as np

MIN_ROWS = 10  # below this many rows nothing is held out: a validation split would be noise


def split_rows(
    n: int, fraction: float, seed: int, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` row positions, each sorted.

    With ``strata`` (class labels) the split is stratified: each class gives ``round(fraction x its rows)``
    rows (a class keeps at least one training row). Without, a random permutation gives the first
    ``round(fraction x n)`` rows to validation. Nothing is held out when ``fraction`` is 0 or there are
    fewer than ``MIN_ROWS`` rows.
    """
    idx = np.arange(n)
    if fraction <= 0 or n < MIN_ROWS:
        return idx, idx[:0]
    rng = np.random.default_rng(seed)
    if strata is None:
        perm = rng.permutation(n)
        k = int(round(n * fraction))
        return np.sort(perm[k:]), np.sort(perm[:k])
    strata = np.asarray(strata)
    val: list[int] = []
    for c in np.unique(strata):
        rows = idx[strata == c]
        k = int(round(len(rows) * fraction))
        if len(rows) >= 2 and k >= 1:
            val.extend(rng.choice(rows, size=min(k, len(rows) - 1), replace=False).tolist())
    val_rows = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(idx, val_rows), val_rows
