"""The pieces of distributed training and resume that need no second process: the sharded, resumable sampler,
the atomic checkpoint writer, and the options refused before any table is read."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler
from typer.testing import CliRunner

import polymodal as pm
from polymodal.cli.app import app
from polymodal.config.model import ConfigError, TrainConfig
from polymodal.data import dataset as dataset_module
from polymodal.data.dataset import ShardedBatchSampler
from polymodal.train.checkpoint import AtomicCheckpointIO
from polymodal.train.distributed import check_strategy


def test_single_process_order_is_randomsampler_order():
    """Epoch by epoch the same batches as the BatchSampler(RandomSampler(generator)) of earlier releases."""
    old = BatchSampler(RandomSampler(range(37), generator=torch.Generator().manual_seed(3)), 8, drop_last=False)
    new = ShardedBatchSampler(37, 8, shuffle=True, seed=3)
    for epoch in range(4):
        new.set_epoch(epoch)
        assert list(new) == list(old) and len(new) == len(old)


@pytest.mark.parametrize("n,batch,world", [(37, 8, 2), (40, 10, 3), (5, 4, 2)])
def test_ranks_split_every_global_batch_without_overlap(monkeypatch, n, batch, world):
    one = ShardedBatchSampler(n, batch, shuffle=True, seed=1)
    one.set_epoch(2)
    global_batches = list(one)
    shards = []
    for rank in range(world):
        monkeypatch.setattr(dataset_module, "rank_and_world", lambda r=rank: (r, world))
        s = ShardedBatchSampler(n, batch, shuffle=True, seed=1)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(s) == len(shards[-1])
    assert len({len(sh) for sh in shards}) == 1  # every rank takes the same number of steps
    for step, pieces in enumerate(zip(*shards)):
        assert len({len(p) for p in pieces}) == 1  # ... of the same size (DDP, the contrastive gather)
        rows = [r for p in pieces for r in p]
        assert len(rows) == len(set(rows))  # disjoint
        assert set(rows) <= set(global_batches[step])  # the single-process batch of that step
        assert len(global_batches[step]) - len(rows) < world  # at most world - 1 rows of it left out


def test_validation_blocks_cover_every_row_once(monkeypatch):
    seen = []
    for rank in range(3):
        monkeypatch.setattr(dataset_module, "rank_and_world", lambda r=rank: (r, 3))
        seen += [r for b in ShardedBatchSampler(50, 8, shuffle=False, even=False) for r in b]
    assert sorted(seen) == list(range(50))


def test_a_loaded_position_skips_the_batches_already_trained_on():
    full = ShardedBatchSampler(45, 8, shuffle=True, seed=5)
    full.set_epoch(3)
    batches = list(full)
    resumed = ShardedBatchSampler(45, 8, shuffle=True, seed=5)
    resumed.load_state_dict({"epoch": 3, "batches": 2, "n": 45})
    resumed.set_epoch(3)
    assert list(resumed) == batches[2:] and resumed.state_dict()["batches"] == len(batches)
    resumed.set_epoch(4)  # the skip was for epoch 3 only
    full.set_epoch(4)
    assert list(resumed) == list(full)
    with pytest.raises(ValueError, match="45 rows"):
        ShardedBatchSampler(44, 8, shuffle=True).load_state_dict({"epoch": 0, "batches": 1, "n": 45})


def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    with pytest.raises(Exception):
        io.save_checkpoint({"step": torch.tensor(2), "bad": lambda: None}, path)  # fails inside torch.save
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="FSDP runs where there is CUDA")
def test_fsdp_on_cpu_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="fsdp.*needs CUDA.*strategy='ddp'"):
        check_strategy(TrainConfig(strategy="fsdp"))
    with pytest.raises(ConfigError, match="needs CUDA"):  # before the (missing) table is read
        pm.fit(tmp_path / "missing.parquet", "y", strategy="fsdp")


def test_unknown_strategy_and_precision_name_the_valid_ones():
    with pytest.raises(ConfigError, match="Did you mean 'ddp'"):
        TrainConfig(strategy="dpp").validate()
    with pytest.raises(ConfigError, match="bf16-mixed"):
        TrainConfig(precision="bf16").validate()


def test_cli_workers_without_a_ray_address_exits_2(tmp_path):
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "t.parquet"), "--label", "y", "--out", str(tmp_path / "o"),
                                   "--workers", "2"])
    assert res.exit_code == 2 and "ray_address" in res.output, res.output


def test_resume_refuses_no_out(tmp_path):
    rows = np.arange(40)
    df = pd.DataFrame({"a": rows % 7 * 1.0, "b": rows % 3 * 1.0, "y": rows % 2})
    with pytest.raises(pm.PolymodalError, match="same out"):
        pm.fit(df, "y", epochs=1, resume=True, progress=False)


def test_resuming_a_run_that_early_stopped_trains_no_further_epoch(tmp_path, xor_model):
    """The last checkpoint of an early-stopped run (killed before its run folder was written) resumes to the same
    end: no extra epoch, the same best weights."""
    from polymodal.data.decode import decode
    from polymodal.nets.multimodal import MultimodalNet
    from polymodal.train.loop import train_net

    from tests.xor_data import xor_table

    cfg, train_cfg = xor_model.cfg, TrainConfig(epochs=30, patience=0, batch_size=32, lr=5e-3, seed=0)
    ds = decode(xor_model.schema, xor_table(), labels="require", progress=False).dataset
    tr, va = ds.subset(np.arange(180)), ds.subset(np.arange(180, len(ds)))
    first_net = MultimodalNet(xor_model.schema, cfg)
    first = train_net(first_net, tr, va, cfg, train_cfg, ckpt_dir=tmp_path, progress=False)
    assert first["epochs_run"] < 30  # it stopped early, and train_net leaves the last checkpoint
    assert (tmp_path / "last.ckpt").exists()
    again_net = MultimodalNet(xor_model.schema, cfg)
    again = train_net(again_net, tr, va, cfg, train_cfg, ckpt_dir=tmp_path, progress=False, resume=True)
    assert again["epochs_run"] == first["epochs_run"] and again["best_epoch"] == first["best_epoch"]
    a, b = first_net.state_dict(), again_net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
