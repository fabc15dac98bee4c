"""The streaming data path (data/shards.py, data/stream.py): every row exactly once over ranks x workers, order fixed
by (seed, epoch), errors naming the global row, column, file and shard, decode counts merged across workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.data.kinds.base import DecodeReport
from polymodal.data.schema import infer_schema
from polymodal.data.shards import FrameSource, ParquetSource
from polymodal.data.stream import StreamDataset, report_from_dict
from polymodal.data.table import Table, fit_schema
from polymodal.errors import DecodeError

from tests.xor_data import GROUPS, xor_table

N = 1003  # not a multiple of the batch size, the world size or the worker count


def write_shards(frame: pd.DataFrame, folder, n_shards: int = 4, row_group_size: int = 50):
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), n_shards)):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False, row_group_size=row_group_size)
    return folder


@pytest.fixture(scope="module")
def xor_stream(tmp_path_factory):
    frame = xor_table(N, seed=3)
    source = ParquetSource(write_shards(frame, tmp_path_factory.mktemp("xor") / "shards"))
    schema = fit_schema(infer_schema(frame, "y", groups=GROUPS), frame, progress=False)
    schema.classes = sorted(frame["y"].unique())
    target = frame["y"].map({c: i for i, c in enumerate(schema.classes)}).to_numpy()
    return frame, StreamDataset(source, schema, np.arange(N), target)


def epoch_rows(ds, *, world: int, workers: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
               batch_size: int = 64):
    """[rank][batch] -> the global rows each rank's loader yields in one epoch."""
    out = []
    for rank in range(world):
        loader = ds.loader(batch_size, shuffle, seed, rank=rank, world=world, num_workers=workers)
        loader.set_epoch(epoch)
        assert len(loader) == len(loader.stream.plan())
        out.append([b.index.numpy() for b in loader])
    return out


def test_shards_read_lazily_by_global_row(xor_stream):
    frame, ds = xor_stream
    src = ds.source
    assert src.n_rows == N and len(src.files) == 4 and src.columns == list(frame.columns)
    assert len(src.unit_starts) - 1 == sum(-(-len(p) // 50) for p in np.array_split(np.arange(N), 4))
    rows = np.array([1002, 0, 251, 500, 17])  # across shards and row groups, in any order
    got = src.read(rows, ["a1", "y"])
    assert list(got.index) == list(rows)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), frame.iloc[rows][["a1", "y"]].reset_index(drop=True))
    assert "part-002.parquet" in src.where(600)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_row_once_over_two_ranks_and_two_workers(xor_stream, shuffle):
    _, ds = xor_stream
    per_rank = epoch_rows(ds, world=2, workers=2, shuffle=shuffle)
    seen = np.concatenate([np.concatenate(r) for r in per_rank])
    assert len(seen) == N and np.array_equal(np.sort(seen), np.arange(N))  # none dropped, none repeated
    assert len(per_rank[0]) == len(per_rank[1])  # the same number of steps on every rank (DDP needs it)
    sizes = np.array([[len(b) for b in r] for r in per_rank])
    assert np.abs(sizes[0] - sizes[1]).max() <= 1  # each global batch split into (nearly) equal pieces
    # a view (the training rows of a hold-out split) is covered exactly once as well
    view = ds.subset(np.arange(0, N, 3))
    seen = np.concatenate([np.concatenate(r) for r in epoch_rows(view, world=2, workers=2)])
    assert np.array_equal(np.sort(seen), np.arange(0, N, 3))


def test_order_fixed_by_seed_and_epoch_whatever_the_workers(xor_stream):
    _, ds = xor_stream
    a = epoch_rows(ds, world=1, workers=2, seed=5, epoch=1)[0]
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_rows(ds, world=1, workers=0, seed=5, epoch=1)[0]))
    b = epoch_rows(ds, world=1, workers=2, seed=5, epoch=2)[0]
    c = epoch_rows(ds, world=1, workers=2, seed=6, epoch=1)[0]
    assert not np.array_equal(np.concatenate(a), np.concatenate(b))  # another epoch, another order
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))  # another seed, another order
    # passes count epochs on by themselves: the second pass of a loader is epoch 1
    loader = ds.loader(64, True, 5, num_workers=0)
    first, second = ([x.index.numpy() for x in loader] for _ in range(2))
    assert np.array_equal(np.concatenate(first), np.concatenate(epoch_rows(ds, world=1, workers=0, seed=5)[0]))
    assert all(np.array_equal(x, y) for x, y in zip(second, a))


def test_batches_decode_like_the_in_memory_path(xor_stream):
    from polymodal.data.decode import decode

    frame, ds = xor_stream
    batch = next(iter(ds.loader(16, False, num_workers=0)))
    mem = decode(ds.schema, frame, progress=False).dataset[list(range(16))]
    for m in mem.inputs:
        for k in mem.inputs[m]:
            torch.testing.assert_close(batch.inputs[m][k], mem.inputs[m][k], rtol=0, atol=0)
    assert torch.equal(batch.target, mem.target) and torch.equal(batch.index, torch.arange(16))


def test_resume_position_skips_the_batches_done(xor_stream):
    _, ds = xor_stream
    full = epoch_rows(ds, world=1, workers=2, epoch=3)[0]
    loader = ds.loader(64, True, 0, num_workers=2)
    loader.load_state_dict({"epoch": 3, "done": 5})
    rest = [b.index.numpy() for b in loader]
    assert all(np.array_equal(x, y) for x, y in zip(rest, full[5:])) and len(rest) == len(full) - 5
    assert loader.state_dict() == {"epoch": 3, "done": len(full)}


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    """Image paths in 3 shards; rows 5, 130 and 260 (one per shard) name files that do not exist."""
    root = tmp_path_factory.mktemp("img")
    for i in range(4):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(root / f"{i}.png")
    frame = pd.DataFrame({"img": [f"{i % 4}.png" for i in range(300)], "y": np.arange(300) % 2})
    bad = [5, 130, 260]
    frame.loc[bad, "img"] = [f"gone_{r}.png" for r in bad]
    for k, part in enumerate(np.array_split(np.arange(300), 3)):
        frame.iloc[part].to_parquet(root / f"s{k}.parquet", index=False, row_group_size=40)
    fit_rows = frame.drop(index=bad)
    schema = fit_schema(infer_schema(fit_rows, "y", base_dir=root), fit_rows, progress=False)
    schema.classes = [0, 1]
    return ParquetSource(root), schema, frame["y"].to_numpy(), bad


def test_decode_error_names_global_row_column_file_and_shard(image_shards):
    source, schema, target, bad = image_shards
    ds = StreamDataset(source, schema, np.arange(300), target, on_error="raise")
    with pytest.raises(DecodeError) as e:
        for _ in ds.loader(32, False, num_workers=2):
            pass
    err = e.value  # the worker's error, re-raised in this process as the error it was
    assert err.row == bad[0] and err.column == "img" and err.file == "gone_5.png"
    assert "row 5, column 'img', file 'gone_5.png'" in str(err) and "s0.parquet" in str(err)


def test_missing_values_counted_once_across_workers_and_epochs(image_shards):
    source, schema, target, bad = image_shards
    report = DecodeReport()
    ds = StreamDataset(source, schema, np.arange(300), target, on_error="missing", report=report)
    loader = ds.loader(32, True, 0, num_workers=2)
    for _ in range(2):  # two epochs: each bad cell is counted once
        absent = [int(r) for b in loader for r in b.index[~b.present["img"]]]
        assert sorted(absent) == bad
    assert report.errors == {"img": 3} and report.causes == {"absent file": 3}
    assert sorted(x["row"] for x in report.examples) == bad
    # the mergeable form the ranks of a distributed run exchange (stream.gather_report)
    merged = DecodeReport()
    for _ in range(2):
        merged.merge(report_from_dict(report.to_dict()))
    assert merged.errors == {"img": 6} and merged.n_errors == 6


def test_a_frame_streams_too_and_names_rows_by_its_index():
    frame = xor_table(100, seed=1)
    frame.index = frame.index + 1000
    schema = fit_schema(infer_schema(frame, "y", groups=GROUPS), frame, progress=False)
    ds = StreamDataset(FrameSource(Table(frame, ".")), schema, np.arange(100), None)
    seen = np.concatenate([np.concatenate(r) for r in epoch_rows(ds, world=2, workers=2, batch_size=16)])
    assert np.array_equal(np.sort(seen), np.arange(100))


def _gather_worker(rank: int, world: int, init: str, out: str) -> None:
    import json

    import torch.distributed as dist

    from polymodal.data.stream import gather_report, rank_world

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        report = DecodeReport()
        for r in range(rank + 1):  # rank 0 met 1 bad cell, rank 1 met 2
            report.add_error(10 * rank + r, "img", "absent", f"f{rank}{r}.png", cause="absent file")
        merged = gather_report(report)
        if rank == 0:
            with open(out, "w") as f:
                json.dump({"merged": merged.to_dict(), "rank_world": rank_world()}, f)
    finally:
        dist.destroy_process_group()


def test_gather_report_merges_the_ranks_counts(tmp_path):
    """``gather_report`` over a real 2-process gloo group: the counts and examples of both ranks."""
    import json

    import torch.multiprocessing as mp

    out = tmp_path / "merged.json"
    mp.spawn(_gather_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())
    assert got["rank_world"] == [0, 2]
    assert got["merged"]["errors"] == {"img": 3} and got["merged"]["causes"] == {"absent file": 3}
    assert sorted(x["row"] for x in got["merged"]["examples"]) == [0, 10, 11]
