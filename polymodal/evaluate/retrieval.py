"""Cross-modal retrieval metrics: Recall@K and median rank (instance- and class-level) and the modality gap.

Queries and gallery are row-aligned: query ``i``'s true match is gallery item ``i``. Scores are any similarity
matrix ``[Q, G]`` (cosine similarity of L2-normalised embeddings, or a Symile MIP score).

* instance level: rank of the true match (1 = best; ties count against it);
* class level (when labels are given): a hit is any gallery item with the query's label; the rank is that of
  the best-scored item of the query's class;
* modality gap (Liang et al. 2022): the distance between the centroids of two modalities' normalised embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations
from typing import Any

import numpy as np

KS = (1, 5, 10)


def _as_scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be a [queries, gallery] matrix, got shape {s.shape}")
    return s


def ranks(scores, targets: Sequence[int] | None = None) -> np.ndarray:
    """1-based rank of gallery item ``targets[i]`` (default ``i``) for each query row (ties count against it)."""
    s = _as_scores(scores)
    t = np.arange(s.shape[0]) if targets is None else np.asarray(targets)
    true = s[np.arange(s.shape[0]), t]
    return (s > true[:, None]).sum(1) + 1


def class_ranks(scores, query_labels: Sequence[Any], gallery_labels: Sequence[Any]) -> np.ndarray:
    """1-based rank of the best-scored gallery item sharing the query's label (``inf`` if the class is absent)."""
    s = _as_scores(scores)
    ql, gl = np.asarray(query_labels, dtype=object), np.asarray(gallery_labels, dtype=object)
    if len(ql) != s.shape[0] or len(gl) != s.shape[1]:
        raise ValueError(f"labels ({len(ql)}, {len(gl)}) do not match the score matrix {s.shape}")
    order = np.argsort(-s, axis=1, kind="stable")
    same = gl[order] == ql[:, None]
    first = np.where(same.any(1), same.argmax(1) + 1, np.inf)
    return first.astype(np.float64)


def summarize(r: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    r = np.asarray(r, dtype=np.float64)
    out = {f"R@{k}": float((r <= k).mean()) if len(r) else float("nan") for k in ks}
    out["median_rank"] = float(np.median(r)) if len(r) else float("nan")
    out["n"] = int(len(r))
    return out


def retrieval_metrics(
    query, gallery, query_labels=None, gallery_labels=None, ks: Sequence[int] = KS, scores=None
) -> dict[str, Any]:
    """Instance-level (and, with labels, class-level) retrieval of ``gallery`` rows by ``query`` rows."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if scores is None:
        if q.shape != g.shape:
            raise ValueError(f"query and gallery embeddings must be row-aligned, got {q.shape} and {g.shape}")
        scores = q @ g.T
    out: dict[str, Any] = {"instance": summarize(ranks(scores), ks)}
    if query_labels is not None and gallery_labels is not None:
        out["class"] = summarize(class_ranks(scores, query_labels, gallery_labels), ks)
    return out


def modality_gap(a, b) -> float:
    """Euclidean distance between the centroids of two sets of L2-normalised embeddings."""
    a = _normalize(np.asarray(a, dtype=np.float64))
    b = _normalize(np.asarray(b, dtype=np.float64))
    return float(np.linalg.norm(a.mean(0) - b.mean(0)))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def pairwise_report(
    emb: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    labels: Sequence[Any] | None = None,
    ks: Sequence[int] = KS,
) -> dict[str, Any]:
    """Retrieval in both directions for every ordered pair of modalities, over rows where both are present."""
    out: dict[str, Any] = {}
    lab = None if labels is None else np.asarray(labels, dtype=object)
    for x, y in permutations(list(emb), 2):
        rows = np.asarray(present[x], bool) & np.asarray(present[y], bool)
        if rows.sum() < 2:
            continue
        ql = None if lab is None else lab[rows]
        out[f"{x}->{y}"] = retrieval_metrics(emb[x][rows], emb[y][rows], ql, ql, ks)
    return out


def gap_report(emb: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]) -> dict[str, float]:
    names = list(emb)
    out = {}
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            rows = np.asarray(present[x], bool) & np.asarray(present[y], bool)
            if rows.sum() >= 1:
                out[f"{x}|{y}"] = modality_gap(emb[x][rows], emb[y][rows])
    return out
