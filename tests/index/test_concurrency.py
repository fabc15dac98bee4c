"""Writers are serialised (real processes running the real CLI), duplicates are repaired, decode problems and
mixed metadata are reported, and a build that indexes nothing says why."""

import json
import multiprocessing as mp
import os
import sys

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from polymodal.errors import DecodeError
from polymodal.index import Index
from polymodal.index.store import IndexError_, IndexLockedError, VectorStore

LOCK_MESSAGE = "another `index build` holds the index at"


def _series_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A time series stored as JSON-list strings (how a CSV holds lists) plus two numeric columns."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "series": [json.dumps(rng.normal(size=8).round(3).tolist()) for _ in range(n)],
        "x0": rng.normal(size=n), "x1": rng.normal(size=n), "cls": rng.integers(0, 2, n),
        "uid": [f"u{i}" for i in range(n)],
    })


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsrun")
    _series_table(40).drop(columns="uid").to_csv(root / "train.csv", index=False)
    out = root / "emb"
    pm.align(root / "train.csv", groups={"tab": ["x0", "x1"]}, label="cls", epochs=1, dim=8, embed_dim=8,
             progress=False, out=out)
    return out


def _cli(args, log):
    """Child process: the real `polymodal` entry point, stderr to ``log``; returns the exit status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    from polymodal.cli.app import main

    sys.argv = ["polymodal", *args]
    try:
        main()
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
    os._exit(0)


@pytest.fixture(scope="module")
def procs():
    """Real processes, forked from a server that has already imported the CLI (a cold start each costs ~10 s)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["polymodal.cli.app", "polymodal.index.build", "polymodal.recipes.loading",
                                "polymodal.evaluate.scoring", "pyarrow", "pandas"])
    return ctx


def test_csv_json_list_series_are_values_not_paths(run, tmp_path):
    _series_table(30).to_csv(tmp_path / "t.csv", index=False)
    b = Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid").last_build
    assert (b["inserted"], b["skipped"], b["missing_files"], b["total"]) == (30, 0, 0, 30)


def test_concurrent_cli_builds_leave_one_row_per_id(run, tmp_path, procs):
    outcomes = []
    for trial in range(3):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        data = _series_table(600, seed=trial)
        data.iloc[:50].to_csv(d / "first.csv", index=False)
        data.to_csv(d / "all.csv", index=False)
        Index.build(run, d / "first.csv", d / "idx", id_column="uid")  # an existing index
        args = ["index", "build", str(run), str(d / "all.csv"), "--index", str(d / "idx"), "--id", "uid"]
        ps = [procs.Process(target=_cli, args=(args, str(d / f"log{k}"))) for k in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(120)
        codes = [p.exitcode for p in ps]
        logs = [(d / f"log{k}").read_text() for k in range(2)]
        for code, log in zip(codes, logs):
            assert code == 0 or (code == 2 and LOCK_MESSAGE in log and "pid " in log), (code, log)
        assert 0 in codes, logs
        store = VectorStore(d / "idx")
        assert len(store) == 600 and store.duplicates() == 0
        outcomes.append(tuple(codes))
    print("exit codes per trial:", outcomes)


def test_a_held_lock_refuses_a_second_writer(run, tmp_path):
    _series_table(10).to_csv(tmp_path / "t.csv", index=False)
    Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid")
    store = VectorStore(tmp_path / "idx")
    with store.lock():
        with pytest.raises(IndexLockedError, match=rf"\(pid {os.getpid()}\); wait for it or remove the lock"):
            Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid")
        with pytest.raises(IndexLockedError):
            VectorStore(tmp_path / "idx").delete(["u0"])
    b = Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid", lock_wait=1).last_build
    assert b["unchanged"] == 10  # released: the next build runs


def test_rebuild_repairs_duplicates_keeping_the_newest(run, tmp_path):
    _series_table(30).to_csv(tmp_path / "t.csv", index=False)
    Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid")
    store = VectorStore(tmp_path / "idx")
    again = store.table.search().where("id IN ('u1', 'u2', 'u3')").limit(None).to_arrow()
    stale = again.set_column(again.schema.get_field_index("hash"), "hash", [["stale"] * 3])
    store.table.add(stale)  # what an unserialised second writer leaves: the same ids twice
    store.table.add(stale)
    assert len(store) == 36 and store.duplicates() == 6
    assert store.hashes()["u1"] == "stale"  # the newest row is the one that counts
    b = Index.build(run, tmp_path / "t.csv", tmp_path / "idx", id_column="uid").last_build
    assert b["duplicates_removed"] == 6 and b["updated"] == 3 and b["total"] == 30
    assert VectorStore(tmp_path / "idx").duplicates() == 0


def test_on_error_missing_is_reported(run, tmp_path):
    data = _series_table(20)
    data.loc[0, "series"] = "[1.0, oops"  # unparseable JSON list
    data.loc[1, "series"] = "s" * 5000 + ".npy"  # a path too long for the OS
    data = data.astype({"x0": object})
    data.loc[2, "x0"] = "not a number"
    data.loc[3, "series"] = "[1.0, oops"  # row 3: nothing decodes
    data.loc[3, "x0"] = data.loc[3, "x1"] = None
    with pytest.raises(DecodeError):
        Index.build(run, data, tmp_path / "idx", id_column="uid")
    b = Index.build(run, data, tmp_path / "idx", id_column="uid", on_error="missing").last_build
    assert b["decode"]["errors"].get("series") == 3, b["decode"]
    assert "treated as missing" in b["decode_summary"] and "series=3" in b["decode_summary"]
    assert b["skipped"] == 1 and b["skipped_reasons"] == {"nothing decodable": 1}
    assert b["inserted"] == 19 and b["total"] == 19


def test_nothing_indexed_raises_with_the_reason(run, tmp_path):
    data = _series_table(5).assign(series="[oops", x0=np.nan, x1=np.nan)
    with pytest.raises(IndexError_, match=r"0 of 5 rows indexed.*treated as missing"):
        Index.build(run, data, tmp_path / "idx", id_column="uid", on_error="missing")
    data = _series_table(5).assign(series=[f"gone/{i}.npy" for i in range(5)])
    with pytest.raises(IndexError_, match=r"none of the 5 rows can be indexed.*does not exist"):
        Index.build(run, data, tmp_path / "idx2", id_column="uid")


def test_mixed_type_metadata_is_stored_as_text(run, tmp_path):
    data = _series_table(12)
    data["note"] = pd.Series([1, "x", 2.5, True, None, "y"] * 2, dtype=object)
    data["flag"] = pd.Series([True, 0] * 6, dtype=object)
    idx = Index.build(run, data, tmp_path / "idx", id_column="uid", on_error="missing")
    assert sorted(idx.last_build["metadata_as_text"]) == ["flag", "note"]
    res = idx.search(vector=np.ones(8, np.float32), target="fused", top_k=12, where="note = 'x'")
    assert list(res.note) == ["x", "x"]
    ints = _series_table(12).assign(n=range(12))
    Index.build(run, ints, tmp_path / "idx2", id_column="uid")
    text = _series_table(14, seed=3).assign(n=["a"] * 14, uid=[f"v{i}" for i in range(14)])
    with pytest.raises(IndexError_, match="column 'n'"):
        Index.build(run, text, tmp_path / "idx2", id_column="uid")
