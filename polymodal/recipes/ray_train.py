"""Ray Train: the same training function (``train/loop.py: train_net``) run by Ray's ``TorchTrainer`` on workers.

``pm.fit(..., ray_address="local" | "auto" | "ray://host:10001", workers=N)`` / ``polymodal fit --ray-address
--workers``. The driver reads the table, fits the schema and decodes as always; the net, the datasets and the
configs go to the object store once (``ray.put``) and every worker runs Lightning inside Ray's process group
(``RayDDPStrategy`` + ``RayLightningEnvironment`` + ``prepare_trainer`` from ``ray.train.lightning``). Each worker
trains on its shard of every global batch (``data/dataset.py: ShardedBatchSampler`` reads the rank and world size
from the process group Ray set up), so ``batch_size`` stays the global batch, as with ``devices=N``. Rank 0
reports the trained weights (the best validation epoch's, as in one process) and the history as a Ray checkpoint;
the driver loads them into its net, and the recipe writes the run folder on the driver as for any run.

``ray_address="local"`` starts a private local cluster for this run (dashboard off, usage statistics off: nothing
reaches the network) and shuts it down afterwards; ``"auto"`` or an address joins an existing cluster. When
``ray.init`` already ran in this process, that cluster is used as it is. Crash-safe resume is Lightning's
(``--resume``); a Ray run does not resume from a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from polymodal.config.model import ConfigError, ModelConfig, TrainConfig
from polymodal.errors import PolymodalError


def ray_options(address: str | None, workers: int | None, resume: bool = False) -> dict[str, Any] | None:
    """The checked ``ray_address`` / ``workers`` options (None: no Ray), before any table is read."""
    if address is None:
        if workers is not None:
            raise ConfigError("workers= is the number of Ray Train workers: give ray_address='local' (a private local "
                              "cluster) or 'auto' (the running one) too; for processes on this machine use devices=")
        return None
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"ray_address must be 'local', 'auto' or a cluster address, got {address!r}")
    if workers is None:
        workers = 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    if resume:
        raise ConfigError("resume continues a Lightning run from <out>/checkpoints/last.ckpt; a Ray Train run does "
                          "not resume: start it again (or train without ray_address and resume)")
    try:
        import ray.train.torch  # noqa: F401
    except ImportError:
        raise PolymodalError("Ray Train is not installed: pip install 'polymodal[ray]'") from None
    return {"address": address.strip(), "workers": workers}


def train_on_ray(net, train_ds, val_ds, model_cfg: ModelConfig, train_cfg: TrainConfig, *, address: str,
                 workers: int, progress: bool = True) -> dict[str, Any]:
    """Train ``net`` in place on ``workers`` Ray Train workers; returns the training history (as ``train_net``)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from safetensors.torch import load_file

    started = _connect(address, workers)
    storage = tempfile.mkdtemp(prefix="polymodal-ray-")
    try:
        payload = ray.put((net, train_ds, val_ds, model_cfg, train_cfg, progress))
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"payload": payload},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=torch.cuda.is_available(),
                                         resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="polymodal", storage_path=storage),
        )
        try:
            result = trainer.fit()
        except Exception as e:  # noqa: BLE001  (Ray wraps the worker's error; say it in one line)
            raise PolymodalError(f"Ray Train failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}")\
                from e
        if result.checkpoint is None:
            raise PolymodalError("Ray Train finished without the trained weights (rank 0 reported no checkpoint)")
        with result.checkpoint.as_directory() as d:
            net.load_state_dict(load_file(str(Path(d) / "weights.safetensors")))
            history = json.loads((Path(d) / "history.json").read_text())
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
    net.eval()
    history["ray"] = {"workers": workers, "address": address}
    return history


def _connect(address: str, workers: int) -> bool:
    """Join or start the cluster; True when this call started it (and so shuts it down after the run)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    if address == "local":
        ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: Lightning DDP in Ray's process group, then rank 0 reports weights + history."""
    import ray
    import ray.train
    from ray.train import Checkpoint
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer
    from safetensors.torch import save_file

    from polymodal.train.loop import train_net

    # torch threads: Ray's choice (OMP_NUM_THREADS=1 for a worker holding 1 CPU), so workers do not oversubscribe
    net, train_ds, val_ds, model_cfg, train_cfg, progress = ray.get(config["payload"])
    rank = ray.train.get_context().get_world_rank()
    launch = {"accelerator": "auto", "devices": "auto", "precision": train_cfg.precision,
              "strategy": RayDDPStrategy(find_unused_parameters=True), "plugins": [RayLightningEnvironment()],
              "prepare": prepare_trainer}
    history = train_net(net, train_ds, val_ds, model_cfg, train_cfg, progress=progress and rank == 0, launch=launch)
    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if rank == 0:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(Path(d) / "weights.safetensors"))
            (Path(d) / "history.json").write_text(json.dumps(history, default=float))
            checkpoint = Checkpoint.from_directory(d)
        ray.train.report({"epochs_run": history["epochs_run"]}, checkpoint=checkpoint)
