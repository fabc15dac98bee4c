"""ONNX export end to end on real rows: a tiny av-digits model (image + audio) exported by the real CLI, checked
here again with a bare onnxruntime session for every subset of modalities, then used as the predict backend."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import polymodal as pm
from polymodal.cli.app import app
from polymodal.datasets import load_av_digits
from polymodal.evaluate.subsets import modality_subsets
from polymodal.export import ExportError, export_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A transformer-fusion run on 96 av-digits rows (1 epoch), exported with `polymodal export RUN`."""
    d = tmp_path_factory.mktemp("onnx")
    model = pm.fit(load_av_digits("train", limit=96), label="digit", epochs=1, dim=16, batch_size=32,
                   progress=False)
    model.save(d / "run")
    res = runner.invoke(app, ["export", str(d / "run")])
    assert res.exit_code == 0, res.output
    assert "done" in res.output and "max |diff|" in res.output
    return d / "run"


@pytest.fixture(scope="module")
def rows():
    """Test rows the export did not check on (it used the first 32), with some cells missing."""
    t = load_av_digits("test", limit=80).iloc[40:].copy()
    t.loc[t.index[:8], "audio"] = None
    t.loc[t.index[8:14], "image"] = None
    return t


def test_record_says_what_was_checked(run):
    rec = json.loads((run / "model.onnx.json").read_text())
    assert rec["passed"] and rec["max_abs_diff"] <= 1e-4 and rec["atol"] == 1e-4 and rec["opset"] >= 18
    assert set(rec["check"]["subsets"]) == {"(none)", "image", "audio", "image+audio"}
    assert rec["max_abs_diff"] == max([*rec["check"]["subsets"].values(), *rec["check"]["shapes"].values()])
    assert "av-digits" in rec["check"]["data"] and rec["check"]["rows"] == 32
    shapes = {i["name"]: i["shape"] for i in rec["inputs"]}
    assert shapes["image.pixels"] == ["batch", 1, 28, 28]
    assert shapes["audio.wave"] == ["batch", "audio_len"] and shapes["audio.length"] == ["batch"]
    assert shapes["image.present"] == shapes["audio.present"] == ["batch"]
    assert rec["versions"]["polymodal"] == pm.__version__ and len(rec["run_sha256"]) == 64


def test_bare_onnxruntime_matches_pytorch_on_every_subset(run, rows):
    """Independent of the exporter's own check: a plain session, other rows, every subset, batch 1 and 5."""
    model = pm.load(run)
    _, ds, _ = model.decode(rows, labels="ignore", progress=False)
    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in sess.get_inputs()) == sorted(
        ["image.pixels", "audio.wave", "audio.length", "image.present", "audio.present"])
    for n in (1, 5, len(ds)):
        batch = ds[list(range(n))]
        data_present = batch.present
        for keep in [()] + modality_subsets(model.modalities):
            present = {m: p & (m in keep) for m, p in data_present.items()}
            batch.present = present
            with torch.no_grad():
                want = model.net(batch).logits.numpy()
            feed = {f"{m}.{k}": v.numpy() for m, d in batch.inputs.items() for k, v in d.items()}
            feed.update({f"{m}.present": p.numpy() for m, p in present.items()})
            (got,) = sess.run(["logits"], feed)
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=f"subset {keep}, batch {n}")


def test_predict_with_onnx_backend_equals_torch(run, rows, tmp_path):
    rows.to_parquet(tmp_path / "t.parquet")
    out = {}
    for backend in ("torch", "onnx"):
        res = runner.invoke(app, ["predict", str(run), str(tmp_path / "t.parquet"), "--backend", backend,
                                  "-o", str(tmp_path / f"{backend}.csv")])
        assert res.exit_code == 0, res.output
        out[backend] = pd.read_csv(tmp_path / f"{backend}.csv")
    assert (out["onnx"]["prediction"] == out["torch"]["prediction"]).all()
    probs = [out[b].filter(like="proba_").to_numpy() for b in ("onnx", "torch")]
    np.testing.assert_allclose(*probs, atol=1e-5)
    model = pm.load(run)
    ev = {b: model.evaluate(load_av_digits("test", limit=40), backend=b, onnx=run / "model.onnx", progress=False)
          for b in ("torch", "onnx")}
    assert ev["onnx"]["subsets"] == ev["torch"]["subsets"]


def test_missing_or_stale_graph_is_a_clear_error(run, rows, tmp_path):
    model = pm.load(run)
    model.save(tmp_path / "bare")  # a run folder without a graph
    res = runner.invoke(app, ["predict", str(tmp_path / "bare"), "x.csv", "--backend", "onnx", "-o", "-"])
    assert res.exit_code == 2 and "export it first with `polymodal export" in res.output
    with torch.no_grad():
        next(model.net.parameters()).add_(0.1)  # other weights than the graph was exported from
    with pytest.raises(ExportError, match="exported from other weights"):
        model.predict(rows, backend="onnx", onnx=run / "model.onnx")


def test_a_part_that_cannot_export_is_named(run, rows, tmp_path):
    model = pm.load(run).with_token_budget(0.5, reducer="merge")
    _, ds, _ = model.decode(rows, labels="ignore", progress=False)
    with pytest.raises(ExportError) as e:
        export_run(model.net, model.schema, ds, tmp_path / "m.onnx")
    msg = str(e.value)
    assert "encoder of modality 'image'" in msg and "token budget (reducer 'merge')" in msg
    assert "What to do" in msg and "Traceback" not in msg and len(msg) < 800
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def test_tabular_run_needs_real_check_rows(xor_model, tmp_path):
    """No bundled dataset has the xor columns: the CLI asks for --check-data, then checks on those rows."""
    from tests.xor_data import xor_table

    xor_model.save(tmp_path / "run")
    res = runner.invoke(app, ["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "--check-data" in res.output
    xor_table(40, seed=3).to_csv(tmp_path / "check.csv", index=False)
    res = runner.invoke(app, ["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "x.onnx"),
                              "--check-data", str(tmp_path / "check.csv"), "--opset", "18"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "x.onnx.json").read_text())
    assert set(rec["check"]["subsets"]) == {"(none)", "a", "b", "a+b"} and rec["opset"] == 18
    test = xor_table(50, seed=5)
    torch_p = xor_model.predict(test)
    onnx_p = xor_model.predict(test, backend="onnx", onnx=tmp_path / "x.onnx")
    assert (torch_p["prediction"] == onnx_p["prediction"]).all()
    np.testing.assert_allclose(onnx_p.filter(like="proba_").to_numpy(), torch_p.filter(like="proba_").to_numpy(),
                               atol=1e-5)


def test_text_run_exports_with_a_dynamic_ids_axis(tmp_path):
    """A text-only run: the ids axis is dynamic (checked at one row cut to its own length) and predict matches."""
    from polymodal.datasets import load_emoji

    model = pm.fit(load_emoji("train", limit=80)[["name", "category"]], label="category", epochs=1, dim=16,
                   batch_size=32, progress=False)
    model.save(tmp_path / "run")
    res = runner.invoke(app, ["export", str(tmp_path / "run"), "--check-rows", "8"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "run" / "model.onnx.json").read_text())
    assert "emoji" in rec["check"]["data"] and {i["name"]: i["shape"] for i in rec["inputs"]}["name.ids"] == [
        "batch", "name_len"]
    test = load_emoji("test", limit=40)[["name"]]
    assert rec["check"]["shapes"]["batch_1_own_length"] <= 1e-4
    torch_p = model.predict(test, progress=False)
    onnx_p = model.predict(test, progress=False, backend="onnx", onnx=tmp_path / "run" / "model.onnx")
    np.testing.assert_allclose(onnx_p.filter(like="proba_").to_numpy(), torch_p.filter(like="proba_").to_numpy(),
                               atol=1e-5)
