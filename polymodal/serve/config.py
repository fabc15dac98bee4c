"""``ServeConfig``: the server's limits and batching settings, checked once; API keys, stored only as hashes.

An API key file holds one key per line (blank lines and ``#`` comments skipped). A line ``sha256:<64 hex digits>``
is a key's hash, so the file need not hold the key itself (``polymodal serve`` never prints or stores a key). Keys
are kept as SHA-256 digests only and compared with ``hmac.compare_digest`` against every stored digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from polymodal.errors import PolymodalError

BACKENDS = ("torch", "onnx")
_HASH_LINE = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def key_hash(key: str) -> str:
    """The SHA-256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def read_key_file(path: str | os.PathLike) -> tuple[str, ...]:
    """The hashes of the keys in ``path`` (see the module docstring)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PolymodalError(f"cannot read the API key file {str(p)!r}: {e}") from None
    hashes = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _HASH_LINE.match(line)
        hashes.append(m[1].lower() if m else key_hash(line))
    if not hashes:
        raise PolymodalError(f"the API key file {str(p)!r} holds no key (one key, or sha256:<hex digest>, a line)")
    return tuple(hashes)


def key_matches(key: str | None, hashes: tuple[str, ...]) -> bool:
    """Whether ``key`` is one of the stored keys: every digest is compared, in constant time."""
    if key is None:
        return False
    digest = key_hash(key)
    ok = False
    for h in hashes:
        ok |= hmac.compare_digest(digest, h)
    return ok


@dataclass
class ServeConfig:
    """What the server accepts and how it batches (the flags of ``polymodal serve``)."""

    max_batch: int = 64
    """Most records in one inference batch (a request with more runs alone)."""
    max_wait_ms: float = 5.0
    """How long the oldest waiting request waits for others to join its batch."""
    queue_size: int = 256
    """Most requests waiting for a batch; one more is answered 429 with Retry-After."""
    timeout_s: float = 30.0
    """Longest a request waits for its result (queue + inference) before a 504."""
    threads: int = 0
    """torch threads of the inference thread (0: min(4, CPU count))."""
    max_body_bytes: int = 32 * 2**20
    """Largest request body (413 beyond)."""
    max_file_bytes: int = 16 * 2**20
    """Largest uploaded file (413 beyond)."""
    max_records: int = 256
    """Most records in one request (413 beyond)."""
    api_key_hashes: tuple[str, ...] = ()
    """SHA-256 digests of the accepted API keys; empty: no key needed."""
    backend: str = "torch"
    """Inference backend of the task head: torch | onnx (an exported run)."""
    onnx: str | None = None
    """The exported graph for ``backend="onnx"`` (default: RUN/model.onnx)."""

    def __post_init__(self) -> None:
        if not self.threads:
            self.threads = min(4, os.cpu_count() or 1)
        for f in fields(self):
            if f.name in ("api_key_hashes", "backend", "onnx"):
                continue
            v, real, zero_ok = getattr(self, f.name), f.name in ("max_wait_ms", "timeout_s"), f.name == "max_wait_ms"
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and (v >= 0 if zero_ok else v > 0)
            if not ok or (not real and not float(v).is_integer()):
                what = "a non-negative number" if zero_ok else "a positive " + ("number" if real else "integer")
                raise PolymodalError(f"serve option {f.name} must be {what}, got {v!r}")
            if not real:
                setattr(self, f.name, int(v))
        if self.backend not in BACKENDS:
            raise PolymodalError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.onnx is not None and self.backend != "onnx":
            raise PolymodalError("an ONNX graph (--onnx) is used by --backend onnx only; add --backend onnx")
        if self.max_file_bytes > self.max_body_bytes:
            self.max_file_bytes = self.max_body_bytes
