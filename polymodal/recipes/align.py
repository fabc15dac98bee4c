"""``align``: train a shared embedding space from a table of paired records (no label needed).

    emb = pm.align("pairs.parquet", use=["image", "text"], objective="siglip", out="runs/emb")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from polymodal.config.model import AlignSpec, ConfigError, ModelConfig, TrainConfig, check_on_error
from polymodal.errors import unknown_message
from polymodal.registry import Component
from polymodal.config.presets import resolve
from polymodal.recipes.aligned import AlignedModel
from polymodal.recipes.runs import check_out
from polymodal.recipes.ray_train import ray_options
from polymodal.recipes.steps import hold_out, prepare, save_run, seed_all, train_run
from polymodal.train.distributed import check_strategy, is_rank_zero

# what makes an alignment run: no fusion and no task head; larger contrastive batches, less patience
DEFAULTS = {"fusion": None, "align": {"objective": "clip"}, "batch_size": 128, "patience": 5}
ALIGN_FIELDS = ("objective", "embed_dim", "projection", "weight", "uniformity_weight", "center", "lock")
OPTION_NAMES = {f.name for f in fields(ModelConfig)} | {f.name for f in fields(TrainConfig)} | set(ALIGN_FIELDS)


def align(
    train: Any,
    *,
    objective: Any = None,
    label: str | None = None,
    validation: Any = None,
    kinds: dict[str, str] | None = None,
    groups: dict[str, list[str]] | None = None,
    use: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    out: str | Path | None = None,
    preset: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    on_error: str = "raise",
    progress: bool = True,
    resume: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> AlignedModel:
    """Align the modalities of a table of paired records in one shared space.

    ``use`` keeps only these modalities (names as inferred from the columns, or as grouped with ``groups``);
    ``label`` names an optional column that is not an input (kept for class-level evaluation). Every other column
    is an input unless ``ignore`` (or ``kinds={col: "ignore"}``) leaves it out; without ``label`` and ``use``, a
    column that looks like a label (few distinct values, folded into the ``tabular`` input) is noted once on
    stderr. ``kinds`` / ``groups`` / ``on_error`` / ``validation`` / ``encoders`` (a column of a few distinct
    strings named there takes its encoder's kind) work as in ``fit``. ``objective``
    (default ``clip``, or what ``preset`` / ``config`` say): ``clip`` | ``siglip`` (pairwise over >= 3 modalities)
    | ``symile`` | ``pairwise`` | ``anchor``, a name or ``{"name": ..., "options": {...}}``. The shared-space
    fields (``embed_dim``, ``projection``, ``weight``, ``uniformity_weight``, ``center``, ``lock``) may be given
    flat; every other option is a ``ModelConfig`` / ``TrainConfig`` field, layered over ``preset`` and ``config``
    as in ``fit`` (the alignment defaults: no fusion, ``batch_size=128``, ``patience=5``).

    Frozen pretrained towers, one of them text, with no ``embed_dim`` given: the shared space is the text tower's
    own (``lock="auto"``, LiT-style), and each other tower maps its raw features into it with one linear layer;
    class names never seen in training then land where the text tower puts them. ``lock="none"`` projects every
    modality; ``lock="<modality>"`` names the frozen tower to keep.

    ``max_minutes`` is the training time limit: a wall-clock cap in minutes (default None: no limit, only
    ``epochs`` and early stopping end training). When it runs out, training stops and the model keeps the best
    validation weights so far (the last weights without a validation split) (CLI ``--set max_minutes=10``).

    The result: ``embed``, ``encode``, ``zero_shot``, ``prototype_classify``, ``evaluate`` (retrieval), ``save``.
    """
    on_error = check_on_error(on_error)
    for key in options:
        if key not in OPTION_NAMES:
            raise ConfigError(unknown_message("option", key, OPTION_NAMES))
    spec = options.pop("align", None) or {}
    spec = {"objective": spec} if isinstance(spec, (str, Component)) else dict(spec)
    spec.update({k: options.pop(k) for k in ALIGN_FIELDS if k in options})
    if objective is not None:
        spec["objective"] = objective
    cfg, train_cfg = resolve({**options, **({"align": spec} if spec else {})}, preset=preset, config=config,
                             defaults=DEFAULTS)
    if cfg.fusion is not None or not isinstance(cfg.align, AlignSpec):
        raise ConfigError("align trains encoders and projections only: leave fusion unset (it is for pm.fit)")
    check_out(out)
    ray = ray_options(ray_address, workers, resume)
    check_strategy(train_cfg)
    progress = progress and is_rank_zero()  # the other ranks of a DDP run print nothing
    seed_all(train_cfg.seed)
    prep = prepare(train, label, cfg, supervised=False, kinds=kinds, groups=groups, use=use, ignore=ignore,
                   on_error=on_error, progress=progress)
    train_ds, val_ds = hold_out(prep, validation, train_cfg, on_error=on_error, progress=False)
    net, info = train_run(prep, cfg, train_cfg, train_ds, val_ds, run_type=AlignedModel.run_type, on_error=on_error,
                          resume=resume, ray=ray,
                          out=out, progress=progress)
    model = AlignedModel(prep.schema, cfg, train_cfg, net, info)
    save_run(model, out)
    return model
