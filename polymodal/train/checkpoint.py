"""Crash-safe training checkpoints: the whole training state, written atomically, and the checks that guard a resume.

``CrashCheckpoint`` saves ``<out>/checkpoints/last.ckpt`` every ``checkpoint_every_n_steps`` optimiser steps and
at each epoch end through Lightning's own ``trainer.save_checkpoint``, so the file holds what Lightning restores
with ``Trainer.fit(ckpt_path=...)``: the weights, optimiser and scheduler states, the loop counters, the callbacks'
states (early stopping, ``BestWeights``, the time limit) and the train loader's position (epoch + batches handed
out, ``data/dataset.py: ShardedBatchSampler``; Lightning 2.6 saves and restores the position of a loader that has
``state_dict`` / ``load_state_dict``, and with a sized loader it does not prefetch, so the position is exactly the
batches trained on). ``LitMultimodal`` adds each rank's RNG states (torch, numpy, python: modality dropout and
dropout draw from them) and this module adds a fingerprint of the config and the table.

``AtomicCheckpointIO`` writes a temporary file in the same folder, fsyncs it, ``os.replace``-s it over the old
checkpoint and fsyncs the folder: a process killed at any instant leaves the previous complete checkpoint or the
new one, never a torn file. Files are loaded with ``weights_only=True`` (tensors and plain containers; nothing is
unpickled as code).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.errors import PolymodalError

LAST = "last.ckpt"
# options that may change between a run and its resume: they do not change what is computed
RESUMABLE_CHANGES = ("max_minutes", "checkpoint_every_n_steps")


class ResumeError(PolymodalError):
    """A ``--resume`` that cannot continue: no checkpoint, or one written for another config or table."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``<name>.tmp-<pid>``, fsync, ``os.replace`` over ``<name>``, fsync the folder."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CrashCheckpoint(Checkpoint):
    """Save the training state to ``folder/last.ckpt`` every ``every_n_steps`` steps (0: never mid-epoch) and at
    each epoch end. A ``Checkpoint`` subclass, so Lightning runs it after the other callbacks (their states in the
    file are the ones after this step / epoch)."""

    def __init__(self, folder: Path, every_n_steps: int) -> None:
        self.path = Path(folder) / LAST
        self.every_n_steps = int(every_n_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Not after an epoch's last batch: its validation has not run yet, and Lightning 2.6, resuming from a
        # checkpoint saved there, takes the validation as done and skips it (training_epoch_loop.advance). The
        # epoch-end checkpoint, after the validation, follows; a kill before it resumes from the step before.
        last = batch_idx + 1 >= trainer.num_training_batches
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0 and not last:
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)


def discard_checkpoint(folder: Path) -> None:
    """Remove ``folder/last.ckpt`` (and temporary files a killed save left) once the run folder is written."""
    folder = Path(folder)
    if folder.is_dir():
        for f in folder.glob(LAST + "*"):
            f.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ fingerprints
def fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, train_ds: Any, val_ds: Any) -> dict[str, str]:
    """What a checkpoint was trained on: the config (``config``, its JSON) and a hash of the table (``table``)."""
    from polymodal.config.io import to_dict

    train = {k: v for k, v in to_dict(train_cfg).items() if k not in RESUMABLE_CHANGES}
    config = json.dumps({"model": to_dict(model_cfg), "train": train}, sort_keys=True, default=str)
    h = hashlib.blake2b(digest_size=16)
    for ds in (train_ds, val_ds):
        h.update(_dataset_digest(ds).encode())
    return {"config": config, "table": h.hexdigest()}


def _dataset_digest(ds: Any) -> str:
    """A hash of a dataset's rows and decoded values (a dataset type may bring its own ``fingerprint()``)."""
    if ds is None:
        return "none"
    own = getattr(ds, "fingerprint", None)
    if callable(own):
        return str(own())
    if not hasattr(ds, "rows"):  # a dataset type without values in memory and without its own fingerprint
        return f"{type(ds).__name__}:{len(ds)}"
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(ds.rows).tobytes())
    tensors = [ds.present[m] for m in sorted(ds.present)]
    tensors += [ds.arrays[m][k] for m in sorted(ds.arrays) for k in sorted(ds.arrays[m])]
    if ds.target is not None:
        tensors.append(ds.target)
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(memoryview(np.ascontiguousarray(t.numpy()).reshape(-1).view(np.uint8)))
    return h.hexdigest()


def check_resume(path: Path, expected: dict[str, str]) -> None:
    """Refuse a resume from ``path`` when it is missing or was written for another config or table."""
    if not path.is_file():
        raise ResumeError(f"nothing to resume: {str(path)!r} does not exist (no checkpoint was written, or the run "
                          "finished and removed it); start the run again without --resume / resume=True")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True).get("polymodal", {})
    except Exception as e:  # noqa: BLE001  (a truncated or foreign file)
        raise ResumeError(f"cannot read the checkpoint {str(path)!r} ({type(e).__name__}: {e}); start the run "
                          "again without --resume".splitlines()[0]) from None
    old = saved.get("fingerprint") or {}
    if old.get("config") != expected["config"]:
        raise ResumeError(f"cannot resume from {str(path)!r}: it was trained with another configuration "
                          f"({_config_diff(old.get('config'), expected['config'])}); resume with the same options "
                          "(only max_minutes / checkpoint_every_n_steps may change), or start a new run")
    if old.get("table") != expected["table"]:
        raise ResumeError(f"cannot resume from {str(path)!r}: the training (or validation) table differs from the "
                          "one the checkpoint was trained on (other rows or values); resume with the same table, or "
                          "start a new run")


def _config_diff(old: str | None, new: str) -> str:
    if old is None:
        return "the checkpoint records none"
    a, b = _flat(json.loads(old)), _flat(json.loads(new))
    diffs = [f"{k}: {a.get(k)!r} then, {b.get(k)!r} now" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# ------------------------------------------------------------------------------------------------ RNG states
def rng_state() -> dict[str, Any]:
    """This process's torch, numpy and python RNG states, as tensors and plain containers (``weights_only``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(gauss)),
            "python": (version, list(py_state), py_gauss)}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
