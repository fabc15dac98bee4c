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
from polymodal.catalog.runs import cohort_of
from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.data.dataset import DecodedDataset
from polymodal.data.stream import StreamDataset
from polymodal.data.decode import decode
from polymodal.data.kinds.base import DecodeContext
from polymodal.data.paths import choose, decoded_bytes_per_row, open_training, streamed
from polymodal.data.shards import read_all
from polymodal.data.labels import drop_missing_labels, encode_labels, fit_labels
from polymodal.data.schema import Schema, infer_schema, is_missing, schema_lines
from polymodal.data.split import split_rows
from polymodal.data.table import decode_table, fit_schema
from polymodal.errors import SchemaError
from polymodal.nets.build import prepare_schema
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.columns import check_encoder_keys, check_label_not_grouped, kinds_from_encoders, note_label_like
from polymodal.train.checkpoint import discard_checkpoint
from polymodal.train.distributed import is_rank_zero
from polymodal.train.loop import train_net


@dataclass
class Prepared:
    schema: Schema
    dataset: DecodedDataset | StreamDataset  # in memory, or decoded per batch (data/stream.py)
    ctx: DecodeContext
    t0: float  # when the recipe started (decode time is measured from here)
    inferred: dict[str, Any] = field(default_factory=dict)  # column -> the kind its requested encoder implied
    cohort: dict[str, Any] | None = None  # the catalogue cohort the table was exported as (catalog/runs.py)


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
    train_cfg: TrainConfig | None = None,
) -> Prepared:
    """Read a training table, infer and fit its schema, decode it once (or, ``train_cfg.stream``, stream it).

    ``label``: the target (``supervised``) or an optional column kept out of the inputs (alignment); it is never
    an input. A column named in ``cfg.encoders`` that would be tabular takes the kind its encoder reads (recorded
    in ``Prepared.inferred``). ``use`` keeps only these modalities; without ``use`` and ``label``, an alignment
    notes on stderr (once) a column that looks like a label. Each modality's encoder first states the
    preprocessing it needs (a pretrained tokenizer, an image size), which is stored in the schema.

    With ``train_cfg`` (``fit``), ``train`` may also be a folder of Parquet shards, and ``train_cfg.stream`` picks
    the data path (``data/paths.py``: the schema is fitted on a bounded sample, the path chosen by decoded size
    and said on stderr); without it (``align``), the table is decoded in memory.
    """
    t0 = time.perf_counter()
    mode = train_cfg.stream if train_cfg is not None else None
    source, (frame, base_dir), sampled = open_training(train, mode)
    cohort = cohort_of(train, frame)
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
    labels = None
    if supervised:
        labels = source.column(label) if sampled else frame[label]  # the whole label column (a sample's: read alone)
        if sampled:
            kept = drop_missing_labels(labels.to_frame(), label, ctx)[label]
            frame = frame[~frame[label].map(is_missing)]
        else:
            frame = drop_missing_labels(frame, label, ctx)
            kept = frame[label]
        if len(kept) < 2:
            raise SchemaError(f"only {len(kept)} labelled row(s): too few to train on")
        fit_labels(schema, kept)
    prepare_schema(schema, cfg)
    fit_schema(schema, frame, ctx, progress=progress)
    if mode is not None:
        n = len(frame) if source is None else source.n_rows if labels is None else len(kept)
        stream, why = choose(mode, n, decoded_bytes_per_row(schema, frame, base_dir) if mode == "auto" else None)
        if progress:
            print(f"  data path: {why}", file=sys.stderr)  # the last line of the schema block
        if stream:
            return Prepared(schema, streamed(source, schema, labels, ctx, train_cfg.num_workers), ctx, t0, inferred,
                            cohort)
        if sampled:  # in memory after all: every row
            frame = read_all(source).frame
            frame = frame.loc[kept.index] if labels is not None else frame
    if supervised:
        target = encode_labels(schema, frame[label])
    ds = DecodedDataset(decode_table(schema, frame, ctx, progress=progress), target)
    if cfg.is_alignment:
        complete = np.stack([p.numpy() for p in ds.present.values()], 0).sum(0) >= 2
        if complete.sum() < 2:
            raise SchemaError(
                f"only {int(complete.sum())} row(s) have at least two modalities present: alignment needs paired rows"
            )
    return Prepared(schema, ds, ctx, t0, inferred, cohort)


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
    resume: bool = False,
    ray: dict[str, Any] | None = None,
    init: str | Path | None = None,
    freeze: Sequence[str] = (),
) -> tuple[MultimodalNet, dict[str, Any]]:
    """Build the net from its parts, train it (``train/loop.py``; on Ray Train workers with ``ray``,
    ``recipes/ray_train.py``) and return it with the run report. ``resume``: continue from the crash-safe
    checkpoint in ``out/checkpoints``."""
    report = prep.ctx.report
    if report.n_errors or report.dropped_rows:
        print(f"polymodal: {report.summary()}", file=sys.stderr)
    net = MultimodalNet(prep.schema, cfg)
    started = start_from(net, cfg, init, freeze)  # fit(init=, freeze=): pre-trained weights, frozen parts
    decode_s = time.perf_counter() - prep.t0
    t1 = time.perf_counter()
    ckpt = Path(out) / "checkpoints" if out is not None else None
    if ray is not None:
        from polymodal.recipes.ray_train import train_on_ray

        history = train_on_ray(net, train_ds, val_ds, cfg, train_cfg, progress=progress, **ray)
    else:
        history = train_net(net, train_ds, val_ds, cfg, train_cfg, ckpt_dir=ckpt, progress=progress, resume=resume)
    info = run_info(run_type, net, train_ds, val_ds, on_error=on_error, decode_s=decode_s, t1=t1, report=report,
                    history=history)
    info["trainable_params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if prep.inferred:
        info["inferred"] = prep.inferred  # e.g. {"name": {"kind": "text", "encoder": "minilm", ...}}
    if started is not None:
        info["init"] = started
    if prep.cohort:
        info["cohort"] = prep.cohort  # catalogue path + version, cohort id, query: `catalog show` lists the run
    return net, info


def run_info(run_type: str, net: torch.nn.Module, train_ds: Any, val_ds: Any, *, on_error: str, decode_s: float,
             t1: float, report: Any, history: dict[str, Any]) -> dict[str, Any]:
    """The ``info`` every trained run records (``report.json``): version, type, rows, timings, size, decode report
    and training history (``t1``: when training started, from ``time.perf_counter``)."""
    return {
        "polymodal_version": __version__,
        "run_type": run_type,
        "n_train": len(train_ds),
        "n_val": len(val_ds) if val_ds is not None else 0,
        "on_error": on_error,
        "decode_s": round(decode_s, 3),
        "train_s": round(time.perf_counter() - t1, 3),
        "params": sum(p.numel() for p in net.parameters()),
        "decode_report": report.to_dict(),
        "training": history,
    }


def save_run(model: Any, out: str | Path | None) -> None:
    """Write the run folder (rank 0 only in a distributed run: the ranks hold the same weights), then remove the
    crash-safe checkpoint the finished training no longer needs (an interrupted one keeps it for ``resume``)."""
    if out is None or not is_rank_zero():
        return
    model.save(out)
    if not model.info.get("training", {}).get("interrupted"):
        discard_checkpoint(Path(out) / "checkpoints")


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)


# ------------------------------------------------------------------ fit(init=, freeze=): start from a saved run
FREEZABLE = ("encoders", "fusion")


def check_start(init: str | Path | None, freeze: str | Sequence[str] | None) -> list[str]:
    """Refuse a bad ``init`` / ``freeze`` before any table is read; returns the parts to freeze."""
    from polymodal.config.model import ConfigError
    from polymodal.errors import unknown_message
    from polymodal.recipes.runs import read_run

    parts = [p.strip() for p in freeze.split(",") if p.strip()] if isinstance(freeze, str) else list(freeze or ())
    for part in parts:
        if part not in FREEZABLE:
            raise ConfigError(unknown_message("part to freeze", part, FREEZABLE))
    if parts and init is None:
        raise ConfigError("freeze= keeps pre-trained weights fixed: name the run they come from with init= "
                          "(CLI --init runs/pre)")
    if init is not None:
        read_run(init)  # a clear error now for a folder that is not a run, or a torn one
    return parts


def start_from(net: MultimodalNet, cfg: ModelConfig, init: str | Path | None, freeze: Sequence[str]) -> dict | None:
    """Load the weights of the run ``init`` (``polymodal pretrain`` or ``fit``) that match ``net``'s by name: the
    encoders always, the fusion when both use the same fusion. A name in both with another shape is refused,
    naming the parameter and both shapes. Then the ``freeze`` parts stop learning (their BatchNorm statistics
    too: they stay in eval mode)."""
    from safetensors.torch import load_file

    from polymodal.errors import PolymodalError
    from polymodal.recipes.runs import read_run
    from polymodal.recipes.weights_file import check_safetensors

    if init is None:
        return None
    run_cfg, run_schema, _ = read_run(init)
    file = Path(init) / "weights.safetensors"
    check_safetensors(file)
    weights = load_file(str(file))
    run_fusion = ((run_cfg.get("model") or {}).get("fusion") or {}).get("name")
    prefixes = ("encoders.", "fusion.") if run_fusion == cfg.fusion.name else ("encoders.",)
    own = net.state_dict()
    take = {k: v for k, v in weights.items() if k.startswith(prefixes) and k in own}
    wrong = [k for k, v in take.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise PolymodalError(f"cannot initialise from {init}: parameter {k!r} is {list(weights[k].shape)} in the run "
                             f"and {list(own[k].shape)} in this net{more}; build the net as the run was built (the "
                             f"same dim, encoders and encoder options: see {init}/config.json)")
    if not take:
        raise PolymodalError(f"cannot initialise from {init}: none of its parameters matches this net's by name (its "
                             f"modalities: {run_schema.names}; this table's: {net.names})")
    net.load_state_dict({**own, **take})
    for part in freeze:
        _freeze(getattr(net, part))
    return {"from": str(init), "loaded": len(take), "fusion_loaded": run_fusion == cfg.fusion.name,
            "not_loaded": sorted(k for k in own if k.startswith(prefixes) and k not in take), "frozen": list(freeze)}


def _freeze(module: torch.nn.Module) -> None:
    import types

    module.requires_grad_(False)
    module.eval()
    module.train = types.MethodType(lambda self, mode=True: self, module)  # Lightning's train() keeps it in eval
