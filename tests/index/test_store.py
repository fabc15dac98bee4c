import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from polymodal.index.store import IndexError_, VectorStore


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_top(v, q, k):
    return np.argsort(-(v @ q))[:k]


def test_upsert_search_where_and_delete(tmp_path):
    s = VectorStore(tmp_path / "idx")
    v = _unit(200, 16)
    ids = [f"r{i}" for i in range(200)]
    meta = pd.DataFrame({"split": ["test" if i % 4 == 0 else "train" for i in range(200)], "k": np.arange(200)})
    present = {"x": np.arange(200) % 10 != 3}
    r = s.upsert(ids, ["h"] * 200, {"x": v}, present, meta)
    assert r == {"inserted": 200, "updated": 0} and len(s) == 200
    res = s.search(v[0], "x", top_k=5)
    assert res.id.iloc[0] == "r0" and res.score.iloc[0] == pytest.approx(1.0, abs=1e-5)
    scores = v @ v[0]
    scores[~present["x"]] = -np.inf
    want = [f"r{i}" for i in np.argsort(-scores)[:5]]
    assert res.id.tolist() == want
    assert not set(res.id) & {f"r{i}" for i in range(200) if i % 10 == 3}  # absent vectors are never returned
    res = s.search(v[8], "x", top_k=10, where="split = 'test'")
    assert (res.split == "test").all() and res.id.iloc[0] == "r8"
    assert s.search(v[0], "x", top_k=3, where="k < 2").id.tolist() == ["r0", "r1"][: len(s.search(v[0], "x", top_k=3, where="k < 2"))]
    # update: same id, new vector and hash -> replaced, not duplicated
    r = s.upsert(["r0"], ["h2"], {"x": v[1:2]}, None, meta.iloc[:1])
    assert r["updated"] == 1 and len(s) == 200 and s.hashes()["r0"] == "h2"
    assert s.delete(["r0", "r1", "nope"]) == 2 and len(s) == 198
    with pytest.raises(IndexError_, match="where"):
        s.search(v[0], "x", where="no_such_column = 1")
    with pytest.raises(IndexError_, match="holds"):
        s.search(v[0], "y")
    with pytest.raises(IndexError_, match="columns"):
        s.upsert(["z"], ["h"], {"x": v[:1]}, None, pd.DataFrame({"other": [1]}))


def test_ann_recall_against_exact(tmp_path):
    v = _unit(4000, 32, seed=1)
    s = VectorStore(tmp_path / "idx", ann_threshold=1000)
    s.upsert([str(i) for i in range(len(v))], ["h"] * len(v), {"x": v})
    assert s.create_ann() == ["x"] and s.has_ann("x")
    rec = []
    for q in _unit(20, 32, seed=2):
        exact = set(s.search(q, "x", top_k=10, exact=True).id)
        assert exact == {str(i) for i in _exact_top(v, q, 10)}
        ann = set(s.search(q, "x", top_k=10, exact=False).id)
        rec.append(len(exact & ann) / 10)
    assert np.mean(rec) >= 0.95, rec


WRITER = """
import sys, time, numpy as np
from polymodal.index.store import VectorStore
s = VectorStore(sys.argv[1])
for c in range(1000):
    v = np.random.default_rng(c).normal(size=(500, 8)).astype(np.float32)
    s.upsert([f"{c}-{i}" for i in range(500)], ["h"] * 500, {"x": v})
    print(c, flush=True)
"""


def test_killed_writer_leaves_a_readable_index(tmp_path):
    path = tmp_path / "idx"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    for _ in range(3):  # wait for three committed chunks, then kill mid-way through later ones
        assert p.stdout.readline()
    time.sleep(0.05)
    p.kill()
    p.wait()
    s = VectorStore(path)
    n = len(s)
    assert n >= 1500 and n % 500 == 0  # whole chunks only: each write is one atomic commit
    assert len(s.search(np.ones(8), "x", top_k=3)) == 3


def test_cached_state_and_in_memory_exact_scan_match_lancedb(tmp_path):
    v = _unit(300, 16, seed=3)
    v[7] = 0.0  # a present but zero vector: LanceDB's cosine search never returns it; nor may the in-memory scan
    ids = [f"r{i}" for i in range(300)]
    meta = pd.DataFrame({"split": ["test" if i % 3 == 0 else "train" for i in range(300)], "k": np.arange(300)})
    s = VectorStore(tmp_path / "idx")
    s.upsert(ids, ["h"] * 300, {"x": v}, None, meta)  # every row has x: no has_x prefilter needed
    lance_only = VectorStore(tmp_path / "idx", exact_cache_mb=0)  # never loads vectors: always LanceDB's flat scan
    q = _unit(6, 16, seed=4)
    for x in q:
        a, b, c = s.search(x, "x", top_k=8), s.search(x, "x", top_k=8), lance_only.search(x, "x", top_k=8)
        for other in (b, c):
            assert other.id.tolist() == a.id.tolist() and list(other.columns) == list(a.columns) == ["id", "score", "hash", "split", "k"]
            assert list(other.dtypes) == list(a.dtypes)
            np.testing.assert_allclose(other.score, a.score, atol=1e-5)
        assert "r7" not in set(a.id)
    assert "x" in s._cache["flat"]  # the repeated exact searches ran in memory
    assert len(s.search(np.zeros(16), "x")) == len(lance_only.search(np.zeros(16), "x")) == 0
    assert len(s.search(q[0], "x", top_k=1000)) == 299
    # a write with absent vectors makes a new version: the cache is dropped and the absent rows never come back
    present = {"x": np.arange(300) % 2 == 0}
    s.upsert(ids, ["h"] * 300, {"x": v}, present, meta)
    absent = {f"r{i}" for i in range(1, 300, 2)}
    for x in [*q, v[1], v[3]]:
        for ex in (True, True, True, None):  # Lance, then in-memory, then in-memory, then the default (exact)
            res = s.search(x, "x", top_k=20, exact=ex)
            assert len(res) == 20 and not set(res.id) & absent
        res = s.search(x, "x", top_k=20, where="split = 'test'")
        assert (res.split == "test").all() and not set(res.id) & absent
    assert len(s.search(q[0], "x", top_k=1000)) == 150  # the even rows (r7, the zero vector, is odd: absent)
    with pytest.raises(IndexError_, match="where"):
        s.search(q[0], "x", where="no_such_column = 1")
    assert s.delete(["r0"]) == 1 and len(s) == 299 and "r0" not in set(s.search(v[0], "x", top_k=5).id)
