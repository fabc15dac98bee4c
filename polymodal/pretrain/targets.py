"""What each modality's decoder predicts, one target per token of its encoder, keyed by the encoder's name.

``TARGETS[encoder name](encoder, stats)`` gives an object with:

* ``make(inputs) -> (target, maskable)``: the targets ``[B, N, out_dim]`` (float; ``long [B, N]`` for
  ``loss = "ce"``) aligned with the encoder's ``N`` tokens, and which tokens may be targets ``[B, N]``;
* ``hide(inputs, hidden) -> inputs``: the input with the hidden tokens' content blanked, so the encoder (whose
  convolutions and blocks see every token) cannot read what it must predict;
* ``fit_stats(inputs) -> dict``: normalisation learned once on training rows (stored with the run);
* ``decode(pred) -> array``: one row's predictions back to the modality's own form, for ``generate``.

Targets: normalised pixel patches (one patch per grid cell, standardised per channel over the training rows)
for images and depth; normalised log-mel frames for audio (the encoder's own front end; the 4 frames behind each
token); patch values for time series; standardised values of numeric features for tabular rows (categorical
features and the [CLS] token stay visible and are not predicted); word-piece ids (cross-entropy) for text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.registry import Registry

TARGETS: Registry[Any] = Registry("pre-training target")


class Target:
    loss = "mse"  # "mse" on continuous targets, "ce" on ids
    out_dim: int = 0

    def __init__(self, encoder, stats: dict[str, Any] | None = None) -> None:
        self.encoder, self.stats = encoder, dict(stats or {})

    def fit_stats(self, inputs: dict[str, Tensor], present: Tensor) -> dict[str, Any]:
        return {}

    def decode(self, pred: Tensor) -> np.ndarray:
        return pred.detach().cpu().numpy()


@TARGETS.register("image_conv")
class PixelPatches(Target):
    """Pixels cut into one patch per grid cell of ``image_conv`` (row-major, as its tokens), per-channel
    standardised with the training rows' mean and std."""

    def __init__(self, encoder, stats=None) -> None:
        super().__init__(encoder, stats)
        self.h, self.w = (int(s) for s in encoder.spec.options["size"])
        self.c = int(encoder.channels)
        self.gh, self.gw = encoder.grid
        self.ph, self.pw = math.ceil(self.h / self.gh), math.ceil(self.w / self.gw)
        self.out_dim = self.c * self.ph * self.pw

    def _padded(self, pixels: Tensor) -> Tensor:
        return F.pad(pixels.float(), (0, self.gw * self.pw - self.w, 0, self.gh * self.ph - self.h))

    def fit_stats(self, inputs, present):
        p = inputs["pixels"][present].float()
        if not len(p):
            return {"mean": [0.0] * self.c, "std": [1.0] * self.c}
        return {"mean": p.mean((0, 2, 3)).tolist(), "std": p.std((0, 2, 3)).clamp_min(1e-3).tolist()}

    def _norm(self, device) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.stats.get("mean", [0.0] * self.c), device=device)[None, :, None, None]
        std = torch.tensor(self.stats.get("std", [1.0] * self.c), device=device)[None, :, None, None]
        return mean, std

    def make(self, inputs):
        pixels = inputs["pixels"]
        mean, std = self._norm(pixels.device)
        x = self._padded((pixels.float() - mean) / std)
        b = x.shape[0]
        x = x.reshape(b, self.c, self.gh, self.ph, self.gw, self.pw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, self.gh * self.gw, self.out_dim), torch.ones(b, self.gh * self.gw, dtype=torch.bool,
                                                                          device=x.device)

    def hide(self, inputs, hidden):
        keep = (~hidden).reshape(-1, 1, self.gh, self.gw).float()
        keep = keep.repeat_interleave(self.ph, 2).repeat_interleave(self.pw, 3)[..., : self.h, : self.w]
        return {**inputs, "pixels": inputs["pixels"].float() * keep}

    def decode(self, pred):
        """``[N, out_dim]`` -> an image ``[H, W, C]`` in [0, 1]."""
        mean, std = self._norm(pred.device)
        x = pred.detach().reshape(self.gh, self.gw, self.c, self.ph, self.pw).permute(2, 0, 3, 1, 4)
        x = x.reshape(1, self.c, self.gh * self.ph, self.gw * self.pw)[..., : self.h, : self.w] * std + mean
        return x[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()


@TARGETS.register("audio_logmel")
class LogMelFrames(Target):
    """The encoder's normalised log-mel spectrogram, the ``TIME_STRIDE`` frames behind each token, flattened."""

    def __init__(self, encoder, stats=None) -> None:
        super().__init__(encoder, stats)
        self.n_mels = int(encoder.mel_fb.shape[0])
        self.stride = int(encoder.TIME_STRIDE)
        self.out_dim = self.stride * self.n_mels

    def fit_stats(self, inputs, present):
        """The mean and std of the raw log-mel over the training rows (to write a WAV back from predictions)."""
        wave, length = inputs["wave"][present][:256].float(), inputs["length"][present][:256]
        if not len(wave):
            return {"mean": 0.0, "std": 1.0}
        e = self.encoder
        spec = torch.stft(wave, e.n_fft, e.hop, window=e.window, center=True, pad_mode="constant",
                          return_complex=True)
        logmel = torch.log(e.mel_fb @ spec.abs().square() + 1e-6)
        m = e.frame_mask(length, logmel.shape[-1])[:, None, :].expand_as(logmel)
        return {"mean": float(logmel[m].mean()), "std": float(logmel[m].std())}

    def make(self, inputs):
        wave = inputs["wave"].float()
        length = inputs["length"].long().clamp(0, wave.shape[1])
        wave = wave * (torch.arange(wave.shape[1], device=wave.device)[None] < length[:, None])
        with torch.no_grad():
            mel, _ = self.encoder.logmel(wave, length)  # [B, n_mels, F]
        b, _, f = mel.shape
        n = math.ceil(f / self.stride)
        mel = F.pad(mel, (0, n * self.stride - f))
        target = mel.reshape(b, self.n_mels, n, self.stride).permute(0, 2, 3, 1).reshape(b, n, self.out_dim)
        return target, self.encoder.token_mask(length, n)

    def hide(self, inputs, hidden):
        wave = inputs["wave"].float()
        span = self.stride * self.encoder.hop  # samples behind one token
        tok = (torch.arange(wave.shape[1], device=wave.device) // span).clamp_max(hidden.shape[1] - 1)
        return {**inputs, "wave": wave * (~hidden[:, tok]).float()}

    def decode(self, pred):
        """``[N, out_dim]`` -> the log-mel ``[n_mels, N * stride]`` on the training rows' scale."""
        mel = pred.detach().reshape(-1, self.stride, self.n_mels).reshape(-1, self.n_mels).T
        return (mel * self.stats.get("std", 1.0) + self.stats.get("mean", 0.0)).cpu().numpy()

    def to_wave(self, logmel: np.ndarray) -> np.ndarray:
        """The inverse mel: mel power -> linear-frequency magnitude through the encoder's filterbank's
        pseudo-inverse (clipped at 0), then librosa's Griffin-Lim for the phase. (librosa's ``mel_to_audio`` solves
        a non-negative least squares per clip instead: the same result up to noise, but ~50x slower on a CPU.)"""
        import librosa

        e = self.encoder
        power = np.maximum(np.linalg.pinv(e.mel_fb.cpu().numpy()) @ np.exp(logmel), 0.0)
        return librosa.griffinlim(np.sqrt(power), n_iter=32, hop_length=e.hop, n_fft=e.n_fft)


@TARGETS.register("timeseries_patch")
class SeriesPatches(Target):
    """The values of each patch (``patch`` steps x all channels, as the encoder cuts them)."""

    def __init__(self, encoder, stats=None) -> None:
        super().__init__(encoder, stats)
        self.patch, self.c = int(encoder.patch), int(encoder.channels)
        self.out_dim = self.patch * self.c

    def _series(self, inputs) -> Tensor:
        s = inputs["series"].float()
        return s[..., None] if s.dim() == 2 else s

    def make(self, inputs):
        s = self._series(inputs)
        b, t, c = s.shape
        n = math.ceil(t / self.patch)
        length = inputs["length"].long() if "length" in inputs else torch.full((b,), t, device=s.device)
        s = s * (torch.arange(t, device=s.device)[None, :, None] < length[:, None, None])
        target = F.pad(s, (0, 0, 0, n * self.patch - t)).reshape(b, n, self.out_dim)
        maskable = (torch.arange(n, device=s.device)[None] * self.patch) < length[:, None]
        return target, maskable

    def hide(self, inputs, hidden):
        s = self._series(inputs)
        step = (torch.arange(s.shape[1], device=s.device) // self.patch).clamp_max(hidden.shape[1] - 1)
        return {**inputs, "series": s * (~hidden[:, step]).float()[..., None]}

    def decode(self, pred):
        return pred.detach().reshape(-1, self.c).cpu().numpy()  # [steps, channels]


@TARGETS.register("tabular_ft")
class NumericValues(Target):
    """Each numeric feature's (standardised) value, on its own token; [CLS] and categorical tokens are not targets."""

    out_dim = 1

    def make(self, inputs):
        e = self.encoder
        b = next(iter(inputs.values())).shape[0]
        n = 1 + e.n_num + e.n_cat
        device = next(iter(inputs.values())).device
        target = torch.zeros(b, n, 1, device=device)
        maskable = torch.zeros(b, n, dtype=torch.bool, device=device)
        if e.n_num:
            num = torch.where(inputs["num_mask"].bool(), inputs["num"].float(), torch.zeros_like(inputs["num"].float()))
            target[:, 1 : 1 + e.n_num, 0] = num
            maskable[:, 1 : 1 + e.n_num] = inputs["num_mask"].bool()
        return target, maskable

    def hide(self, inputs, hidden):
        e = self.encoder
        if not e.n_num:
            return inputs
        return {**inputs, "num_mask": inputs["num_mask"].bool() & ~hidden[:, 1 : 1 + e.n_num]}

    def decode(self, pred):
        return pred.detach()[1 : 1 + self.encoder.n_num, 0].cpu().numpy()


@TARGETS.register("text_transformer")
class WordPieceIds(Target):
    """Each position's word-piece id (cross-entropy over the vocabulary), as BERT's masked language modelling."""

    loss = "ce"

    def __init__(self, encoder, stats=None) -> None:
        super().__init__(encoder, stats)
        self.out_dim = int(encoder.vocab_size)

    def make(self, inputs):
        ids = inputs["ids"].long()
        maskable = ids != 0
        if "length" in inputs:
            maskable &= torch.arange(ids.shape[1], device=ids.device)[None] < inputs["length"][:, None]
        return torch.where(ids >= self.out_dim, torch.ones_like(ids), ids), maskable

    def hide(self, inputs, hidden):
        return {**inputs, "ids": torch.where(hidden, torch.zeros_like(inputs["ids"]), inputs["ids"])}

    def decode(self, pred):
        return pred.detach().argmax(-1).cpu().numpy()  # ids; the run's schema holds the vocabulary
