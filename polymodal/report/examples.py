"""Examples from a table for the report (``polymodal report RUN --data TABLE``; ``evaluate --out`` passes its
table): a few rows with their inputs (thumbnails, audio players, text), the prediction and each modality's
contribution (exact Shapley over modalities, ``evaluate/attribution.py``), and, for a run with a shared space,
cross-modal retrieval examples (a query and its nearest gallery items of another modality).

Rows are spread evenly over the table (not its first rows, which are often one class). The attribution summary
uses up to ``ATTRIBUTION_ROWS`` rows, the retrieval gallery up to ``GALLERY_ROWS``.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import numpy as np

from polymodal.data.decode import decode
from polymodal.data.labels import decode_predictions
from polymodal.data.table import Table, read_table
from polymodal.evaluate.attribution import MAX_SHAPLEY, modality_attribution
from polymodal.evaluate.scoring import FUSED, embeddings, outputs
from polymodal.report.media import cell_media
from polymodal.report.sources import RunData

ATTRIBUTION_ROWS = 128
GALLERY_ROWS = 256
TOP_K = 3
MAX_PAIRS = 2  # ordered modality pairs shown as retrieval examples


def _spread(n_rows: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_rows - 1, num=min(k, n_rows)).round().astype(int))


def _media(model: Any, frame: Any, ds: Any, i: int, m: str) -> dict[str, Any] | None:
    if not bool(ds.present[m][i]):
        return None
    spec = model.schema[m]
    raw = frame.iloc[i][spec.columns[0]] if len(spec.columns) == 1 else {c: frame.iloc[i][c] for c in spec.columns}
    return cell_media(spec.kind, ds.arrays[m], i, spec.options, raw)


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value (the row index of a table, a label)."""
    return v.item() if hasattr(v, "item") else v


def _label(model: Any, ds: Any, i: int) -> Any:
    if ds.target is None:
        return None
    t = ds.target[i].item()
    return model.schema.classes[int(t)] if model.schema.task == "classify" else decode_predictions(
        model.schema, np.asarray([[t]]))[0]


def prediction_examples(model: Any, table: Table, n: int, on_error: str) -> dict[str, Any]:
    """``n`` rows with inputs, label, prediction (+ probability) and per-modality contributions; the mean
    |contribution| per modality over up to ``ATTRIBUTION_ROWS`` rows."""
    frame = table.frame
    pick = _spread(len(frame), max(n, ATTRIBUTION_ROWS))
    sub = Table(frame.iloc[pick].reset_index(drop=True), table.base_dir)
    sub_frame, ds, report = decode(model.schema, sub, on_error=on_error, labels="auto", progress=False)
    names = model.schema.names
    att = modality_attribution(model, ds, shapley=len(names) <= MAX_SHAPLEY)
    method = "shapley" if "shapley" in att else "loo"
    out = outputs(model, ds)
    preds = decode_predictions(model.schema, out.numpy())
    proba = out.softmax(-1).max(-1).values.numpy() if model.schema.task == "classify" else None
    rows = []
    for i in _spread(len(ds), n).tolist():  # rows without a label were dropped: map back through sub_frame's index
        rows.append({
            "row": _plain(frame.index[pick[int(sub_frame.index[i])]]),
            "inputs": {m: _media(model, sub_frame, ds, i, m) for m in names},
            "label": _label(model, ds, i),
            "prediction": preds[i],
            "probability": None if proba is None else float(proba[i]),
            "contribution": {m: float(att[method][m][i]) for m in names},
        })
    return {
        "kind": "predictions", "method": method, "modalities": names, "rows": rows,
        "mean_abs": {m: float(np.abs(att[method][m]).mean()) for m in names}, "n_attribution": len(ds),
        "decode_report": report.to_dict(),
    }


def retrieval_examples(model: Any, table: Table, n: int, on_error: str) -> dict[str, Any] | None:
    """For up to ``MAX_PAIRS`` ordered modality pairs: ``n`` queries of the first and their ``TOP_K`` nearest
    items of the second among up to ``GALLERY_ROWS`` rows (cosine similarity in the shared space)."""
    if getattr(model.net, "align_head", None) is None:
        return None
    frame = table.frame
    pick = _spread(len(frame), GALLERY_ROWS)
    sub = Table(frame.iloc[pick].reset_index(drop=True), table.base_dir)
    names = [m for m in model.net.align_head.names if all(c in frame.columns for c in model.schema[m].columns)]
    sub_frame, ds, _ = decode(model.schema, sub, on_error=on_error, labels="auto", names=names, progress=False)
    emb, present = embeddings(model.net, ds, names)
    emb.pop(FUSED), present.pop(FUSED)
    labels = None
    if model.schema.label is not None and model.schema.label in sub_frame.columns:
        labels = [_plain(v) for v in sub_frame[model.schema.label]]
    pairs = []
    for a, b in list(permutations(names, 2))[:MAX_PAIRS]:
        both = np.flatnonzero(present[a] & present[b])
        gallery = np.flatnonzero(present[b])
        if len(both) == 0:
            continue
        sims = emb[a][both] @ emb[b][gallery].T
        queries = []
        for qi in _spread(len(both), n):
            q = int(both[qi])
            order = np.argsort(-sims[qi], kind="stable")
            rank = int(np.flatnonzero(gallery[order] == q)[0]) + 1
            queries.append({
                "row": _plain(frame.index[pick[q]]), "input": _media(model, sub_frame, ds, q, a), "rank_of_true": rank,
                "label": None if labels is None else labels[q],
                "matches": [{"row": _plain(frame.index[pick[int(gallery[j])]]), "similarity": float(sims[qi][j]),
                             "input": _media(model, sub_frame, ds, int(gallery[j]), b), "true": int(gallery[j]) == q,
                             "label": None if labels is None else labels[int(gallery[j])]} for j in order[:TOP_K]],
            })
        pairs.append({"query": a, "gallery": b, "gallery_size": int(len(gallery)), "queries": queries})
    return {"kind": "retrieval", "pairs": pairs} if pairs else None


def add_examples(run: RunData, data: Any, *, n: int = 8, on_error: str = "missing") -> None:
    """Fill ``run.examples`` from the table ``data`` (the run is loaded from its folder; nothing for a source
    without one)."""
    from polymodal.recipes.loading import load

    if run.run_dir is None or n <= 0:
        return
    model = load(run.run_dir)
    table = read_table(data)
    found: dict[str, Any] = {}
    if model.net.has_task:
        found["predictions"] = prediction_examples(model, table, n, on_error)
    retrieval = retrieval_examples(model, table, max(2, n // 2), on_error)
    if retrieval:
        found["retrieval"] = retrieval
    run.examples = found or None
