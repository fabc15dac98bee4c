"""Per-modality contributions to each prediction: leave-one-modality-out deltas and exact Shapley values.

The value of a coalition ``S`` of modalities for one row is the model's output for the row's predicted class (the
class predicted with every modality) when only ``S`` is present -- the others are marked missing, which every
fusion supports, so no retraining and no baseline input are needed. The empty coalition is worth the uniform
probability ``1 / n_classes`` (regression: the training mean of the target). A modality absent from a row is never
present in any coalition, so its contribution for that row is 0 (up to float round-off: encoders may run
on different row subsets for different coalitions).

* ``loo[m] = v(all) - v(all without m)``;
* ``shapley[m] = sum over S not containing m of |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))`` -- exact, from the
  ``2^M`` coalition values (M <= ``MAX_SHAPLEY``); the values add up to ``v(all) - v(empty)`` per row.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.dataset import DecodedDataset
from polymodal.data.decode import decode
from polymodal.data.labels import unscale_target
from polymodal.evaluate.scoring import Scorable as Model
from polymodal.evaluate.scoring import outputs, targets

MAX_SHAPLEY = 5


def _value_of(model: "Model", full: torch.Tensor, n: int):
    """(value function on head outputs, predicted class per row or -1, value of the empty coalition)."""
    if model.schema.task == "classify":
        pred = full.argmax(-1)
        value = lambda out: out.softmax(-1).gather(1, pred[:, None])[:, 0].numpy()  # noqa: E731
        return value, pred.numpy(), np.full(n, 1.0 / len(model.schema.classes))
    stats = model.schema.target_stats or {"mean": 0.0, "std": 1.0}
    value = lambda out: unscale_target(model.schema, out).numpy()  # noqa: E731
    return value, np.full(n, -1), np.full(n, float(stats["mean"]))


def coalition_values(model: "Model", ds: DecodedDataset) -> tuple[dict[frozenset, np.ndarray], np.ndarray]:
    """``{coalition: value[N]}`` for every subset of modalities (the empty one included) and the predicted class
    per row (regression: ``-1``)."""
    names = model.schema.names
    full = outputs(model, ds)
    value, pred, empty = _value_of(model, full, len(ds))
    values: dict[frozenset, np.ndarray] = {frozenset(): empty}
    for k in range(1, len(names) + 1):
        for combo in combinations(names, k):
            values[frozenset(combo)] = value(full if k == len(names) else outputs(model, ds, keep=combo))
    return values, pred


def shapley_from_values(names: list[str], values: dict[frozenset, np.ndarray]) -> dict[str, np.ndarray]:
    m = len(names)
    out = {}
    for name in names:
        others = [x for x in names if x != name]
        phi = np.zeros_like(values[frozenset()], dtype=np.float64)
        for k in range(len(others) + 1):
            weight = factorial(k) * factorial(m - k - 1) / factorial(m)
            for combo in combinations(others, k):
                s = frozenset(combo)
                phi += weight * (values[s | {name}] - values[s])
        out[name] = phi
    return out


def modality_attribution(model: "Model", ds: DecodedDataset, *, shapley: bool | None = None) -> dict[str, Any]:
    """Per-row contributions (``loo`` and, for up to ``MAX_SHAPLEY`` modalities, ``shapley``) and the predicted
    class; arrays are ``[N]`` numpy, keyed by modality."""
    names = model.schema.names
    if shapley is None:
        shapley = len(names) <= MAX_SHAPLEY
    if shapley and len(names) > MAX_SHAPLEY:
        raise ValueError(
            f"exact Shapley values need 2^M model passes; {len(names)} modalities is more than {MAX_SHAPLEY}: "
            "use leave-one-out (shapley=False)"
        )
    if shapley:
        values, pred = coalition_values(model, ds)
    else:  # only the coalitions leave-one-out needs: all, and all-but-one
        full = outputs(model, ds)
        value, pred, _ = _value_of(model, full, len(ds))
        everything = frozenset(names)
        values = {everything: value(full)}
        for n in names:
            values[everything - {n}] = value(outputs(model, ds, keep=tuple(x for x in names if x != n)))
    everything = frozenset(names)
    out: dict[str, Any] = {
        "predicted": pred,
        "value_all": values[everything],
        "loo": {n: values[everything] - values[everything - {n}] for n in names},
    }
    if shapley:
        out["shapley"] = shapley_from_values(names, values)
        out["value_empty"] = values[frozenset()]
    return out


def per_class_summary(model: "Model", attribution: dict[str, Any], labels: np.ndarray | None = None) -> dict[str, Any]:
    """Mean contribution of each modality per class (the true class when ``labels`` are given, else the predicted
    one), for every method present in ``attribution``."""
    if model.schema.task != "classify":
        return {}
    groups = labels if labels is not None else attribution["predicted"]
    summary: dict[str, Any] = {}
    for method in ("shapley", "loo"):
        if method not in attribution:
            continue
        per = {}
        for c, cls in enumerate(model.schema.classes):
            rows = np.asarray(groups) == c
            if rows.any():
                per[str(cls)] = {m: float(v[rows].mean()) for m, v in attribution[method].items()}
        summary[method] = per
    return summary


def explain(
    model: "Model", data: Any, *, shapley: bool | None = None, on_error: str = "raise", progress: bool = True
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-row modality contributions for a table: (DataFrame indexed like the input with ``prediction`` and
    ``<method>_<modality>`` columns, summary dict with the mean contribution per class).

    A label column, if the table has one, groups the summary by true class; otherwise by predicted class."""
    frame, ds, report = decode(model.schema, data, on_error=on_error, labels="auto", progress=progress)
    att = modality_attribution(model, ds, shapley=shapley)
    method = "shapley" if "shapley" in att else "loo"
    table = pd.DataFrame(index=frame.index)
    if model.schema.task == "classify":
        table["prediction"] = [model.schema.classes[i] for i in att["predicted"]]
        table["probability"] = att["value_all"]
    else:
        table["prediction"] = att["value_all"]
    for kind in ("shapley", "loo"):
        if kind in att:
            for m, v in att[kind].items():
                table[f"{kind}_{m}"] = v
    labels = None
    if ds.target is not None:
        labels = targets(ds).numpy()
    summary = {
        "method": method,
        "modalities": model.schema.names,
        "grouped_by": "true" if labels is not None else "predicted",
        "mean_abs": {m: float(np.abs(v).mean()) for m, v in att[method].items()},
        "per_class": per_class_summary(model, att, labels),
        "decode_report": report.to_dict(),
    }
    return table, summary

