"""Audio: log-mel spectrogram -> small 2-D conv stack -> one token per 4 spectrogram frames.

Reads ``wave`` float32 ``[B, T]`` at ``spec.options['sample_rate']`` and ``length`` int64 ``[B]`` (real samples).
Samples beyond ``length`` are zeroed before anything else, so padding values can never leak into real tokens.
"""

from __future__ import annotations

import math

import librosa
import torch
from torch import Tensor, nn

from polymodal.blocks import SinusoidalPositions, TransformerBlock, check_heads, required_option, run_on_present
from polymodal.data.schema import ModalitySpec
from polymodal.tokens.budget import encoder_stack
from polymodal.tokens.spec import SizedTokens
from polymodal.types import Tokens
from polymodal.encoders.base import ENCODERS, Encoder


def _conv_bn(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


def _down(n: int) -> int:
    return (n - 1) // 2 + 1


@ENCODERS.register("audio_logmel")
class AudioLogMel(Encoder):
    """Log-mel front end (STFT ~32 ms window, ~16 ms hop, 40 mel bands, per-utterance normalisation), a 2-D conv
    stack that downsamples time by 4 and folds the mel axis into channels, then a transformer block over time."""

    kind = ("audio",)
    TIME_STRIDE = 4

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        *,
        n_mels: int = 40,
        width: int = 16,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spec, dim)
        sr = int(required_option(spec, "sample_rate", "audio_logmel"))
        self.sample_rate = sr
        self.n_fft = 2 ** int(round(math.log2(0.032 * sr)))  # 256 at 8 kHz, 512 at 16 kHz
        self.hop = self.n_fft // 2
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        mel = librosa.filters.mel(sr=sr, n_fft=self.n_fft, n_mels=n_mels)  # [n_mels, n_fft // 2 + 1]
        self.register_buffer("mel_fb", torch.as_tensor(mel, dtype=torch.float32), persistent=False)
        # (mel, time) strides: (2, 2), (2, 2), (2, 1) -> time / 4, mel / 8 folded into channels.
        self.convs = nn.Sequential(
            _conv_bn(1, width, (2, 2)), _conv_bn(width, 2 * width, (2, 2)), _conv_bn(2 * width, 2 * width, (2, 1))
        )
        mel_out = _down(_down(_down(n_mels)))
        self.proj = nn.Linear(2 * width * mel_out, dim)
        self.pos = SinusoidalPositions(dim)
        check_heads(dim, heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    @property
    def supports_token_budget(self) -> bool:
        """Token budgets reduce inside this encoder's transformer blocks (``encoder_stack``), when it has any."""
        return len(self.blocks) > 0

    def frame_mask(self, length: Tensor, n_frames: int) -> Tensor:
        """Frame ``f`` (centred at sample ``f * hop``) is real when it starts inside the clip; frame 0 always is."""
        f = torch.arange(n_frames, device=length.device)
        m = (f[None] * self.hop) < length[:, None]
        m[:, 0] = True
        return m

    def logmel(self, wave: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        """``wave[B, T]`` -> per-utterance normalised log-mel ``[B, n_mels, F]`` and its frame mask ``[B, F]``."""
        spec = torch.stft(
            wave, self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # [B, n_fft // 2 + 1, F]
        logmel = torch.log(torch.matmul(self.mel_fb, power) + 1e-6)  # [B, n_mels, F]
        fmask = self.frame_mask(length, logmel.shape[-1])
        w = fmask[:, None, :].to(logmel.dtype)
        count = w.sum(dim=(1, 2), keepdim=True) * logmel.shape[1]
        mean = (logmel * w).sum(dim=(1, 2), keepdim=True) / count
        var = ((logmel - mean).square() * w).sum(dim=(1, 2), keepdim=True) / count
        normed = (logmel - mean) / torch.sqrt(var + 1e-5)
        return normed * w, fmask  # padded frames are exactly 0 (the utterance mean)

    def _features(self, wave: Tensor, length: Tensor) -> Tensor:
        x, _ = self.logmel(wave, length)
        x = self.convs(x[:, None])  # [B, C, mel', F']
        b, c, m, t = x.shape
        return self.proj(x.reshape(b, c * m, t).transpose(1, 2))  # [B, F', D]

    def token_mask(self, length: Tensor, n_tokens: int) -> Tensor:
        """Token ``t`` is real when its first spectrogram frame (``TIME_STRIDE * t``) starts inside the clip."""
        t = torch.arange(n_tokens, device=length.device)
        m = (t[None] * self.TIME_STRIDE * self.hop) < length[:, None]
        m[:, 0] = True
        return m

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:
        wave = inputs["wave"].float()
        if wave.dim() != 2:
            raise ValueError(
                f"audio_logmel for modality {self.spec.name!r} expects wave [B, T], got {tuple(wave.shape)}"
            )
        b, n = wave.shape
        length = inputs["length"].to(wave.device).long().clamp(0, n)
        wave = wave * (torch.arange(n, device=wave.device)[None] < length[:, None])
        x = run_on_present(self, self._features, present, wave, length)
        mask = self.token_mask(length, x.shape[1])
        x = self.pos(x)
        reduced = encoder_stack(self, self.blocks, x, mask)  # a token budget below 1 (1-D grid: pool over time)
        if reduced is not None:
            return SizedTokens(self.norm(reduced.x), reduced.mask, present, reduced.size)
        self.token_trace = [(x.shape[1], x.shape[1])] * len(self.blocks)  # for FLOPs accounting
        for block in self.blocks:
            x = block(x, mask)
        return Tokens(self.norm(x), mask, present)
