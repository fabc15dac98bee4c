"""Truncated WAV / AIFF files: the frames the header declares against the frames the file holds.

libsndfile (soundfile) trusts the file size over the header: a WAV cut in half opens without complaint and reads
half its frames. ``truncation`` reads only the chunk headers (seeking over everything else) and returns a problem
sentence when the sound data ends before the header says it does, else ``None``. Headers that do not state a
length (streaming writers put 0 or 0xFFFFFFFF there), compressed AIFC and unknown layouts return ``None``: only a
definite shortfall is reported.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import IO

_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_AIFC_PCM = (b"NONE", b"none", b"sowt", b"twos", b"fl32", b"FL32", b"fl64", b"FL64", b"in24", b"in32")
_WAV_ONE_FRAME_PER_BLOCK = (1, 3, 6, 7, 0xFFFE)  # PCM, IEEE float, A-law, mu-law, extensible
_MAX_CHUNKS = 256  # a header walk never goes further than this many chunks


def truncation(source: str | os.PathLike | bytes) -> str | None:
    """``None`` for a complete (or not WAV/AIFF) file or bytes; else what is missing, in frames and seconds."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return _check(io.BytesIO(bytes(source)), len(source))
        path = Path(source)
        with path.open("rb") as f:
            return _check(f, path.stat().st_size)
    except (OSError, struct.error):
        return None  # unreadable headers are the decoder's business, not this check's


def _check(f: IO[bytes], size: int) -> str | None:
    head = f.read(12)
    if len(head) < 12:
        return None
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        found = _wav(f, head[:4])
        name = "WAV"
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        found = _aiff(f, head[8:12] == b"AIFC")
        name = "AIFF"
    else:
        return None
    if found is None:
        return None
    declared, data_start, frame_bytes, rate = found
    if frame_bytes <= 0 or declared <= 0:
        return None
    held = max(0, size - data_start) // frame_bytes
    if held >= declared:
        return None
    secs = (lambda n: f" ({n / rate:.2f} s)") if rate > 0 else (lambda n: "")
    return (
        f"the {name} file is truncated: its header declares {declared} frames{secs(declared)} but the file holds "
        f"only {held}{secs(held)} ({size} bytes)"
    )


def _wav(f: IO[bytes], magic: bytes) -> tuple[int, int, int, int] | None:
    """(declared frames, offset of the sound data, bytes per frame, sample rate) from a RIFF/RIFX/RF64 header."""
    end = ">" if magic == b"RIFX" else "<"
    frame_bytes = rate = 0
    ds64_data = None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, n = hdr[:4], struct.unpack(end + "I", hdr[4:])[0]
        if cid == b"ds64":
            ds64_data = struct.unpack("<Q", f.read(16)[8:16])[0]
        elif cid == b"fmt ":
            fmt = f.read(16)
            if struct.unpack(end + "H", fmt[:2])[0] not in _WAV_ONE_FRAME_PER_BLOCK:
                return None  # ADPCM and the like: a block holds several frames
            rate = struct.unpack(end + "I", fmt[4:8])[0]
            frame_bytes = struct.unpack(end + "H", fmt[12:14])[0]  # block align: bytes per frame
        elif cid == b"data":
            if magic == b"RF64" and n == 0xFFFFFFFF and ds64_data is not None:
                n = ds64_data
            elif n in _UNKNOWN_SIZES:
                return None
            return (n // frame_bytes if frame_bytes else 0), pos + 8, frame_bytes, rate
        pos += 8 + n + (n & 1)
    return None


def _aiff(f: IO[bytes], compressed: bool) -> tuple[int, int, int, int] | None:
    """(declared frames, offset of the sound data, bytes per frame, sample rate) from an AIFF/AIFC header."""
    frames = frame_bytes = rate = 0
    pos = 12
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, n = hdr[:4], struct.unpack(">I", hdr[4:])[0]
        if cid == b"COMM":
            comm = f.read(min(n, 22))
            channels, frames, bits = struct.unpack(">HIH", comm[:8])
            rate = int(_extended(comm[8:18]))
            if compressed and comm[18:22] not in _AIFC_PCM:
                return None  # compressed sound data: frames cannot be counted from bytes
            frame_bytes = channels * ((bits + 7) // 8)
        elif cid == b"SSND":
            offset = struct.unpack(">I", f.read(4))[0]
            return frames, pos + 16 + offset, frame_bytes, rate
        pos += 8 + n + (n & 1)
    return None


def _extended(b: bytes) -> float:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate)."""
    if len(b) < 10:
        return 0.0
    exp = ((b[0] & 0x7F) << 8) | b[1]
    mant = int.from_bytes(b[2:10], "big")
    if exp == 0 and mant == 0:
        return 0.0
    value = mant * 2.0 ** (exp - 16383 - 63)
    return -value if b[0] & 0x80 else value
