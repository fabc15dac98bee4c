"""``Model``: a trained supervised run — ``predict`` / ``predict_proba`` / ``evaluate`` / ``embed`` / ``save``;
``pm.load`` reads it."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import torch

from polymodal.data.kinds.base import DecodeReport
from polymodal.data.labels import decode_predictions
from polymodal.errors import PolymodalError, unknown_message
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

    def predict(self, data: Any, *, on_error: str = "raise", proba: bool = True, progress: bool = True,
                backend: str = "torch", onnx: Any = None) -> pd.DataFrame:
        """Predictions for every row, indexed like the input; class probabilities as ``proba_<class>`` columns
        (classification, with ``proba``). ``predict_proba`` gives the probabilities alone, columns named by class.
        ``backend="onnx"`` runs the graph ``onnx`` (written by ``polymodal export``) on onnxruntime instead."""
        report = DecodeReport()
        parts = list(self.predict_chunks(data, on_error=on_error, proba=proba, backend=backend, onnx=onnx,
                                         report=report))
        result = parts[0] if len(parts) == 1 else pd.concat(parts)
        result.attrs["decode_report"] = report.to_dict()
        return result

    def predict_chunks(self, data: Any, *, on_error: str = "raise", proba: bool = True, backend: str = "torch",
                       onnx: Any = None, report: DecodeReport | None = None) -> Iterator[pd.DataFrame]:
        """``predict``, one frame per chunk of ``data/chunks.py: CHUNK_ROWS`` rows decoded at a time (memory bounded
        by a chunk; ``polymodal predict`` writes each as it comes); decode counts are merged into ``report``."""
        scorer = self._scorer(backend, onnx)
        for frame, ds, _ in self.decode_chunks(data, on_error=on_error, labels="ignore", report=report):
            out = outputs(scorer, ds)
            cols: dict[str, Any] = {"prediction": decode_predictions(self.schema, out.numpy())}
            if proba and self.schema.task == "classify":
                p = out.softmax(-1).numpy()
                cols.update({f"proba_{c}": p[:, i] for i, c in enumerate(self.schema.classes)})
            yield pd.DataFrame(cols, index=frame.index)  # built at once: no column-by-column insertion

    def predict_proba(self, data: Any, *, on_error: str = "raise", progress: bool = True, backend: str = "torch",
                      onnx: Any = None) -> pd.DataFrame:
        """Class probabilities (scikit-learn / AutoGluon style): one row per input row, indexed like the input, one
        column per class named by the class label (``model.schema.classes``, in that order); rows sum to 1.
        Classification only: a regression model raises (use ``predict``)."""
        if self.schema.task != "classify":
            raise PolymodalError(
                f"predict_proba needs a classification model; this one regresses {self.schema.label!r} "
                "(task='regress'): use model.predict(data) for its predictions"
            )
        frame, out, report = self._outputs(data, on_error=on_error, progress=progress, backend=backend, onnx=onnx)
        result = pd.DataFrame(out.softmax(-1).numpy(), index=frame.index, columns=pd.Index(self.schema.classes))
        result.attrs["decode_report"] = report.to_dict()
        return result

    def _outputs(self, data: Any, *, on_error: str, progress: bool, backend: str = "torch", onnx: Any = None):
        """(frame, raw head outputs [N, n_out], decode report) of an unlabelled (or labelled) table."""
        scorer = self._scorer(backend, onnx)
        report, index, outs = DecodeReport(), [], []
        for frame, ds, _ in self.decode_chunks(data, on_error=on_error, labels="ignore", report=report):
            index.append(frame.index)
            outs.append(outputs(scorer, ds))
        return pd.DataFrame(index=index[0].append(index[1:])), torch.cat(outs), report

    def _scorer(self, backend: str, onnx: Any):
        """What scores a table: this model (``"torch"``), or onnxruntime on the exported graph ``onnx``
        (``"onnx"``; ``polymodal.export``, which checks the graph was exported from this model's weights)."""
        if backend == "torch":
            return self
        if backend != "onnx":
            raise PolymodalError(f"{unknown_message('backend', backend, ['onnx', 'torch'])}")
        from polymodal.export import find_graph, open_backend

        return open_backend(find_graph(None, onnx), self.schema, self.net)

    def metric_names(self) -> list[str]:
        """The names ``evaluate(metrics=...)`` accepts: what ``task_metrics`` gives for this model's task
        (classification: accuracy, macro_f1, confusion_matrix, n; regression: rmse, mae, r2, n)."""
        # read off task_metrics itself (one dummy row), so this list cannot drift from evaluate/metrics.py
        n_out = len(self.schema.classes or ()) if self.schema.task == "classify" else 1
        dtype = torch.long if self.schema.task == "classify" else torch.float32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # r2 of one row, F1 of absent classes
            return sorted(task_metrics(self.schema, torch.zeros(1, n_out), torch.zeros(1, dtype=dtype)))

    def evaluate(
        self,
        data: Any,
        *,
        metrics: str | Sequence[str] | None = None,
        subsets: bool = True,
        on_error: str = "raise",
        progress: bool = True,
        backend: str = "torch",
        onnx: Any = None,
    ) -> dict[str, Any]:
        """Task metrics on a labelled table; with ``subsets``, the same for every non-empty subset of modalities.

        ``metrics`` keeps only the named ones (``model.metric_names()``; classification: ``accuracy``,
        ``macro_f1``, ``confusion_matrix``, ``n``; regression: ``rmse``, ``mae``, ``r2``, ``n``); an unknown name
        is an error before the table is read. Default: all of them (no confusion matrix for the subsets).
        ``backend="onnx"``: scored by onnxruntime on the exported graph ``onnx`` (see ``predict``).
        """
        names = self._check_metrics(metrics)
        scorer = self._scorer(backend, onnx)
        sub_names = None if names is None else [n for n in names if n != "confusion_matrix"]
        subs = modality_subsets(self.modalities) if subsets and len(self.modalities) > 1 and (
            sub_names is None or sub_names) else []
        report, tgts, outs, sub_outs, present = DecodeReport(), [], [], {subset_key(s): [] for s in subs}, {}
        for _, ds, _ in self.decode_chunks(data, on_error=on_error, labels="require", report=report):  # in chunks
            tgts.append(targets(ds))
            outs.append(outputs(scorer, ds))
            for s in subs:
                sub_outs[subset_key(s)].append(outputs(scorer, ds, keep=s))
            for m, p in ds.present.items():
                present[m] = present.get(m, 0) + int(p.sum())
        target = torch.cat(tgts)
        confusion = names is None or "confusion_matrix" in names
        results: dict[str, Any] = {
            "metrics": _keep(task_metrics(self.schema, torch.cat(outs), target, confusion=confusion), names)
        }
        if subs:
            results["subsets"] = {k: _keep(task_metrics(self.schema, torch.cat(o), target, confusion=False), sub_names)
                                  for k, o in sub_outs.items()}
        results["present_fraction"] = {m: k / len(target) for m, k in present.items()}
        results["decode_report"] = report.to_dict()
        return results

    def _check_metrics(self, metrics: str | Sequence[str] | None) -> list[str] | None:
        if metrics is None:
            return None
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        valid = self.metric_names()
        task = "classification" if self.schema.task == "classify" else "regression"
        if not names:
            raise PolymodalError(f"metrics=[] names no metric; a {task} model gives {', '.join(valid)} "
                                 "(or leave metrics unset for all of them)")
        for n in names:
            if n not in valid:
                raise PolymodalError(f"{unknown_message('metric', n, valid)} (for a {task} model)")
        return list(dict.fromkeys(names))


def _keep(values: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    return dict(values) if names is None else {n: values[n] for n in names}
