"""The streaming path end to end: ``fit`` on a folder of Parquet shards of av-digits file paths (decoded in
DataLoader workers) against the in-memory path, ``stream="auto"`` choosing by size, and chunked inference
(``predict`` / ``evaluate`` / ``embed`` / ``polymodal predict --out``) equal to decoding the table at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import polymodal as pm
import polymodal.data.chunks as chunks
import polymodal.data.paths as paths
from polymodal.cli.app import app
from polymodal.data.stream import StreamDataset

from tests.xor_data import GROUPS, xor_table

# clean (not degraded) av-digits images: the one modality that learns within a few epochs on 240 rows
AV = dict(use=["image"], fusion="late", dim=16, epochs=6, lr=0.02, batch_size=16, val_fraction=0.0, seed=0)


@pytest.fixture(scope="module")
def av_shards(tmp_path_factory):
    """(shards folder of 240 training rows in 4 files, the exported folder with its test.parquet)."""
    from polymodal.datasets import export_av_digits

    folder = tmp_path_factory.mktemp("avd_clean")
    export_av_digits(folder, limit=240, degrade=False, progress=False)
    train = pd.read_parquet(folder / "train.parquet")
    train = train.assign(image="../" + train["image"], audio="../" + train["audio"])  # relative to the shards
    shards = folder / "train_shards"
    shards.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(train)), 4)):
        train.iloc[rows].to_parquet(shards / f"part-{k}.parquet", index=False, row_group_size=32)
    return shards, folder


def test_streaming_fit_on_shards_reaches_the_in_memory_accuracy(av_shards, capfd):
    shards, folder = av_shards
    test = folder / "test.parquet"
    streamed = pm.fit(str(shards), label="digit", stream="on", num_workers=2, **AV)
    assert "data path: streaming 240 rows" in capfd.readouterr().err
    memory = pm.fit(str(shards), label="digit", stream="off", **AV)
    assert "data path: in memory: 240 rows" in capfd.readouterr().err
    assert streamed.schema.to_dict() == memory.schema.to_dict()  # the same schema fitted on both paths
    assert streamed.info["n_train"] == memory.info["n_train"] == 240
    acc = {name: m.evaluate(test, subsets=False, progress=False)["metrics"]["accuracy"]
           for name, m in (("stream", streamed), ("memory", memory))}
    assert acc["memory"] > 0.17, acc  # it learns (10 classes: chance is 0.1; 0.25 measured) ...
    assert abs(acc["stream"] - acc["memory"]) <= 0.12, acc  # ... and so does the streamed run, as well


def test_auto_picks_the_path_by_decoded_size(tmp_path, monkeypatch, capfd):
    table = tmp_path / "xor.parquet"
    xor_table(200).to_parquet(table, index=False)
    small = dict(groups=GROUPS, fusion="concat", epochs=1, dim=16, progress=True)
    pm.fit(table, "y", **small)  # stream="auto" is the default
    assert "data path: in memory: 200 rows decoded once (stream='auto'" in capfd.readouterr().err
    monkeypatch.setattr(paths, "STREAM_BYTES", 1000)  # a table of ~8 KB decoded is now "large"
    model = pm.fit(table, "y", num_workers=0, **small)
    err = capfd.readouterr().err
    assert "data path: streaming 200 rows" in err and "over the" in err
    assert model.info["n_train"] + model.info["n_val"] == 200


def test_streamed_xor_learns_both_bits(tmp_path):
    """Rows decoded in workers, hold-out split and labels intact: the streamed model solves xor."""
    shards = tmp_path / "shards"
    shards.mkdir()
    frame = xor_table(480, seed=2)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(shards / f"{k}.parquet", index=False, row_group_size=40)
    model = pm.fit(str(shards), "y", groups=GROUPS, fusion="concat", epochs=12, dim=16, batch_size=32, lr=5e-3,
                   stream="on", num_workers=2, progress=False)
    acc = model.evaluate(xor_table(200, seed=1), subsets=False, progress=False)["metrics"]["accuracy"]
    assert acc > 0.9, acc


def test_chunked_inference_equals_decoding_at_once(xor_model, tmp_path, monkeypatch):
    table = xor_table(300, seed=4)
    table.loc[table.index[:7], "a1"] = None  # missing cells spread over chunks
    whole = {"predict": xor_model.predict(table), "evaluate": xor_model.evaluate(table)}
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 64)
    parts = list(xor_model.predict_chunks(table))
    assert [len(p) for p in parts] == [64, 64, 64, 64, 44]
    pd.testing.assert_frame_equal(xor_model.predict(table), whole["predict"])
    ev = xor_model.evaluate(table)
    cm = ev["metrics"].pop("confusion_matrix")
    assert cm == whole["evaluate"]["metrics"].pop("confusion_matrix")
    assert ev["metrics"] == pytest.approx(whole["evaluate"]["metrics"])
    for k, v in whole["evaluate"]["subsets"].items():
        assert ev["subsets"][k] == pytest.approx(v)
    assert ev["present_fraction"] == pytest.approx(whole["evaluate"]["present_fraction"])
    # a folder of shards predicts lazily, rows named by global row: the same predictions
    shards = tmp_path / "shards"
    shards.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(300), 2)):
        table.iloc[rows].to_parquet(shards / f"{k}.parquet", index=False, row_group_size=50)
    pd.testing.assert_frame_equal(xor_model.predict(str(shards)), whole["predict"], check_index_type=False)


def test_cli_predict_writes_chunks_as_it_goes(xor_model, tmp_path, monkeypatch):
    run = tmp_path / "run"
    xor_model.save(run)
    table = xor_table(150, seed=5)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    expected = xor_model.predict(table)
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 40)
    for name in ("p.parquet", "p.csv", "p.jsonl"):
        res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "t.parquet"), "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert "150 predictions" in res.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), expected, check_index_type=False)
    csv = pd.read_csv(tmp_path / "p.csv", index_col="row")
    np.testing.assert_allclose(csv.filter(like="proba_").to_numpy(), expected.filter(like="proba_").to_numpy(),
                               rtol=1e-6)
    assert list(csv["prediction"]) == list(expected["prediction"])
    assert len(pd.read_json(tmp_path / "p.jsonl", lines=True)) == 150
    assert not list(tmp_path.glob(".*partial"))


def test_stream_dataset_is_what_prepare_returns_when_streaming(tmp_path):
    from polymodal.config.presets import resolve
    from polymodal.recipes.steps import hold_out, prepare

    table = xor_table(120)
    table.loc[3, "y"] = None  # dropped and counted, as in memory
    cfg, train_cfg = resolve({"stream": "on"})
    prep = prepare(table, "y", cfg, supervised=True, groups=GROUPS, on_error="missing", progress=False,
                   train_cfg=train_cfg)
    assert isinstance(prep.dataset, StreamDataset) and len(prep.dataset) == 119
    assert prep.ctx.report.dropped_rows == {"missing label": 1}
    assert 3 not in prep.dataset.positions
    tr, va = hold_out(prep, None, train_cfg, on_error="missing", progress=False)
    assert len(tr) + len(va) == 119 and not set(tr.positions[tr.rows]) & set(va.positions[va.rows])


def test_chunked_embed_equals_embedding_at_once(monkeypatch):
    model = pm.fit(xor_table(120), "y", groups=GROUPS, fusion="concat", align="clip", epochs=1, dim=16,
                   progress=False)
    table = xor_table(150, seed=6)
    table.loc[table.index[:5], "b1"] = None
    whole = model.embed(table)
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 32)
    chunked = model.embed(table)
    assert list(chunked.index) == list(whole.index) and list(chunked.columns) == list(whole.columns)
    for col in whole.columns:
        for a, b in zip(whole[col], chunked[col]):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
