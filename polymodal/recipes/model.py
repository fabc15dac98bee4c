"""``Model``: a trained supervised run — ``predict`` / ``evaluate`` / ``embed`` / ``save``; ``pm.load`` reads it."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pandas as pd

from polymodal.data.labels import decode_predictions
from polymodal.evaluate.scoring import outputs, targets, task_metrics
from polymodal.evaluate.subsets import modality_subsets, subset_key
from polymodal.recipes.estimator import Estimator
from polymodal.recipes.runs import RUN_TYPES
from polymodal.tokens.budget import install_token_budget
from polymodal.tokens.spec import TokenBudget


@RUN_TYPES.register("model")
class Model(Estimator):
    """A trained multimodal model with its schema (how to read a table) and its configs."""

    run_type = "model"

    def __repr__(self) -> str:
        fusion = self.cfg.fusion.name if self.cfg.fusion is not None else None
        return f"Model(task={self.schema.task}, label={self.schema.label!r}, modalities=[{self._describe()}], fusion={fusion!r})"

    def with_token_budget(self, budget: float | dict[str, float] = 0.5, reducer: Any = "merge", **token_options: Any) -> "Model":
        """A copy of this model that runs with a token budget (``tokens/budget.py``); this model is unchanged.

        ``budget``: fraction of each modality's tokens to keep (or ``{"image": 0.25, "audio": 0.5}``); ``reducer``:
        merge | prune | pool | zip (or a ``Component`` with its options); ``token_options``: ``schedule``,
        ``where``. The copy shares nothing mutable with this model; ``save`` stores the budget with the run.
        """
        base = self.cfg.tokens.to_dict()
        spec = TokenBudget.from_dict({**base, **token_options, "budget": budget, "reducer": reducer})
        cfg = replace(self.cfg, tokens=spec)
        cfg.validate()
        net = copy.deepcopy(self.net)
        install_token_budget(net, spec)
        net.cfg = cfg
        return Model(self.schema, cfg, self.train_cfg, net, dict(self.info))

    def predict(self, data: Any, *, on_error: str = "raise", proba: bool = True, progress: bool = True) -> pd.DataFrame:
        """Predictions for every row, indexed like the input; class probabilities as ``proba_<class>`` columns."""
        frame, ds, report = self.decode(data, on_error=on_error, labels="ignore", progress=progress)
        out = outputs(self, ds)
        result = pd.DataFrame({"prediction": decode_predictions(self.schema, out.numpy())}, index=frame.index)
        if proba and self.schema.task == "classify":
            p = out.softmax(-1).numpy()
            for i, c in enumerate(self.schema.classes):
                result[f"proba_{c}"] = p[:, i]
        result.attrs["decode_report"] = report.to_dict()
        return result

    def evaluate(self, data: Any, *, subsets: bool = True, on_error: str = "raise", progress: bool = True) -> dict[str, Any]:
        """Task metrics on a labelled table; with ``subsets``, the same for every non-empty subset of modalities."""
        _, ds, report = self.decode(data, on_error=on_error, labels="require", progress=progress)
        target = targets(ds)
        results: dict[str, Any] = {"metrics": task_metrics(self.schema, outputs(self, ds), target)}
        if subsets and len(self.modalities) > 1:
            results["subsets"] = {
                subset_key(s): task_metrics(self.schema, outputs(self, ds, keep=s), target, confusion=False)
                for s in modality_subsets(self.modalities)
            }
        results["present_fraction"] = {m: float(p.float().mean()) for m, p in ds.present.items()}
        results["decode_report"] = report.to_dict()
        return results
