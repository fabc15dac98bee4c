"""A disk cache of frozen-encoder features, so repeated epochs (and repeated runs) do not re-encode.

One file per (model, row): ``<root>/<model key>/<k[:2]>/<k>.npz`` holding that row's features ``x[N, F]`` and
``mask[N]``. The model key hashes the encoder class, its pooling and the backbone's content fingerprint (its
weight files); the row key hashes the row's decoded input tensors (pixels, token ids up to the length, wave up
to the length), so a changed file, a different preprocessing or a different model never hits a stale entry.

* **Location**: ``$POLYMODAL_CACHE_DIR/features`` if set, else ``$XDG_CACHE_HOME/polymodal/features``, else
  ``~/.cache/polymodal/features``; or the encoder option ``cache="/some/dir"``.
* **Off switch**: encoder option ``cache=False``, or ``POLYMODAL_FEATURE_CACHE=0`` in the environment.
* **Concurrency**: entries are written to a temporary file in the same folder and renamed into place
  (``os.replace`` is atomic), so concurrent readers see a whole entry or none, and concurrent writers of the same
  key write identical bytes. A corrupt or unreadable entry counts as a miss and is rewritten.
* An in-process dictionary keeps recently used entries (up to ``POLYMODAL_FEATURE_CACHE_MB``, default 512 MB),
  so later epochs do not even read the disk.
* Delete the folder to clear the cache; nothing else refers to it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENV_DIR = "POLYMODAL_CACHE_DIR"
ENV_SWITCH = "POLYMODAL_FEATURE_CACHE"
ENV_MEMORY = "POLYMODAL_FEATURE_CACHE_MB"
FORMAT_VERSION = "1"


def default_root() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser() / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "polymodal" / "features"


def cache_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off", "")


def open_cache(option: bool | str | os.PathLike | None, model_id: str) -> FeatureCache | None:
    """The cache an encoder option asks for: None/True -> default location (unless switched off by the
    environment), False -> none, a path -> that folder."""
    if option is False or (option in (None, True) and not cache_enabled()):
        return None
    root = default_root() if option in (None, True) else Path(os.fspath(option)).expanduser()
    return FeatureCache(root, model_id)


def row_keys(inputs: dict[str, Tensor]) -> list[str]:
    """One content hash per row of the input tensors; 'length' (if any) cuts every sequence to the real part."""
    names = sorted(inputs)
    length = inputs.get("length")
    arrays = {k: inputs[k].detach().cpu().contiguous().numpy() for k in names}
    keys = []
    for i in range(len(next(iter(arrays.values())))):
        h = hashlib.blake2b(digest_size=20)
        h.update(FORMAT_VERSION.encode())
        n = int(length[i]) if length is not None else None
        for k in names:
            a = arrays[k][i]
            if n is not None and k != "length" and a.ndim >= 1:
                a = a[:n]
            h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        keys.append(h.hexdigest())
    return keys


class FeatureCache:
    """Per-row features of one model on disk (see the module docstring). ``hits`` / ``misses`` count rows."""

    def __init__(self, root: str | os.PathLike, model_id: str) -> None:
        self.model_key = hashlib.sha256(model_id.encode()).hexdigest()[:24]
        self.dir = Path(root) / self.model_key
        self.hits = 0
        self.misses = 0
        self._memory: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._memory_bytes = 0
        self._memory_cap = int(float(os.environ.get(ENV_MEMORY, "512")) * 2**20)

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                entry = (z["x"], z["mask"])
        except (OSError, ValueError, KeyError, EOFError):
            return None  # absent, or corrupt: recomputed and rewritten
        self._remember(key, entry)
        return entry

    def put(self, key: str, x: np.ndarray, mask: np.ndarray) -> None:
        self._remember(key, (x, mask))
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, x=x, mask=mask)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a read-only or full disk only costs speed

    def _remember(self, key: str, entry: tuple[np.ndarray, np.ndarray]) -> None:
        if key in self._memory:
            return
        self._memory[key] = entry
        self._memory_bytes += entry[0].nbytes + entry[1].nbytes
        while self._memory_bytes > self._memory_cap and self._memory:
            _, (x, m) = self._memory.popitem(last=False)
            self._memory_bytes -= x.nbytes + m.nbytes

    def lookup(
        self, inputs: dict[str, Tensor], compute: Callable[[dict[str, Tensor]], tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor]:
        """Features of every row: cached rows are read, the others computed (in one batch) and stored."""
        keys = row_keys(inputs)
        found = [self.get(k) for k in keys]
        todo = [i for i, e in enumerate(found) if e is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            idx = torch.as_tensor(todo, dtype=torch.long, device=next(iter(inputs.values())).device)
            x, mask = compute({k: v[idx] for k, v in inputs.items()})
            xs, ms = x.detach().float().cpu().numpy(), mask.detach().cpu().numpy()
            for j, i in enumerate(todo):
                entry = (np.ascontiguousarray(xs[j]), np.ascontiguousarray(ms[j]))
                self.put(keys[i], *entry)
                found[i] = entry
        n = max(e[0].shape[0] for e in found)
        f = found[0][0].shape[1]
        x = np.zeros((len(found), n, f), dtype=np.float32)
        mask = np.zeros((len(found), n), dtype=bool)
        for i, (xi, mi) in enumerate(found):
            x[i, : len(xi)], mask[i, : len(mi)] = xi, mi
        return torch.from_numpy(x), torch.from_numpy(mask)
