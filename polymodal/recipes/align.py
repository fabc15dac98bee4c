"""``AlignedModel`` (a trained shared embedding space) and ``align`` (train one from a table of paired records).

    import polymodal as pm
    emb = pm.align("pairs.parquet", modalities=["image", "text"], objective="siglip", out="runs/emb")
    emb.embed(df)                                   # emb_<modality> + emb_fused columns
    emb.zero_shot(images, labels=["cat", "dog"])    # through the text tower, with prompt templates
    emb.prototype_classify(support, "label", query) # class means of a few labelled examples (any modality)
    emb.evaluate(test, label="digit")               # R@1/5/10, median rank, class-level, modality gap

A saved run directory holds ``config.json`` (``"run_type": "align"``, the ``AlignConfig`` and ``TrainConfig``),
``schema.json``, ``weights.safetensors`` and ``report.json``; loading reads JSON and safetensors only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal import __version__
from polymodal.config.model import ConfigError, TrainConfig, from_dict
from polymodal.data.dataset import DecodedDataset
from polymodal.data.kinds.base import DecodeContext
from polymodal.data.schema import Schema, infer_schema
from polymodal.data.table import decode_table, fit_schema, read_table
from polymodal.encoders.base import apply_preprocessing
from polymodal.errors import PolymodalError, SchemaError
from polymodal.recipes.runs import load_weights, read_run, write_run
from polymodal.config.align import AlignConfig
from polymodal.recipes.embed import FUSED, decode_rows, embed_arrays, embed_dataset, embed_table, encode_values, modality_of_kind
from polymodal.nets.align import AlignNet

RUN_TYPE = "align"
DEFAULT_TEMPLATES = ("{}",)


class AlignedModel:
    """Encoders + projections into one shared space, with the schema that says how to read a table."""

    def __init__(self, schema: Schema, cfg: AlignConfig, train_cfg: TrainConfig, net: AlignNet, info: dict | None = None):
        self.schema, self.cfg, self.train_cfg, self.net = schema, cfg, train_cfg, net
        self.info: dict[str, Any] = info or {}
        self.net.eval()

    def __repr__(self) -> str:
        mods = ", ".join(f"{s.name}:{s.kind}" for s in self.schema)
        return f"AlignedModel(modalities=[{mods}], objective={self.cfg.objective!r}, embed_dim={self.cfg.embed_dim})"

    @property
    def modalities(self) -> list[str]:
        return self.schema.names

    # ------------------------------------------------------------------ embeddings
    def embed_arrays(self, data: Any, *, on_error: str = "raise", names: Sequence[str] | None = None, base_dir=None):
        """(frame, {modality|fused: [N, E]}, {modality|fused: present[N]}, decode report)."""
        return embed_arrays(self.schema, self.net, data, on_error=on_error, names=names, base_dir=base_dir)

    def embed(self, data: Any, *, on_error: str = "raise") -> pd.DataFrame:
        """``emb_<modality>`` (shared space, L2-normalised; None where absent) and ``emb_fused`` per row.

        Modalities whose columns the table lacks are skipped (embed a text-only table with an image+text model).
        """
        return embed_table(self.schema, self.net, data, on_error=on_error)

    def encode(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        """Embed raw values of one modality: texts, image paths / bytes / arrays, audio paths, ... -> ``[n, E]``."""
        return encode_values(self.schema, self.net, modality, values)

    # ------------------------------------------------------------------ zero-shot
    def text_prototypes(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
        """One normalised vector per label: the mean over prompt templates of the text tower's embeddings."""
        labels = [str(x) for x in labels]
        if not labels:
            raise PolymodalError("zero-shot needs at least one label")
        for t in templates:
            if "{}" not in t:
                raise PolymodalError(f"prompt template {t!r} has no '{{}}' placeholder for the label")
        text = modality_of_kind(self.schema, "text")
        vecs = np.stack([self.encode(text, [t.format(lab) for lab in labels]) for t in templates], 0).mean(0)
        return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)

    def zero_shot(
        self,
        data: Any,
        labels: Sequence[str],
        *,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        modality: str | None = None,
        on_error: str = "raise",
    ) -> pd.DataFrame:
        """Classify rows of ``modality`` (default: the first non-text one the table has) into ``labels``."""
        protos = self.text_prototypes(labels, templates)
        return self._classify(data, [str(x) for x in labels], protos, modality, on_error, exclude_kind="text")

    def prototypes(self, support: Any, label: str, *, modality: str | None = None, on_error: str = "raise"):
        """(classes, [C, E] class means) of the labelled ``support`` rows of ``modality`` (few-shot)."""
        frame, base = read_table(support)
        if label not in frame.columns:
            raise SchemaError(f"label column {label!r} not found in the support table; it has {list(frame.columns)}")
        frame = frame[frame[label].notna()]
        m = modality or self._default_modality(frame, exclude_kind=None)
        _, emb, present, _ = self.embed_arrays(frame, on_error=on_error, names=[m], base_dir=base)
        y = frame[label].to_numpy()[present[m]]
        v = emb[m][present[m]]
        if len(v) == 0:
            raise PolymodalError(f"no support row has modality {m!r}")
        classes = sorted(pd.unique(y).tolist(), key=str)
        means = np.stack([v[y == c].mean(0) for c in classes])
        return classes, means / np.clip(np.linalg.norm(means, axis=1, keepdims=True), 1e-12, None)

    def prototype_classify(
        self, support: Any, label: str, data: Any, *, modality: str | None = None, on_error: str = "raise"
    ) -> pd.DataFrame:
        """Nearest class mean (prototype) of a few labelled ``support`` examples, for modalities without text."""
        frame, _ = read_table(support)
        m = modality or self._default_modality(frame.drop(columns=[label], errors="ignore"), exclude_kind=None)
        classes, protos = self.prototypes(support, label, modality=m, on_error=on_error)
        return self._classify(data, classes, protos, m, on_error)

    def _default_modality(self, frame: pd.DataFrame, exclude_kind: str | None) -> str:
        for s in self.schema:
            if s.kind != exclude_kind and all(c in frame.columns for c in s.columns):
                return s.name
        raise SchemaError(
            f"the table has no column of a modality to classify (model reads {[(s.name, s.columns) for s in self.schema]}"
            f"{'' if exclude_kind is None else ', excluding ' + exclude_kind}); it has {list(frame.columns)}"
        )

    def _classify(self, data, classes, protos, modality, on_error, exclude_kind=None) -> pd.DataFrame:
        frame, base = read_table(data)
        m = modality or self._default_modality(frame, exclude_kind)
        frame, emb, present, report = self.embed_arrays(frame, on_error=on_error, names=[m], base_dir=base)
        scores = emb[m] @ protos.T
        pred = np.asarray(classes, dtype=object)[scores.argmax(1)]
        out = pd.DataFrame({"prediction": np.where(present[m], pred, None)}, index=frame.index)
        for i, c in enumerate(classes):
            out[f"score_{c}"] = np.where(present[m], scores[:, i], np.nan)
        out.attrs["modality"] = m
        out.attrs["decode_report"] = report.to_dict()
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any, *, label: str | None = None, on_error: str = "raise", gap_before: bool = True) -> dict:
        """Retrieval between every ordered pair of modalities (R@1/5/10, median rank; class-level with labels)
        and the modality gap after alignment and, with ``gap_before``, of the same net at initialisation."""
        from polymodal.evaluate.retrieval import gap_report, pairwise_report  # lazily: evaluate/ imports torchmetrics

        frame, base = read_table(data)
        label = label if label is not None else (self.schema.label if self.schema.label in frame.columns else None)
        if label is not None and label not in frame.columns:
            raise SchemaError(f"label column {label!r} not found; the table has {list(frame.columns)}")
        frame, emb, present, report = self.embed_arrays(frame, on_error=on_error, base_dir=base)
        emb.pop(FUSED), present.pop(FUSED)
        labels = None if label is None else frame[label].to_numpy()
        res: dict[str, Any] = {
            "n": len(frame),
            "label": label,
            "retrieval": pairwise_report(emb, present, labels),
            "modality_gap": {"after": gap_report(emb, present)},
        }
        if gap_before:
            torch.manual_seed(self.train_cfg.seed)
            fresh = AlignNet(self.schema, self.cfg)
            _, ds, _ = decode_rows(self.schema, frame, on_error=on_error, names=list(emb), base_dir=base)
            e0, p0 = embed_dataset(fresh, ds, list(emb))
            e0.pop(FUSED), p0.pop(FUSED)
            res["modality_gap"]["before"] = gap_report(e0, p0)
        res["decode_report"] = report.to_dict()
        return res

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        cfg = {"run_type": RUN_TYPE, "polymodal_version": __version__, "model": asdict(self.cfg), "train": asdict(self.train_cfg)}
        return write_run(path, cfg, self.schema, self.net, self.info)

    @classmethod
    def load(cls, path: str | Path) -> "AlignedModel":
        cfg, schema, info = read_run(path)
        if cfg.get("run_type") != RUN_TYPE:
            raise PolymodalError(f"{path} holds a supervised model, not an alignment run; load it with pm.load")
        acfg, tcfg = from_dict(AlignConfig, cfg["model"]), from_dict(TrainConfig, cfg["train"])
        net = load_weights(path, AlignNet(schema, acfg))
        return cls(schema, acfg, tcfg, net, info)


def is_align_run(path: str | Path) -> bool:
    p = Path(path) / "config.json"
    try:
        return json.loads(p.read_text()).get("run_type") == RUN_TYPE
    except (OSError, ValueError):
        return False


def _split_align_options(options: dict[str, Any]) -> tuple[AlignConfig, TrainConfig]:
    from dataclasses import fields

    a_names = {f.name for f in fields(AlignConfig)}
    t_names = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - a_names - t_names
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)}; alignment options: {sorted(a_names)}; training options: {sorted(t_names)}"
        )
    a = from_dict(AlignConfig, {k: v for k, v in options.items() if k in a_names})
    t = from_dict(TrainConfig, {k: v for k, v in options.items() if k in t_names})
    return a, t


def align(
    train: Any,
    *,
    modalities: Sequence[str] | None = None,
    objective: str = "clip",
    label: str | None = None,
    validation: Any = None,
    kinds: dict[str, str] | None = None,
    group: dict[str, list[str]] | None = None,
    ignore: Sequence[str] = (),
    out: str | Path | None = None,
    **options: Any,
) -> AlignedModel:
    """Align the modalities of a table of paired records in one shared space (no label needed).

    ``modalities`` keeps only these modalities (names as inferred from the columns, or as grouped with
    ``group``); ``label`` names an optional column that is not an input (kept for class-level evaluation).
    ``objective``: ``clip`` | ``siglip`` (pairwise over >= 3 modalities) | ``symile`` | ``pairwise`` | ``anchor``.
    Further options go to ``AlignConfig`` (``dim``, ``embed_dim``, ``encoders``, ``encoder_options``,
    ``objective_options``, ``projection``, ``uniformity_weight``) or ``TrainConfig`` (``epochs``, ``batch_size``,
    ``lr``, ``seed``, ``val_fraction``, ``patience``, ``on_error``, ...).
    """
    t0 = time.perf_counter()
    options = {"batch_size": 128, "patience": 5, **options}
    acfg, tcfg = _split_align_options({**options, "objective": objective})
    torch.manual_seed(tcfg.seed)
    frame, base_dir = read_table(train)
    schema = infer_schema(frame, label, kinds=kinds, modalities=group, ignore=ignore)
    if modalities is not None:
        unknown = set(modalities) - set(schema.names)
        if unknown:
            raise SchemaError(f"modalities= names unknown modalities {sorted(unknown)}; the table gives {schema.names}")
        schema.modalities = {m: s for m, s in schema.modalities.items() if m in modalities}
    if len(schema.names) < 2:
        raise SchemaError(
            f"alignment needs at least 2 modalities; the table gives {schema.names}. "
            "Add another input column, or name two with modalities=[...]"
        )
    apply_preprocessing(schema, acfg.encoders, acfg.encoder_options)  # e.g. a pretrained tokenizer / image size
    ctx = DecodeContext(base_dir=base_dir, on_error=tcfg.on_error)
    fit_schema(schema, frame, ctx, progress=tcfg.progress)
    ds = DecodedDataset(decode_table(schema, frame, ctx, progress=tcfg.progress))
    complete = np.stack([p.numpy() for p in ds.present.values()], 0).sum(0) >= 2
    if complete.sum() < 2:
        raise SchemaError(
            f"only {int(complete.sum())} row(s) have at least two modalities present: alignment needs paired rows"
        )
    if validation is not None:
        vframe, vbase = read_table(validation)
        vctx = DecodeContext(base_dir=vbase, on_error=tcfg.on_error)
        schema.check_columns(vframe)
        val_ds = DecodedDataset(decode_table(schema, vframe, vctx, progress=False))
        train_ds = ds
        ctx.report.merge(vctx.report)
    else:
        rng = np.random.default_rng(tcfg.seed)
        idx = rng.permutation(len(ds))
        k = int(round(len(ds) * tcfg.val_fraction)) if len(ds) >= 20 else 0
        train_ds, val_ds = ds.subset(np.sort(idx[k:])), (ds.subset(np.sort(idx[:k])) if k else None)
    if ctx.report.n_errors:
        print(f"polymodal: {ctx.report.summary()}", file=sys.stderr)
    from polymodal.train.align_module import train_align  # lazily: Lightning is only needed to train

    net = AlignNet(schema, acfg)
    decode_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    history = train_align(net, train_ds, val_ds, tcfg, ckpt_dir=Path(out) / "checkpoints" if out else None)
    info = {
        "polymodal_version": __version__,
        "run_type": RUN_TYPE,
        "n_train": len(train_ds),
        "n_val": len(val_ds) if val_ds is not None else 0,
        "decode_s": round(decode_s, 3),
        "train_s": round(time.perf_counter() - t1, 3),
        "params": sum(p.numel() for p in net.parameters()),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "decode_report": ctx.report.to_dict(),
        "training": history,
    }
    model = AlignedModel(schema, acfg, tcfg, net, info)
    if out is not None:
        model.save(out)
    return model


def load_aligned(path: str | Path) -> AlignedModel:
    return AlignedModel.load(path)
