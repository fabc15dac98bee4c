"""Thumbnails and audio clips as ``data:`` URIs, within the report's size budget.

They are made from what the model saw: the decoded inputs (``data/decode.py``, the one decode path), so a
thumbnail is the image at the model's resolution and a clip is the wave at the schema's sample rate.

Limits (``LIMITS``): a thumbnail's longer side is at most ``THUMB_PX`` (64) pixels (a smaller image is kept as is
and drawn 64 px wide, pixelated); a clip is at most ``AUDIO_SECONDS`` (2 s) of mono 16-bit PCM at no more than
``AUDIO_RATE`` (8 kHz): at most 32 kB of WAV, about 43 kB in the page.
"""

from __future__ import annotations

import base64
import io
import wave as wavfile
from typing import Any

import numpy as np
from PIL import Image

THUMB_PX = 64
AUDIO_SECONDS = 2.0
AUDIO_RATE = 8000
TEXT_CHARS = 160
LIMITS = {"thumbnail_px": THUMB_PX, "audio_seconds": AUDIO_SECONDS, "audio_rate_hz": AUDIO_RATE,
          "text_chars": TEXT_CHARS}


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnail(pixels: np.ndarray) -> str:
    """A PNG ``data:`` URI of a decoded image ``[C, H, W]`` (values in [0, 1]; out-of-range values are rescaled),
    its longer side at most ``THUMB_PX``."""
    a = np.asarray(pixels, dtype=np.float32)
    if a.min() < 0.0 or a.max() > 1.0:  # a normalised input: stretch it back for viewing
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    img = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    im = Image.fromarray(img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1))
    im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return _uri("image/png", buf.getvalue())


def audio_clip(wave: np.ndarray, length: int, rate: int) -> tuple[str, float]:
    """(a WAV ``data:`` URI, its seconds) of a decoded wave: its first ``length`` samples, trimmed to
    ``AUDIO_SECONDS`` and brought down to at most ``AUDIO_RATE`` Hz, peak-normalised to be heard."""
    y = np.asarray(wave, dtype=np.float64)[: max(int(length), 1)]
    y = y[: int(AUDIO_SECONDS * rate)]
    out_rate = rate
    if rate > AUDIO_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), AUDIO_RATE)
        y = resample_poly(y, AUDIO_RATE // g, int(rate) // g)
        out_rate = AUDIO_RATE
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0:
        y = y / peak * 0.9
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wavfile.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(out_rate))
        w.writeframes(pcm.tobytes())
    return _uri("audio/wav", buf.getvalue()), len(pcm) / out_rate


def short_text(v: Any) -> str:
    """A cell as text, cut to ``TEXT_CHARS`` characters."""
    s = "" if v is None else str(v)
    return s if len(s) <= TEXT_CHARS else s[: TEXT_CHARS - 1] + "…"


def cell_media(kind: str, arrays: dict[str, Any], i: int, options: dict[str, Any], raw: Any) -> dict[str, Any]:
    """What a report shows of row ``i`` of one modality: ``{"image": uri}``, ``{"audio": uri, "seconds": s}`` or
    ``{"text": str}`` (the raw cell, for kinds without a picture)."""
    if kind in ("image", "depth") and "pixels" in arrays:
        return {"image": thumbnail(arrays["pixels"][i].numpy())}
    if kind == "audio" and "wave" in arrays:
        rate = int(options.get("sample_rate", AUDIO_RATE))
        uri, seconds = audio_clip(arrays["wave"][i].numpy(), int(arrays["length"][i]), rate)
        return {"audio": uri, "seconds": seconds}
    return {"text": short_text(raw)}
