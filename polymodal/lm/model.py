"""``LanguageModel``: a trained multimodal LM run — ``generate``, ``ask``, ``evaluate``, ``with_token_budget``,
``save``; ``load_lm_run`` (``pm.load_lm``) reads it back.

The run folder is the usual one (``recipes/runs.py``) with ``run_type: "lm"``: ``config.json`` holds the encoder
net's ``model`` / ``train`` sections and an ``lm`` section (the LM source with its sha256, the connector, the
system prompt, the prompt / answer columns, the token budget); ``weights.safetensors`` holds the encoder net
(frozen pretrained towers left out, as always) and the bridge (connectors + markers), never the LM.
"""

from __future__ import annotations

import copy
import re
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal import __version__
from polymodal.config.io import build, dump, flatten_sections
from polymodal.data.schema import Schema
from polymodal.data.table import read_table
from polymodal.errors import PolymodalError, SchemaError
from polymodal.evaluate.subsets import modality_subsets, subset_key
from polymodal.lm.bridge import Bridge, MultimodalLM, Saved
from polymodal.lm.budget import LMBudget
from polymodal.lm.fastv import fastv_prefill
from polymodal.lm.generate import Generated, decode, plain_prefill
from polymodal.lm.lora import LoraParams, add_lora
from polymodal.lm.sequence import ChatLayout
from polymodal.lm.source import LoadedLM, load_lm
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.embed import present_names
from polymodal.recipes.model import Model
from polymodal.recipes.runs import RUN_TYPES, load_weights, read_run, write_run
from polymodal.registry import Component
from polymodal.types import Tokens


def normalise(text: str) -> str:
    """What exact match compares: lower case, single spaces, no surrounding punctuation."""
    return re.sub(r"\s+", " ", re.sub(r"^[\W_]+|[\W_]+$", "", str(text).strip().lower()))


def text_column(frame: pd.DataFrame, column: str, what: str) -> list[str]:
    if column not in frame.columns:
        raise SchemaError(f"{what} column {column!r} not found; the table has {list(frame.columns)}")
    out = []
    for row, v in zip(frame.index, frame[column]):
        if not isinstance(v, str) or not v.strip():
            raise SchemaError(f"row {row!r}, column {column!r}: the {what} must be a non-empty string, got {v!r}; "
                              "fill it in or drop the row")
        out.append(v)
    return out


@RUN_TYPES.register("lm")
class LanguageModel:
    """Frozen encoders (of a fitted ``Model``) + trained connectors + a frozen causal LM."""

    run_type = "lm"

    def __init__(self, encoders: Model, lm: LoadedLM, bridge: Bridge, options: dict[str, Any],
                 info: dict | None = None, budget: LMBudget | None = None, lora: LoraParams | None = None) -> None:
        self.encoders, self.lm, self.bridge, self.options = encoders, lm, bridge, dict(options)
        self.lora = lora  # the LoRA layers injected into lm.model (stage 2), or None
        self.info: dict[str, Any] = info or {}
        self.layout = ChatLayout.of(lm.tokenizer, options.get("system"))
        self.budget = budget
        self.mlm = MultimodalLM(encoders.net, lm, bridge, self.layout, budget).eval()

    @property
    def schema(self) -> Schema:
        return self.encoders.schema

    @property
    def modalities(self) -> list[str]:
        return list(self.bridge.names)

    def __repr__(self) -> str:
        src = self.options["lm"]
        return (f"LanguageModel(lm={src.get('name') or src.get('path')!r}, "
                f"connector={self.options['connector']['name']!r}, "
                f"modalities={self.modalities})")

    # ------------------------------------------------------------------ inputs
    def features(self, data: Any, *, absent: tuple[str, ...] = (), on_error: str = "raise"):
        """(frame, {modality: Tokens}) of the modalities the table has, ``absent`` ones left out."""
        table = read_table(data)
        frame = table.frame
        if len(frame) == 0:
            raise SchemaError("the table is empty: there are no rows to answer")
        cols = [m for m in self.schema.names if all(c in frame.columns for c in self.schema[m].columns)]
        names = [m for m in cols if m not in absent]
        if not names:
            return frame, {}
        names = present_names(self.schema, frame, names)
        _, ds, _ = self.encoders.decode(table, on_error=on_error, labels="ignore", names=names, progress=False,
                                        base_dir=table.base_dir)
        parts: dict[str, list[Tokens]] = {}
        for start in range(0, len(ds), 64):
            for m, t in self.mlm.encode(ds[list(range(start, min(len(ds), start + 64)))], names).items():
                parts.setdefault(m, []).append(t)
        tokens = {}
        for m, ts in parts.items():
            n = max(t.x.shape[1] for t in ts)
            pad = torch.nn.functional.pad
            tokens[m] = Tokens(torch.cat([pad(t.x, (0, 0, 0, n - t.x.shape[1])) for t in ts]),
                               torch.cat([pad(t.valid, (0, n - t.x.shape[1])) for t in ts]),
                               torch.cat([t.present for t in ts]))
        return frame, tokens

    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        return [self.layout.prompt_ids(self.lm.tokenizer, p) for p in prompts]

    # ------------------------------------------------------------------ generation
    def generate_tokens(self, tokens: dict[str, Tokens], prompts: list[str], *, batch_size: int = 16,
                        **options: Any) -> list[Generated]:
        """Generate from encoder tokens (``features``) and prompt texts, in batches; one ``Generated`` per batch."""
        ids = self.prompt_ids(prompts)
        fastv = self.budget if self.budget is not None and self.budget.fastv_drop > 0 else None
        out = []
        with torch.no_grad():
            for s in range(0, len(prompts), batch_size):
                part = {m: Tokens(t.x[s:s + batch_size], t.mask[s:s + batch_size], t.present[s:s + batch_size])
                        for m, t in tokens.items()}
                packed = self.mlm.packed(part, ids[s:s + batch_size])
                prefill = plain_prefill if fastv is None else partial(
                    fastv_prefill, modal=packed.modal, layer=fastv.fastv_layer, drop=fastv.fastv_drop)
                out.append(decode(self.lm.model, self.lm.tokenizer, packed, end_id=self.layout.end_id,
                                  prefill=prefill, **options))
        return out

    def generate(self, data: Any, prompt: str | None = None, *, max_new_tokens: int = 16, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, stop: tuple[str, ...] | list[str] = (),
                 seed: int | None = None, batch_size: int = 16, absent: tuple[str, ...] = (),
                 use_cache: bool = True) -> list[str]:
        """One answer per row: the prompt is the row's prompt column (or ``prompt`` for every row); greedy at
        ``temperature=0``, else sampled (``top_k``, ``top_p``, ``seed``); ``stop`` strings end an answer early;
        ``absent`` modalities are left out (the LM gets no token of theirs)."""
        frame, tokens = self.features(data, absent=tuple(absent))
        prompts = [prompt] * len(frame) if prompt is not None else text_column(frame, self.options["prompt"], "prompt")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        outs = self.generate_tokens(tokens, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_k=top_k, top_p=top_p, stop=list(stop),
                                    generator=gen, use_cache=use_cache)
        return [t for g in outs for t in g.texts]

    def ask(self, prompt: str, **values: Any) -> str:
        """One answer to ``prompt`` about one record: ``values`` maps a modality (or its column) to its value
        (an image path or bytes, an audio path, an array); a modality not given is absent."""
        row: dict[str, Any] = {}
        for key, v in values.items():
            spec = self.schema[key] if key in self.schema.names else next(
                (s for s in self.schema if key in s.columns), None)
            if spec is None:
                raise SchemaError(f"ask(): {key!r} is not a modality of this model ({', '.join(self.schema.names)})")
            if len(spec.columns) != 1:
                raise SchemaError(f"ask(): modality {spec.name!r} reads columns {spec.columns}: pass a table instead")
            row[spec.columns[0]] = v
        frame = pd.DataFrame([row]) if row else pd.DataFrame(index=[0])
        return self.generate(frame, prompt, max_new_tokens=self.options.get("max_new_tokens", 16))[0]

    def evaluate(self, data: Any, *, subsets: bool = True, max_new_tokens: int = 8, batch_size: int = 16) -> dict:
        """Exact match (``normalise``d) of the generated answers against the answer column; with ``subsets``, also
        per subset of modalities (the others absent at test)."""
        frame, tokens = self.features(data)
        prompts = text_column(frame, self.options["prompt"], "prompt")
        answers = [normalise(a) for a in text_column(frame, self.options["answer"], "answer")]

        def score(toks: dict[str, Tokens]) -> float:
            outs = self.generate_tokens(toks, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens)
            texts = [t for g in outs for t in g.texts]
            return sum(normalise(t) == a for t, a in zip(texts, answers)) / len(answers)

        result: dict[str, Any] = {"exact_match": score(tokens), "n": len(answers)}
        if subsets and len(tokens) > 1:
            result["subsets"] = {subset_key(s): score({m: tokens[m] for m in s})
                                 for s in modality_subsets(list(tokens))}
            result["subsets"]["none"] = score({})
        return result

    # ------------------------------------------------------------------ budgets
    def with_token_budget(self, keep: float = 1.0, reducer: str = "pool", *, count: int | None = None,
                          fastv_layer: int | None = None, fastv_drop: float = 0.0) -> "LanguageModel":
        """A copy that keeps ``keep`` x each modality's tokens before the LM (or ``count`` of them; ``reducer``
        from ``tokens.REDUCERS``) and, with ``fastv_drop``, prunes that fraction of the modality tokens inside
        the LM after layer ``fastv_layer`` (FastV). This model is unchanged; the LM is shared, not copied."""
        budget = LMBudget(keep=keep, count=count, reducer=reducer, fastv_layer=fastv_layer, fastv_drop=fastv_drop)
        opts = {**self.options, "budget": budget.to_dict()}
        return LanguageModel(self.encoders, self.lm, copy.deepcopy(self.bridge), opts, dict(self.info), budget,
                             self.lora)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        cfg = dump(self.encoders.cfg, self.encoders.train_cfg, run_type=self.run_type, polymodal_version=__version__)
        cfg["lm"] = self.options
        return write_run(path, cfg, self.schema, Saved(self.encoders.net, self.bridge, self.lora), self.info)

    @classmethod
    def from_run(cls, path: str | Path, cfg: dict[str, Any], schema: Schema, info: dict[str, Any]) -> "LanguageModel":
        if cfg.get("run_type") != cls.run_type or not isinstance(cfg.get("lm"), dict):
            raise PolymodalError(f"{path} holds a {cfg.get('run_type', 'model')!r} run, not a language-model run "
                                 "(written by `polymodal lm fit`); load it with pm.load")
        options = cfg["lm"]
        try:
            model_cfg, train_cfg = build(flatten_sections({k: cfg[k] for k in ("model", "train")}))
            net = MultimodalNet(schema, model_cfg)
        except Exception as e:  # noqa: BLE001  (a hand-edited config of any shape)
            raise PolymodalError(f"{path}/config.json: cannot build the encoders ({type(e).__name__}: {e})"
                                 .splitlines()[0]) from None
        src = options["lm"]
        lm = load_lm({"name": src["name"]} if src.get("name") else {"path": src["path"]}, expect_sha256=src["sha256"])
        bridge = Bridge(options["modalities"], model_cfg.dim, lm.width, Component.of(options["connector"]), 0.0)
        lora = add_lora(lm.model, options["lora"]) if options.get("lora") else None
        saved = load_weights(path, Saved(net, bridge, lora))
        encoders = Model(schema, model_cfg, train_cfg, saved.encoder, {})
        budget = LMBudget(**options["budget"]) if options.get("budget") else None
        return cls(encoders, lm, saved.bridge, options, info, budget, lora)


def load_lm_run(path: str | Path) -> LanguageModel:
    """The ``LanguageModel`` saved in a run folder (``polymodal lm fit --out``)."""
    return LanguageModel.from_run(path, *read_run(path))


__all__ = ["LanguageModel", "load_lm_run", "normalise"]
