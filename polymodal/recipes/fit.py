"""The user-facing model: ``fit`` a table, then ``predict`` / ``evaluate`` / ``save``; ``load`` a saved run.

A saved run directory holds ``config.json`` (model + training config), ``schema.json`` (modalities, their
fitted options, label vocabulary), ``weights.safetensors`` and ``report.json`` (training history, decode report,
timings). Loading reads JSON and safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal import __version__
from polymodal.config.model import ModelConfig, TrainConfig, from_dict, split_options
from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.data.kinds.base import DecodeContext, DecodeReport
from polymodal.data.labels import decode_predictions, drop_missing_labels, encode_labels, fit_labels
from polymodal.data.schema import Schema, infer_schema
from polymodal.data.table import decode_table, fit_schema, read_table
from polymodal.encoders.base import apply_preprocessing
from polymodal.errors import SchemaError
from polymodal.evaluate.metrics import classification_metrics, regression_metrics
from polymodal.evaluate.subsets import modality_subsets, subset_key
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.runs import load_weights, read_run, write_run
from polymodal.train import train_net


class Model:
    """A trained multimodal model with its schema (how to read a table) and its configs."""

    def __init__(
        self, schema: Schema, model_cfg: ModelConfig, train_cfg: TrainConfig, net: MultimodalNet, info: dict | None = None
    ) -> None:
        self.schema, self.model_cfg, self.train_cfg, self.net = schema, model_cfg, train_cfg, net
        self.info: dict[str, Any] = info or {}
        self.net.eval()

    def __repr__(self) -> str:
        mods = ", ".join(f"{s.name}:{s.kind}" for s in self.schema)
        return f"Model(task={self.schema.task}, label={self.schema.label!r}, modalities=[{mods}], fusion={self.model_cfg.fusion!r})"

    @property
    def modalities(self) -> list[str]:
        return self.schema.names

    def with_token_budget(
        self, budget: float | dict[str, float] = 0.5, reducer: str = "merge", **token_options: Any
    ) -> "Model":
        """A copy of this model that runs with a token budget (``tokens/budget.py``); this model is unchanged.

        ``budget``: fraction of each modality's tokens to keep (or ``{"image": 0.25, "audio": 0.5}``); ``reducer``:
        merge | prune | pool | zip; ``token_options``: ``schedule``, ``where``, ``prop_attn``, ``context``.
        The copy shares nothing mutable with this model; ``save`` stores the budget with the run.
        """
        import copy
        from dataclasses import replace

        from polymodal.tokens.budget import install_token_budget
        from polymodal.tokens.spec import TokenBudget

        opts = {**self.model_cfg.token_options, **token_options}
        cfg = replace(self.model_cfg, token_budget=budget, reducer=reducer, token_options=opts)
        cfg.validate()
        net = copy.deepcopy(self.net)
        install_token_budget(net, TokenBudget.from_config(cfg))
        net.cfg = cfg
        return Model(self.schema, cfg, self.train_cfg, net, dict(self.info))

    # ----------------------------------------------------------------- data
    def _dataset(self, data: Any, on_error: str, with_labels: bool) -> tuple[pd.DataFrame, DecodedDataset, DecodeReport]:
        return decode_for(self.schema, data, on_error=on_error, with_labels=with_labels, progress=self.train_cfg.progress)

    @torch.inference_mode()
    def _outputs(self, ds: DecodedDataset, keep: tuple[str, ...] | None = None, batch_size: int = 256) -> torch.Tensor:
        """Raw head outputs for every row; with ``keep``, the other modalities are marked missing."""
        self.net.eval()
        outs = []
        for batch in make_loader(ds, batch_size, shuffle=False):
            if keep is not None:
                batch.present = {m: p & (m in keep) for m, p in batch.present.items()}
            outs.append(self.net(batch).logits)
        return torch.cat(outs) if outs else torch.empty(0, 1)

    # ----------------------------------------------------------------- public API
    def predict(self, data: Any, *, on_error: str = "raise", proba: bool = True) -> pd.DataFrame:
        """Predictions for every row, indexed like the input; class probabilities as ``proba_<class>`` columns."""
        frame, ds, report = self._dataset(data, on_error, with_labels=False)
        out = self._outputs(ds)
        result = pd.DataFrame({"prediction": decode_predictions(self.schema, out.numpy())}, index=frame.index)
        if proba and self.schema.task == "classify":
            p = out.softmax(-1).numpy()
            for i, c in enumerate(self.schema.classes):
                result[f"proba_{c}"] = p[:, i]
        result.attrs["decode_report"] = report.to_dict()
        return result

    def evaluate(self, data: Any, *, subsets: bool = True, on_error: str = "raise") -> dict[str, Any]:
        """Task metrics on a labelled table; with ``subsets``, the same for every non-empty subset of modalities."""
        _, ds, report = self._dataset(data, on_error, with_labels=True)
        target = ds.target
        results: dict[str, Any] = {"metrics": self._metrics(self._outputs(ds), target)}
        if subsets and len(self.modalities) > 1:
            results["subsets"] = {
                subset_key(s): self._metrics(self._outputs(ds, keep=s), target, confusion=False)
                for s in modality_subsets(self.modalities)
            }
        results["present_fraction"] = {m: float(p.float().mean()) for m, p in ds.present.items()}
        results["decode_report"] = report.to_dict()
        return results

    def embed(self, data: Any, *, on_error: str = "raise") -> pd.DataFrame:
        """Per-modality vectors in the shared space (``emb_<modality>``) and ``emb_fused``, for a model fitted with
        an alignment objective (``fit(..., align="clip")``); see ``polymodal/align/``."""
        from polymodal.recipes.embed import embed_table

        return embed_table(self.schema, self.net, data, on_error=on_error)

    def _metrics(self, out: torch.Tensor, target: torch.Tensor, confusion: bool = True) -> dict[str, Any]:
        if self.schema.task == "classify":
            return classification_metrics(out, target, len(self.schema.classes), confusion=confusion)
        stats = self.schema.target_stats or {"mean": 0.0, "std": 1.0}
        scale = lambda t: t.float().reshape(-1) * stats["std"] + stats["mean"]  # noqa: E731
        return regression_metrics(scale(out), scale(target))

    def save(self, path: str | Path) -> Path:
        cfg = {"polymodal_version": __version__, "model": asdict(self.model_cfg), "train": asdict(self.train_cfg)}
        return write_run(path, cfg, self.schema, self.net, self.info)

    @classmethod
    def load(cls, path: str | Path) -> "Model":
        cfg, schema, info = read_run(path)
        model_cfg, train_cfg = from_dict(ModelConfig, cfg["model"]), from_dict(TrainConfig, cfg["train"])
        net = load_weights(path, MultimodalNet(schema, model_cfg))
        return cls(schema, model_cfg, train_cfg, net, info)


def load(path: str | Path) -> Model:
    """Load a model saved with ``Model.save`` (``polymodal fit --out``), or an alignment run (``polymodal align``)."""
    from polymodal.recipes.align import AlignedModel, is_align_run

    if is_align_run(path):
        return AlignedModel.load(path)
    return Model.load(path)


def fit(
    train: Any,
    label: str,
    *,
    fusion: str = "transformer",
    validation: Any = None,
    kinds: dict[str, str] | None = None,
    modalities: dict[str, list[str]] | None = None,
    use: list[str] | None = None,
    ignore: list[str] | tuple[str, ...] = (),
    task: str | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> Model:
    """Train a model on a table (DataFrame or a CSV / Parquet / JSONL path).

    ``label`` names the target column. Columns are mapped to modalities automatically; override with ``kinds``
    (column -> kind or ``"ignore"``), ``modalities`` (name -> columns) and ``use`` (keep only these modalities,
    e.g. to train a unimodal baseline). ``validation`` is a separate table; without one, ``val_fraction`` of the
    training rows (stratified) is held out for early stopping. Further keyword options go to ``ModelConfig``
    (``dim``, ``modality_dropout``, ``aux_weight``, ``fusion_options``, ...) or ``TrainConfig`` (``epochs``,
    ``batch_size``, ``lr``, ``seed``, ``on_error``, ...).
    """
    t0 = time.perf_counter()
    model_cfg, train_cfg = split_options({**options, "fusion": fusion})
    torch.manual_seed(train_cfg.seed)
    schema, ds, ctx = prepare(
        train, label, kinds=kinds, modalities=modalities, use=use, ignore=ignore, task=task,
        on_error=train_cfg.on_error, progress=train_cfg.progress, model_cfg=model_cfg,
    )

    if validation is not None:
        _, val_ds, vreport = decode_for(schema, validation, on_error=train_cfg.on_error, progress=train_cfg.progress)
        train_ds = ds
        ctx.report.merge(vreport)
    else:
        tr_rows, va_rows = _split_rows(ds.target.numpy(), train_cfg.val_fraction, train_cfg.seed, schema.task)
        train_ds, val_ds = ds.subset(tr_rows), (ds.subset(va_rows) if len(va_rows) else None)

    if ctx.report.n_errors or ctx.report.dropped_rows:
        print(f"polymodal: {ctx.report.summary()}", file=sys.stderr)
    net = MultimodalNet(schema, model_cfg)
    decode_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    history = train_net(net, train_ds, val_ds, model_cfg, train_cfg, ckpt_dir=Path(out) / "checkpoints" if out else None)
    info = {
        "polymodal_version": __version__,
        "n_train": len(train_ds),
        "n_val": len(val_ds) if val_ds is not None else 0,
        "decode_s": round(decode_s, 3),
        "train_s": round(time.perf_counter() - t1, 3),
        "params": sum(p.numel() for p in net.parameters()),
        "decode_report": ctx.report.to_dict(),
        "training": history,
    }
    model = Model(schema, model_cfg, train_cfg, net, info)
    if out is not None:
        model.save(out)
    return model


def prepare(
    train: Any,
    label: str,
    *,
    kinds: dict[str, str] | None = None,
    modalities: dict[str, list[str]] | None = None,
    use: list[str] | None = None,
    ignore: list[str] | tuple[str, ...] = (),
    task: str | None = None,
    on_error: str = "raise",
    progress: bool = True,
    model_cfg: ModelConfig | None = None,
) -> tuple[Schema, DecodedDataset, DecodeContext]:
    """Read a training table, infer and fit its schema, decode it once: (schema, dataset, decode context).

    With ``model_cfg``, each modality's encoder first states the preprocessing it needs (a pretrained model's
    tokenizer, image size, sampling rate), which is stored in the schema.
    """
    frame, base_dir = read_table(train)
    schema = infer_schema(frame, label, kinds=kinds, modalities=modalities, ignore=ignore, task=task)
    if use is not None:
        unknown = set(use) - set(schema.names)
        if unknown:
            raise SchemaError(f"use= names unknown modalities {sorted(unknown)}; the table gives {schema.names}")
        schema.modalities = {m: s for m, s in schema.modalities.items() if m in use}
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    frame = drop_missing_labels(frame, label, ctx)
    if len(frame) < 2:
        raise SchemaError(f"only {len(frame)} labelled row(s): too few to train on")
    fit_labels(schema, frame[label])
    if model_cfg is not None:
        apply_preprocessing(schema, model_cfg.encoders, model_cfg.encoder_options)
    fit_schema(schema, frame, ctx)
    decoded = decode_table(schema, frame, ctx, progress=progress)
    return schema, DecodedDataset(decoded, encode_labels(schema, frame[label])), ctx


def decode_for(
    schema: Schema, data: Any, *, on_error: str = "raise", with_labels: bool | None = True, progress: bool = True
) -> tuple[pd.DataFrame, DecodedDataset, DecodeReport]:
    """Decode a table with an already fitted schema (validation, test or new data).

    ``with_labels``: True = the label column is required; False = ignored; None = used when the table has it."""
    frame, base_dir = read_table(data)
    if len(frame) == 0:
        raise SchemaError("the table is empty: nothing to predict or evaluate")
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    schema.check_columns(frame)
    target = None
    if with_labels is None:
        with_labels = schema.label in frame.columns
    if with_labels:
        if schema.label not in frame.columns:
            raise SchemaError(f"label column {schema.label!r} not found; the table has {list(frame.columns)}")
        frame = drop_missing_labels(frame, schema.label, ctx)
        target = encode_labels(schema, frame[schema.label])
    decoded = decode_table(schema, frame, ctx, progress=progress)
    return frame, DecodedDataset(decoded, target), ctx.report


def _split_rows(target: np.ndarray, fraction: float, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (classification) random split of row positions into train / validation."""
    n = len(target)
    idx = np.arange(n)
    if fraction <= 0 or n < 10:
        return idx, idx[:0]
    rng = np.random.default_rng(seed)
    if task == "classify":
        val = []
        for c in np.unique(target):
            rows = idx[target == c]
            k = int(round(len(rows) * fraction))
            if len(rows) >= 2 and k >= 1:
                val.extend(rng.choice(rows, size=min(k, len(rows) - 1), replace=False).tolist())
        val = np.array(sorted(val), dtype=np.int64)
    else:
        val = np.sort(rng.choice(idx, size=max(1, int(round(n * fraction))), replace=False))
    train = np.setdiff1d(idx, val)
    return train, val
