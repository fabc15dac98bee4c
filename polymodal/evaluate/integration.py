"""Does the fused model *integrate* modalities? The seed study's test (vision-language integration): a fused model
integrates only if it beats each unimodal model **and** a linear combination of the unimodal models' outputs.

The linear combination is a multinomial logistic regression on the unimodal models' log-probabilities, scored
out-of-fold (stratified k-fold on the evaluation table), so it is fitted as well as the data allows without
seeing the rows it predicts. Per class, a class is "integrated" when the fused model's recall on it beats every
unimodal model's and the linear combination's. A paired bootstrap over rows gives a 95 % interval for
(fused - linear) accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict


def _recall_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int) -> list[float]:
    return [float((pred[target == c] == c).mean()) if (target == c).any() else float("nan") for c in range(n_classes)]


def linear_combination(unimodal: dict[str, np.ndarray], target: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold class predictions of a logistic regression on the unimodal models' log-probabilities."""
    feats = np.concatenate([np.log(np.clip(p, 1e-7, 1.0)) for p in unimodal.values()], axis=1)
    # classes absent from this table do not count (bincount would report them as 0 rows)
    smallest = int(np.unique(target, return_counts=True)[1].min()) if len(target) else 0
    k = int(min(folds, smallest))
    if k < 2:
        raise ValueError(f"the linear combination needs >= 2 rows of every class for cross-validation (smallest: {smallest})")
    clf = LogisticRegression(max_iter=2000, C=1.0)
    return cross_val_predict(clf, feats, target, cv=StratifiedKFold(k, shuffle=True, random_state=seed))


def integration_test(
    fused: np.ndarray,
    unimodal: dict[str, np.ndarray],
    target: np.ndarray,
    *,
    classes: list[Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """``fused`` and each ``unimodal[m]`` are class probabilities ``[N, C]`` on the same rows; ``target`` ``[N]``."""
    target = np.asarray(target)
    n_classes = fused.shape[1]
    classes = classes if classes is not None else list(range(n_classes))
    preds = {"fused": fused.argmax(1)}
    preds.update({f"{m} only": p.argmax(1) for m, p in unimodal.items()})
    preds["linear combination"] = linear_combination(unimodal, target, folds=folds, seed=seed)
    acc = {k: float((p == target).mean()) for k, p in preds.items()}
    recall = {k: _recall_per_class(p, target, n_classes) for k, p in preds.items()}
    others = [k for k in preds if k != "fused"]
    per_class = {}
    for c in range(n_classes):
        best_other = max(recall[k][c] for k in others)
        per_class[str(classes[c])] = {
            "fused": recall["fused"][c],
            "best_other": best_other,
            "integrated": bool(recall["fused"][c] > best_other),
        }
    rng = np.random.default_rng(seed)
    hit_f = (preds["fused"] == target).astype(float)
    hit_l = (preds["linear combination"] == target).astype(float)
    boots = [float((hit_f[i] - hit_l[i]).mean()) for i in (rng.integers(0, len(target), len(target)) for _ in range(bootstrap))]
    return {
        "accuracy": acc,
        "recall_per_class": {k: dict(zip(map(str, classes), v)) for k, v in recall.items()},
        "per_class": per_class,
        "integrated_classes": [c for c, v in per_class.items() if v["integrated"]],
        "beats_all": bool(all(acc["fused"] > acc[k] for k in others)),
        "fused_minus_linear": acc["fused"] - acc["linear combination"],
        "fused_minus_linear_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
    }
