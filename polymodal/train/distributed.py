"""How a run spreads over processes: the Lightning ``Trainer`` arguments for ``devices`` / ``num_nodes`` /
``strategy`` / ``precision``, and which process may write.

One process (``devices=1, num_nodes=1``, the default) trains as before. More than one trains data-parallel with
Lightning's DDP (gloo on CPU, NCCL on GPU). How the processes start depends on the caller:

* ``polymodal fit ... --devices 2`` or a script calling ``pm.fit(..., devices=2)``: Lightning's subprocess
  launcher re-runs the same command line once per extra process (each rank reads and decodes the table itself,
  then trains on its shard); only rank 0 prints and writes the run folder.
* an interactive session (Jupyter, ``python -i``), where there is no script to re-run: ``ddp`` becomes Lightning's
  ``ddp_notebook`` (forked processes that share the decoded table).
* torchrun / SLURM: the launcher has started every process already (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` /
  ``SLURM_PROCID``, ``SLURM_NTASKS``, ...); Lightning reads them and starts nothing (docs/scale.md).

``fsdp`` shards parameters across GPUs (large pretrained towers); there is no CPU implementation to fall back on,
so asking for it without CUDA is refused before any data is read.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from polymodal.config.model import ConfigError, TrainConfig

_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # the ones Lightning reads, in order


def launched_rank() -> int:
    """The global rank this process was started with (0 outside a distributed launch), from the environment
    variables Lightning's launchers, torchrun and SLURM set, so it is known before any process group exists."""
    for var in _RANK_VARS:
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def is_rank_zero() -> bool:
    """Whether this process is the one that prints and writes (rank 0, or not a distributed run)."""
    return launched_rank() == 0


def interactive() -> bool:
    """A notebook or interactive interpreter: no script that a subprocess launcher could re-run."""
    import __main__

    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or not hasattr(__main__, "__file__")


def world_size(cfg: TrainConfig) -> int:
    return cfg.devices * cfg.num_nodes


def trainer_args(cfg: TrainConfig) -> dict[str, Any]:
    """``accelerator`` / ``devices`` / ``num_nodes`` / ``strategy`` / ``precision`` for ``lightning.Trainer``.

    DDP finds unused parameters (modality dropout and the unimodal auxiliary heads leave some parameters without
    a gradient in some steps, which plain DDP reports as an error). On GPUs BatchNorm layers become SyncBatchNorm
    (statistics over the global batch); torch has no CPU SyncBatchNorm, so on CPU each process normalises over
    its own share of the batch: the one reason a DDP run on CPU differs from one process (docs/scale.md).
    """
    check_strategy(cfg)
    args: dict[str, Any] = {"accelerator": "auto", "devices": cfg.devices, "num_nodes": cfg.num_nodes,
                            "precision": cfg.precision}
    if cfg.strategy == "fsdp":
        args["strategy"] = "fsdp"
    elif world_size(cfg) > 1 or cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        fork = world_size(cfg) > 1 and interactive() and not _launched_externally()  # Lightning's ddp_notebook
        args["strategy"] = DDPStrategy(find_unused_parameters=True, start_method="fork" if fork else "popen")
        args["sync_batchnorm"] = torch.cuda.is_available() and world_size(cfg) > 1
    else:
        args["strategy"] = "auto"
    return args


def check_strategy(cfg: TrainConfig) -> None:
    """Refuse, before any data is read, a strategy or precision this machine cannot run."""
    cuda = torch.cuda.is_available()
    if cfg.strategy == "fsdp" and not cuda:
        raise ConfigError("strategy='fsdp' needs CUDA GPUs (it shards parameters across GPUs) and this machine has "
                          "none: use strategy='ddp' (processes on CPU, gloo) or train on a GPU machine")
    if cfg.precision == "16-mixed" and not cuda:
        raise ConfigError("precision='16-mixed' needs a CUDA GPU; on CPU use precision='bf16-mixed' or '32-true'")


def _launched_externally() -> bool:
    """torchrun / SLURM started the processes (Lightning then launches none, notebook or not)."""
    return "WORLD_SIZE" in os.environ or "SLURM_NTASKS" in os.environ
