"""``pretrain``: masked any-to-any pre-training on an unlabelled table, saved as a run folder of type ``pretrain``.

    import polymodal as pm
    pre = pm.pretrain(unlabelled_df, out="runs/pre", mask_ratio=0.75, dim=32, epochs=10)
    model = pm.fit(train_df, label="digit", init="runs/pre")            # fine-tune from it
    probe = pm.fit(train_df, label="digit", init="runs/pre", freeze="encoders")
    pre.generate(rows, target="image", out="recon/")                    # predict a modality from the others

The steps are ``fit``'s (``recipes/steps.py``: prepare -> hold out -> train -> run folder), with no label and the
net of ``net.py``; training runs in Lightning through ``train/loop.py: run_trainer`` (progress, early stopping on
the validation loss, best weights, ``max_minutes``, crash checkpoints and ``resume`` under ``out``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polymodal.config.model import ConfigError, check_on_error
from polymodal.config.presets import resolve
from polymodal.data.dataset import make_loader
from polymodal.pretrain.module import LitPretrain
from polymodal.pretrain.net import PretrainNet, PretrainSpec
from polymodal.pretrain.run import PretrainedModel
from polymodal.recipes.runs import check_out
from polymodal.recipes.steps import hold_out, prepare, run_info, save_run, seed_all
from polymodal.train.checkpoint import LAST, check_resume, fingerprint
from polymodal.train.loop import run_trainer

SAMPLE_ROWS = 512  # training rows the target statistics are learned from


def pretrain(
    train: Any,
    *,
    out: str | Path | None = None,
    mask_ratio: float = 0.75,
    alpha: float = 1.0,
    hide_modality: float = 0.0,
    budget: Mapping[str, int] | None = None,
    masking: str = "crossmodal",
    decoder_layers: int = 1,
    validation: Any = None,
    kinds: dict[str, str] | None = None,
    groups: dict[str, list[str]] | None = None,
    use: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    preset: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    on_error: str = "raise",
    progress: bool = True,
    resume: bool = False,
    **options: Any,
) -> PretrainedModel:
    """Pre-train encoders + fusion on an unlabelled table by masked any-to-any modelling (MultiMAE / 4M).

    Per row, ``mask_ratio`` of the tokens are hidden; the visible budget is split over the modalities the row has
    by a Dirichlet(``alpha``) draw (``budget``: at most this many visible tokens per modality), and a small
    decoder per modality predicts the hidden tokens from the encoded visible ones (``targets.py`` lists what each
    kind predicts). ``hide_modality``: the probability that a row hides one of its modalities whole, so the
    decoders learn to predict a missing modality from the others alone (what ``generate`` asks).
    ``masking="permodal"`` masks each modality on its own (no cross-modal targets: the baseline of MultiMAE's
    claim). Every column is an input: leave a label out with ``ignore=["label"]``. Model and training
    options are ``fit``'s (``dim``, ``fusion`` (default ``transformer``), ``encoders``, ``epochs``, ``lr``, ...).
    """
    on_error = check_on_error(on_error)
    spec = PretrainSpec(mask_ratio=mask_ratio, alpha=alpha, hide_modality=hide_modality, budget=dict(budget or {}),
                        masking=masking, decoder_layers=decoder_layers)
    cfg, train_cfg = resolve(options, preset=preset, config=config)
    if cfg.fusion is None:
        raise ConfigError("pre-training needs a fusion whose tokens the decoders read: fusion='transformer'")
    if resume and out is None:
        raise ConfigError("resume needs the run folder the interrupted pre-training wrote: give the same out=")
    check_out(out)
    seed_all(train_cfg.seed)
    prep = prepare(train, None, cfg, supervised=False, kinds=kinds, groups=groups, use=use, ignore=ignore,
                   on_error=on_error, progress=progress)
    train_ds, val_ds = hold_out(prep, validation, train_cfg, on_error=on_error, progress=progress)
    report = prep.ctx.report
    if report.n_errors or report.dropped_rows:
        print(f"polymodal: {report.summary()}", file=sys.stderr)
    net = PretrainNet(prep.schema, cfg, spec, sample=train_ds[list(range(min(SAMPLE_ROWS, len(train_ds))))])
    decode_s = time.perf_counter() - prep.t0
    t1 = time.perf_counter()
    lit = LitPretrain(net, cfg, train_cfg)
    ckpt = Path(out) / "checkpoints" if out is not None else None
    if ckpt is not None:
        lit.fingerprint = fingerprint(cfg, train_cfg, train_ds, val_ds)
    if resume:
        check_resume(ckpt / LAST, lit.fingerprint)
    train_loader = make_loader(train_ds, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed, shard=True)
    has_val = val_ds is not None and len(val_ds) > 0
    val_loader = make_loader(val_ds, train_cfg.batch_size, shuffle=False, shard=True) if has_val else None
    history = run_trainer(lit, net, train_loader, val_loader, train_cfg, "val_loss", "min", ckpt, progress=progress,
                          resume=resume)
    info = run_info(PretrainedModel.run_type, net, train_ds, val_ds, on_error=on_error, decode_s=decode_s, t1=t1,
                    report=report, history=history)
    model = PretrainedModel(prep.schema, cfg, train_cfg, spec, net, info)
    save_run(model, out)  # rank 0 writes; the crash-safe checkpoint is removed once the run is saved
    return model
