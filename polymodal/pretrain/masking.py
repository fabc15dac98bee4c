"""Masking as a data-side step (4M's ``UnifiedMasking``): which tokens of each row the encoder may see.

Per row, a total visible-token budget, ``round((1 - mask_ratio) x`` the row's maskable tokens ``)``, is split over
the modalities **present in that row** by a Dirichlet(``alpha``) draw (MultiMAE uses ``alpha = 1``; a small
``alpha`` often gives one modality the whole budget, so the others are predicted from it alone). Each
modality's share is capped by its own maskable tokens and by ``caps`` (``--budget image=64,audio=32``: at most
that many visible tokens of the modality). The visible tokens are a uniformly random subset of the maskable ones;
every other maskable token is a target. ``crossmodal=False`` masks each modality on its own: each keeps
``1 - mask_ratio`` of its tokens, and the net encodes and decodes it alone (no cross-modal targets).

``hide_modality``: the probability that a row with two or more present modalities has one of them (uniformly
chosen) hidden whole: its share is 0, the others split the budget, and all its tokens are targets predicted from
the other modalities alone. That is what ``generate`` asks of the decoders; the Dirichlet split alone rarely asks
it (with two modalities and ``alpha = 1``, a modality's share is below one token in few rows).

The draw uses a NumPy ``Generator`` (not torch's global stream), so validation can use the same masks every epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def visible_counts(counts: np.ndarray, mask_ratio: float, alpha: float, caps: np.ndarray,
                   rng: np.random.Generator, crossmodal: bool = True, hide_modality: float = 0.0) -> np.ndarray:
    """``counts[B, M]`` maskable tokens per row and modality -> visible tokens ``[B, M]`` (<= counts, <= caps).

    A row with any maskable token keeps at least one visible token in all; crossmodal: at most the row budget.
    """
    counts = np.asarray(counts, dtype=np.int64)
    keep = 1.0 - float(mask_ratio)
    if not crossmodal:
        vis = np.where(counts > 0, np.maximum(1, np.round(keep * counts)), 0).astype(np.int64)
        return np.minimum(np.minimum(vis, counts), caps[None])
    out = np.zeros_like(counts)
    for b in range(counts.shape[0]):
        here = np.flatnonzero(counts[b] > 0)
        if not len(here):
            continue
        budget = max(1, int(round(keep * counts[b, here].sum())))
        share = rng.dirichlet(np.full(len(here), float(alpha))) if len(here) > 1 else np.ones(1)
        if len(here) > 1 and hide_modality > 0 and rng.random() < hide_modality:
            hidden = rng.integers(len(here))
            if share.sum() - share[hidden] <= 0:  # the draw gave the hidden one everything: the others split evenly
                share = np.ones(len(here))
            share[hidden] = 0.0
            share = share / share.sum()
        vis = np.floor(share * budget).astype(np.int64)
        # the remainder goes to the largest fractional parts, so the shares add up to the budget
        rest = budget - int(vis.sum())
        if rest > 0:
            vis[np.argsort(-(share * budget - vis))[:rest]] += 1
        out[b, here] = np.minimum(np.minimum(vis, counts[b, here]), caps[here])
    return out


def choose(maskable: Tensor, n_visible: np.ndarray, rng: np.random.Generator) -> Tensor:
    """``maskable[B, N]`` bool, ``n_visible[B]`` -> visible ``[B, N]``: a uniformly random ``n_visible[b]`` of row
    ``b``'s maskable tokens."""
    b, n = maskable.shape
    scores = rng.random((b, n))
    scores[~maskable.cpu().numpy()] = np.inf  # never chosen before a maskable token
    rank = np.argsort(np.argsort(scores, axis=1), axis=1)
    return torch.from_numpy(rank < np.asarray(n_visible)[:, None]).to(maskable.device) & maskable


def sample_visible(maskable: dict[str, Tensor], mask_ratio: float, alpha: float = 1.0,
                   caps: dict[str, int] | None = None, rng: np.random.Generator | None = None,
                   crossmodal: bool = True, hide_modality: float = 0.0) -> dict[str, Tensor]:
    """``maskable[m][B, N_m]`` (tokens that may be targets: real tokens of present samples) -> ``visible[m]``,
    a subset of them; see the module docstring. ``caps``: at most this many visible tokens per modality."""
    rng = rng if rng is not None else np.random.default_rng()
    names = list(maskable)
    counts = np.stack([maskable[m].sum(1).cpu().numpy() for m in names], 1)
    cap = np.array([int((caps or {}).get(m, 1 << 30)) for m in names], dtype=np.int64)
    vis = visible_counts(counts, mask_ratio, alpha, cap, rng, crossmodal, hide_modality)
    return {m: choose(maskable[m], vis[:, i], rng) for i, m in enumerate(names)}
