"""Every non-empty subset of modalities: the others are marked missing at test time."""

from __future__ import annotations

from itertools import combinations


def modality_subsets(names: list[str], max_subsets: int = 63) -> list[tuple[str, ...]]:
    """All non-empty subsets, smallest first (singletons, pairs, ...), capped at ``max_subsets``."""
    out: list[tuple[str, ...]] = []
    for k in range(1, len(names) + 1):
        for combo in combinations(names, k):
            out.append(combo)
            if len(out) >= max_subsets:
                return out
    return out


def subset_key(subset: tuple[str, ...]) -> str:
    return "+".join(subset)
