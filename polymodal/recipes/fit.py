"""``fit``: train a supervised model on a table (classification or regression).

    import polymodal as pm
    model = pm.fit(train_df, label="digit", fusion="transformer")
    model = pm.fit("train.parquet", label="y", preset="fast", fusion={"name": "transformer", "options": {"layers": 2}})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polymodal.config.model import check_on_error
from polymodal.config.presets import resolve
from polymodal.recipes.model import Model
from polymodal.recipes.runs import check_out
from polymodal.recipes.ray_train import ray_options
from polymodal.recipes.steps import check_start, hold_out, prepare, save_run, seed_all, train_run
from polymodal.train.distributed import check_strategy, is_rank_zero


def fit(
    train: Any,
    label: str,
    *,
    validation: Any = None,
    kinds: dict[str, str] | None = None,
    groups: dict[str, list[str]] | None = None,
    use: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    task: str | None = None,
    out: str | Path | None = None,
    preset: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    on_error: str = "raise",
    progress: bool = True,
    resume: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    init: str | Path | None = None,
    freeze: str | Sequence[str] | None = None,
    **options: Any,
) -> Model:
    """Train a model on a table (DataFrame or a CSV / Parquet / JSONL path) and return it (saved to ``out``).

    ``label`` names the target column (never an input). Columns map to modalities automatically; override with
    ``kinds`` (column -> kind or ``"ignore"``), ``groups`` (modality name -> columns), ``ignore`` (columns to
    leave out) and ``use`` (keep only these modalities, e.g. for a unimodal baseline). A column of a few distinct
    strings is read as tabular; naming it in ``encoders`` with an encoder of another kind (``encoders={"name":
    "minilm"}``) makes it that kind, recorded in ``model.info["inferred"]``. ``task``: ``classify`` | ``regress``
    (default: inferred from the label). ``validation`` is a separate table; without one, ``val_fraction`` of the
    rows (stratified) is held out for early stopping. ``on_error``: ``raise`` | ``missing`` (undecodable cells are
    treated as missing, counted and reported).

    The configuration comes in layers, later wins: the library defaults < ``preset`` (``pm.list_presets()``)
    < ``config`` (a YAML / JSON file or a dict) < keyword ``options``: any field of ``ModelConfig`` (``dim``,
    ``fusion``, ``encoders``, ``head``, ``modality_dropout``, ``aux_weight``, ``align``, ``tokens``) or
    ``TrainConfig`` (``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``val_fraction``, ``patience``,
    ``seed``, ``max_minutes``). Components take a name or ``{"name": ..., "options": {...}}``.

    ``max_minutes`` is the training time limit: a wall-clock cap in minutes (default None: no limit, only
    ``epochs`` and early stopping end training). When it runs out, training stops and the model keeps the best
    validation weights so far (the last weights without a validation split), e.g. ``fit(df, "y",
    max_minutes=10)`` (CLI ``--set max_minutes=10``).

    Scale (docs/scale.md): ``devices`` / ``num_nodes`` / ``strategy`` / ``precision`` train data-parallel with
    Lightning (``batch_size`` stays the global batch); ``ray_address="local" | "auto"`` with ``workers=N`` runs the
    same training on Ray Train workers. With ``out``, the training state is checkpointed every
    ``checkpoint_every_n_steps`` steps and at each epoch end; ``resume=True`` with the same ``out``, table and
    options continues an interrupted run where its last checkpoint left it.

    The model: ``predict`` (labels, plus ``proba_<class>`` columns), ``predict_proba`` (one column per class),
    ``evaluate(data, metrics=[...])``, ``embed`` (with ``align=``), ``save``; ``pm.load`` reads a saved run.

    ``init``: a run folder (``polymodal pretrain --out``, or another fit) whose weights start this net: the
    encoders, and the fusion when it is the same fusion, matched by name and shape (a shape mismatch is refused,
    naming the parameter). ``freeze``: ``"encoders"`` and / or ``"fusion"`` (a list or ``"encoders,fusion"``)
    stay fixed, e.g. a linear probe on pre-trained encoders; ``model.info["init"]`` says what was loaded.
    """
    on_error = check_on_error(on_error)
    cfg, train_cfg = resolve(options, preset=preset, config=config)
    if cfg.is_alignment:
        from polymodal.config.model import ConfigError

        raise ConfigError("fit trains a fusion and a task head: fusion=None is for pm.align")
    check_out(out)
    frozen = check_start(init, freeze)
    ray = ray_options(ray_address, workers, resume)
    check_strategy(train_cfg)
    progress = progress and is_rank_zero()  # the other ranks of a DDP run print nothing
    seed_all(train_cfg.seed)
    prep = prepare(train, label, cfg, supervised=True, kinds=kinds, groups=groups, use=use, ignore=ignore, task=task,
                   on_error=on_error, progress=progress, train_cfg=train_cfg)
    train_ds, val_ds = hold_out(prep, validation, train_cfg, on_error=on_error, progress=progress)
    net, info = train_run(prep, cfg, train_cfg, train_ds, val_ds, run_type=Model.run_type, on_error=on_error,
                          resume=resume, ray=ray, out=out, init=init, freeze=frozen,
                          progress=progress)
    model = Model(prep.schema, cfg, train_cfg, net, info)
    save_run(model, out)
    return model
