"""Hugging Face audio encoder ``hf_audio`` (pip extra ``pretrained``): the encoder of a Whisper checkpoint, or an
Audio Spectrogram Transformer (AST), from a local folder (a hub id only with ``allow_hub=True``), fed the model's
own input features (its feature extractor, ``_extractor``). Loading helpers: ``hf.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.schema import ModalitySpec
from polymodal.errors import PolymodalError
from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.base import PretrainedEncoder, resolve_source
from polymodal.encoders.pretrained.hf import identity, load_json, local_source, quiet, load_hf


@ENCODERS.register("hf_audio")
class HFAudio(PretrainedEncoder):
    """Hugging Face audio encoder from a local folder: a Whisper checkpoint's encoder, or an AST."""

    kind = ("audio",)
    default_pool = None  # Whisper: 'mean' over the frames of the real clip; AST: 'pooler'

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return local_source(options)

    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 **options: Any) -> None:
        super().__init__(spec, dim, **options)
        source = resolve_source(path, allow_hub=allow_hub, what="hf_audio")
        model = load_hf(source, allow_hub=allow_hub, what="hf_audio")
        self.model_type = str(model.config.model_type)
        with quiet() as tf:
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
        self.identity = identity(source, allow_hub)
        self._finish()

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what="hf_audio")
        rate = load_json(Path(source) / "preprocessor_config.json").get("sampling_rate", 16000)
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
