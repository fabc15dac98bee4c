"""Checking a safetensors file's header against its size before anything is loaded, so a truncated file or a
forged header (a tensor claiming terabytes) gives a message instead of an allocation or a raw library error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from polymodal.errors import PolymodalError

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
                "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own cap on the JSON header



def check_safetensors(file: Path) -> dict[str, tuple[str, list[int]]]:
    """``{tensor: (dtype, shape)}`` from a safetensors file's header, checked against the file size before anything
    is loaded: the header length, its JSON, and each tensor's dtype, shape and offsets must fit inside the file."""
    size = file.stat().st_size  # the caller checked it is a plain file
    bad = f"cannot load {file}: not a valid safetensors file"
    if size < 8:
        raise PolymodalError(f"{bad} ({size} bytes, shorter than the 8-byte header length): truncated or damaged")
    try:
        with open(file, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(_MAX_HEADER, size - 8):
                raise PolymodalError(f"{bad}: its header claims {n} bytes but the file holds {size - 8} after the "
                                     "length: truncated or forged")
            head = f.read(n)
    except OSError as e:
        raise PolymodalError(f"cannot read {file}: {e.strerror}") from None
    try:
        header = json.loads(head.decode("utf-8"))
    except ValueError:
        raise PolymodalError(f"{bad}: its header is not valid JSON: damaged or forged") from None
    if not isinstance(header, dict):
        raise PolymodalError(f"{bad}: its header is not a JSON object: damaged or forged")
    data = size - 8 - n
    out: dict[str, tuple[str, list[int]]] = {}
    spans = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(t, dict) and t.get("dtype") in _DTYPE_BYTES and isinstance(t.get("shape"), list)
              and all(type(d) is int and d >= 0 for d in t["shape"]) and isinstance(t.get("data_offsets"), list)
              and len(t["data_offsets"]) == 2 and all(type(o) is int for o in t["data_offsets"]))
        if not ok:
            raise PolymodalError(f"{bad}: tensor {name!r} has no valid dtype / shape / data_offsets: damaged or forged")
        begin, end = t["data_offsets"]
        count = 1
        for d in t["shape"]:
            count *= d
        if not 0 <= begin <= end <= data:
            raise PolymodalError(f"{bad}: tensor {name!r} lies at bytes {begin}..{end} but the data holds {data} "
                                 "bytes: truncated or forged")
        if end - begin != count * _DTYPE_BYTES[t["dtype"]]:
            raise PolymodalError(f"{bad}: tensor {name!r} of shape {t['shape']} ({t['dtype']}) needs "
                                 f"{count * _DTYPE_BYTES[t['dtype']]} bytes but spans {end - begin}: damaged or forged")
        spans.append((begin, end))
        out[name] = (t["dtype"], list(t["shape"]))
    spans.sort()
    at = 0
    for begin, end in spans:
        if begin != at:
            raise PolymodalError(f"{bad}: its tensors overlap or leave gaps in the data: damaged or forged")
        at = end
    if at != data:
        raise PolymodalError(f"{bad}: {data - at} bytes after the last tensor: damaged or forged")
    return out
