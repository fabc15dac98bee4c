"""The steps every recipe shares: prepare the table, hold out validation rows, train the net, package the run.

``fit`` and ``align`` are thin over these: they differ only in whether a label is learned (and so stratifies
the hold-out) and in their config defaults.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal import __version__
from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.data.dataset import DecodedDataset
from polymodal.data.decode import decode
from polymodal.data.kinds.base import DecodeContext
from polymodal.data.labels import drop_missing_labels, encode_labels, fit_labels
from polymodal.data.schema import Schema, infer_schema, schema_lines
from polymodal.data.split import split_rows
from polymodal.data.table import decode_table, fit_schema, read_table
from polymodal.errors import SchemaError
from polymodal.nets.build import prepare_schema
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.columns import check_encoder_keys, check_label_not_grouped, kinds_from_encoders, note_label_like
from polymodal.train.loop import train_net


@dataclass
class Prepared:
    schema: Schema
    dataset: DecodedDataset
    ctx: DecodeContext
    t0: float  # when the recipe started (decode time is measured from here)
    inferred: dict[str, Any] = field(default_factory=dict)  # column -> the kind its requested encoder implied


def prepare(
    train: Any,
    label: str | None,
    cfg: ModelConfig,
    *,
    supervised: bool,
    kinds: dict[str, str] | None = None,
    groups: dict[str, list[str]] | None = None,
    use: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    task: str | None = None,
    on_error: str = "raise",
    progress: bool = True,
) -> Prepared:
    """Read a training table, infer and fit its schema, decode it once.

    ``label``: the target (``supervised``) or an optional column kept out of the inputs (alignment); it is never
    an input. A column named in ``cfg.encoders`` that would be tabular takes the kind its encoder reads (recorded
    in ``Prepared.inferred``). ``use`` keeps only these modalities; without ``use`` and ``label``, an alignment
    notes on stderr (once) a column that looks like a label. Each modality's encoder first states the
    preprocessing it needs (a pretrained tokenizer, an image size), which is stored in the schema.
    """
    t0 = time.perf_counter()
    frame, base_dir = read_table(train)
    check_label_not_grouped(label, groups)
    all_kinds, inferred = kinds_from_encoders(frame, label, cfg, kinds=kinds, groups=groups, ignore=ignore)
    schema = infer_schema(frame, label, kinds=all_kinds, groups=groups, ignore=ignore, task=task, base_dir=base_dir)
    check_encoder_keys(schema, frame, cfg)
    if use is not None:
        unknown = set(use) - set(schema.names)
        if unknown:
            raise SchemaError(f"use= names unknown modalities {sorted(unknown)}; the table gives {schema.names}")
        schema.modalities = {m: s for m, s in schema.modalities.items() if m in use}
    for col, why in inferred.items():  # the kind an encoder implied, not the user's kinds=
        for s in schema:
            if col in s.evidence:
                s.evidence[col] = {**s.evidence[col], "summary": f"{why['kind']}: {why['why']}"}
    if progress:
        print("polymodal: schema (modality -> kind <- columns)\n" + "\n".join(f"  {x}" for x in schema_lines(schema)),
              file=sys.stderr)
    if cfg.is_alignment and len(schema.names) < 2:
        raise SchemaError(
            f"alignment needs at least 2 modalities; the table gives {schema.names}. "
            "Add another input column, or name two with use=[...]"
        )
    if use is None and label is None and not supervised:
        note_label_like(schema, frame, groups, all_kinds)
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    target = None
    if supervised:
        frame = drop_missing_labels(frame, label, ctx)
        if len(frame) < 2:
            raise SchemaError(f"only {len(frame)} labelled row(s): too few to train on")
        fit_labels(schema, frame[label])
    prepare_schema(schema, cfg)
    fit_schema(schema, frame, ctx, progress=progress)
    if supervised:
        target = encode_labels(schema, frame[label])
    ds = DecodedDataset(decode_table(schema, frame, ctx, progress=progress), target)
    if cfg.is_alignment:
        complete = np.stack([p.numpy() for p in ds.present.values()], 0).sum(0) >= 2
        if complete.sum() < 2:
            raise SchemaError(
                f"only {int(complete.sum())} row(s) have at least two modalities present: alignment needs paired rows"
            )
    return Prepared(schema, ds, ctx, t0, inferred)


def hold_out(
    prep: Prepared, validation: Any, train_cfg: TrainConfig, *, on_error: str, progress: bool
) -> tuple[DecodedDataset, DecodedDataset | None]:
    """(train, validation) datasets: a separate ``validation`` table, or ``val_fraction`` of the rows
    (``data/split.py``: stratified by class for classification)."""
    ds, schema = prep.dataset, prep.schema
    if validation is not None:
        labels = "require" if ds.target is not None else "ignore"
        _, val_ds, report = decode(schema, validation, on_error=on_error, labels=labels, progress=progress)
        prep.ctx.report.merge(report)
        return ds, val_ds
    strata = ds.target.numpy() if ds.target is not None and schema.task == "classify" else None
    tr, va = split_rows(len(ds), train_cfg.val_fraction, train_cfg.seed, strata)
    return ds.subset(tr), (ds.subset(va) if len(va) else None)


def train_run(
    prep: Prepared,
    cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_ds: DecodedDataset,
    val_ds: DecodedDataset | None,
    *,
    run_type: str,
    on_error: str,
    out: str | Path | None,
    progress: bool,
) -> tuple[MultimodalNet, dict[str, Any]]:
    """Build the net from its parts, train it (``train/loop.py``) and return it with the run report."""
    report = prep.ctx.report
    if report.n_errors or report.dropped_rows:
        print(f"polymodal: {report.summary()}", file=sys.stderr)
    net = MultimodalNet(prep.schema, cfg)
    decode_s = time.perf_counter() - prep.t0
    t1 = time.perf_counter()
    ckpt = Path(out) / "checkpoints" if out is not None else None
    history = train_net(net, train_ds, val_ds, cfg, train_cfg, ckpt_dir=ckpt, progress=progress)
    info = {
        "polymodal_version": __version__,
        "run_type": run_type,
        "n_train": len(train_ds),
        "n_val": len(val_ds) if val_ds is not None else 0,
        "on_error": on_error,
        "decode_s": round(decode_s, 3),
        "train_s": round(time.perf_counter() - t1, 3),
        "params": sum(p.numel() for p in net.parameters()),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "decode_report": report.to_dict(),
        "training": history,
    }
    if prep.inferred:
        info["inferred"] = prep.inferred  # e.g. {"name": {"kind": "text", "encoder": "minilm", ...}}
    return net, info


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
