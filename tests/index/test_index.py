import shutil

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from polymodal.index import Index
from polymodal.index.store import IndexError_

from ..recipes.conftest import GROUP, paired_table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "emb"
    pm.align(paired_table(240), groups=GROUP, label="cls", epochs=8, batch_size=64, lr=5e-3, dim=32, embed_dim=16,
             progress=False, out=out)
    return out


def test_build_is_incremental_and_searchable(tmp_path, run):
    data = paired_table(60, seed=5)
    data["split"] = ["test" if i % 3 == 0 else "train" for i in range(60)]
    data["uid"] = [f"u{i}" for i in range(60)]
    idx = Index.build(run, data, tmp_path / "idx", id_column="uid")
    assert idx.last_build["inserted"] == 60 and len(idx) == 60
    assert set(idx.store.vector_names()) == {"a", "b", "fused"}
    again = Index.build(run, data, tmp_path / "idx", id_column="uid")
    assert again.last_build["inserted"] == 0 and again.last_build["unchanged"] == 60
    assert again.store.version == idx.store.version  # nothing written
    changed = data.copy()
    changed.loc[0, "a0"] += 5.0  # content change of one row
    changed = pd.concat([changed.iloc[:50], paired_table(3, seed=9).assign(split="new", uid=["n0", "n1", "n2"])])
    b = Index.build(run, changed, tmp_path / "idx", id_column="uid").last_build
    assert (b["inserted"], b["updated"], b["deleted"], b["total"]) == (3, 1, 10, 53)
    # search by a vector of one modality: its pair is found in the other
    reopened = Index(tmp_path / "idx")
    q = reopened.model.embed(data.iloc[[3]])["emb_a"].iloc[0]
    res = reopened.search(vector=np.asarray(q), modality="a", target="b", top_k=5)
    assert len(res) == 5 and "uid" in res.columns and res.score.is_monotonic_decreasing
    res = reopened.search(vector=np.asarray(q), target="b", top_k=50, where="split = 'test'")
    assert set(res.split) == {"test"}


def test_files_changed_and_deleted_are_updated(tmp_path):
    from polymodal.datasets import export_av_digits

    paths = export_av_digits(tmp_path / "av", splits=("test",), limit=3, degrade=False, progress=False)
    data = pd.read_parquet(paths["test"])
    run = tmp_path / "run"
    pm.align(paths["test"], label="digit", epochs=1, batch_size=16, dim=16, embed_dim=8, progress=False, out=run)
    idx = Index.build(run, paths["test"], tmp_path / "idx")
    n = len(data)
    assert idx.last_build["inserted"] == n
    img = tmp_path / "av" / data.image.iloc[0]
    other = tmp_path / "av" / data.image.iloc[1]
    shutil.copy(other, img)  # edit a file in place: same path, new content
    (tmp_path / "av" / data.audio.iloc[2]).unlink()  # delete a file
    b = Index.build(run, paths["test"], tmp_path / "idx").last_build
    assert b["updated"] == 1 and b["missing_files"] == 1 and b["deleted"] == 1 and b["total"] == n - 1
    assert "audio" in b["missing_examples"][0]["column"]
    res = Index(tmp_path / "idx").search(image=str(other), top_k=n, target="image")
    assert len(res) == n - 1 and res.score.iloc[0] == pytest.approx(1.0, abs=1e-4)  # the file itself (and its copy)


def test_another_model_is_refused(tmp_path, run):
    data = paired_table(20, seed=2)
    Index.build(run, data, tmp_path / "idx")
    other = tmp_path / "other"
    pm.align(paired_table(60), groups=GROUP, label="cls", epochs=1, dim=16, embed_dim=16, progress=False, out=other)
    with pytest.raises(IndexError_, match="another model"):
        Index.build(other, data, tmp_path / "idx")
    dup = pd.concat([data.iloc[:2], data.iloc[:1]])
    with pytest.raises(IndexError_, match="identical content"):
        Index.build(run, dup, tmp_path / "idx2")
