"""``polymodal fit`` / ``evaluate`` / ``predict`` (``cli/train.py``): the real CLI on a small slice of the bundled
data, exported to ordinary files (PNG, WAV, Parquet), and on a tiny tabular table."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(exported_av_digits):
    return exported_av_digits(120)


def test_fit_evaluate_predict_end_to_end(exported, tmp_path):
    run = tmp_path / "m1"
    res = runner.invoke(app, ["fit", str(exported / "train.parquet"), "--label", "digit", "--fusion", "concat",
                              "--out", str(run), "--epochs", "2", "--dim", "32"])
    assert res.exit_code == 0, res.output
    assert (run / "weights.safetensors").exists() and (run / "checkpoints" / "best.safetensors").exists()

    res = runner.invoke(app, ["evaluate", str(run), str(exported / "test.parquet"), "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["subsets"]) == {"image", "audio", "image+audio"}
    assert "only audio" in res.output

    # CSV input works as well as Parquet: relative paths resolve against the table's folder
    test = pd.read_parquet(exported / "test.parquet")
    test.drop(columns="digit").to_csv(exported / "new.csv", index=False)
    res = runner.invoke(app, ["predict", str(run), str(exported / "new.csv"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == len(test) and {"prediction", "proba_0", "proba_9"} <= set(preds.columns)


def test_unknown_label_exits_with_message(exported, tmp_path):
    res = runner.invoke(app, ["fit", str(exported / "train.parquet"), "--label", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "label column 'nope' not found" in res.stderr and "error:" in res.stderr
    assert "Traceback" not in res.output


def test_corrupt_file_names_row_column_file_then_policy(exported, tmp_path, tmp_path_factory):
    # the shared export stays untouched: the bad file and manifest go to a folder of their own (a short path, so
    # the message below is not wrapped inside the file name)
    work = tmp_path_factory.mktemp("bad")
    manifest = pd.read_parquet(exported / "train.parquet")
    for col in ("image", "audio"):
        manifest[col] = [str(exported / p) for p in manifest[col]]
    bad = work / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage-not-audio")
    manifest.loc[7, "audio"] = "corrupt.wav"
    manifest.to_parquet(work / "bad.parquet")
    args = ["fit", str(work / "bad.parquet"), "--label", "digit", "--out", str(tmp_path / "b"), "--epochs", "1", "--dim", "32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    flat = " ".join(res.output.split())
    assert "row 7" in flat and "'audio'" in flat and "corrupt.wav" in flat and "on-error missing" in flat

    res = runner.invoke(app, args + ["--on-error", "missing"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["decode_report"]["errors"] == {"audio": 1}
    assert report["decode_report"]["examples"][0]["row"] == 7


def test_list_fusions_and_datasets():
    res = runner.invoke(app, ["list", "fusions"])
    assert res.exit_code == 0 and all(f in res.output for f in ("late", "concat", "transformer"))
    res = runner.invoke(app, ["datasets", "list"])
    assert res.exit_code == 0 and "av-digits" in res.output


def test_group_and_kinds_flags_shape_the_schema(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"hr": rng.normal(size=n), "bp": rng.normal(size=n), "code": rng.integers(0, 3, n)})
    df["y"] = (df["hr"] + df["bp"] > 0).astype(int)
    df.to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "r"
    res = runner.invoke(app, ["fit", str(tmp_path / "t.csv"), "--label", "y", "--group", "vitals=hr+bp",
                              "--kinds", "code=ignore", "--out", str(run), "--epochs", "1", "--dim", "16"])
    assert res.exit_code == 0, res.output
    schema = json.loads((run / "schema.json").read_text())
    assert [(m["name"], m["columns"]) for m in schema["modalities"]] == [("vitals", ["hr", "bp"])]
    res = runner.invoke(app, ["fit", str(tmp_path / "t.csv"), "--label", "y", "--group", "vitals", "--out", str(run)])
    assert res.exit_code == 2 and "--group expects name=col1+col2" in res.stderr


def _no_table_reading(monkeypatch):
    """Make reading a training table fail loudly (a bug-shaped error, exit 1): checks that must come first do."""
    import polymodal.recipes.fit as recipe

    def read(*args, **kwargs):
        raise AssertionError("the training table was read")

    monkeypatch.setattr(recipe, "prepare", read)


def test_mistyped_fusion_fails_before_the_table_is_read(tiny_csv, tmp_path, monkeypatch):
    _no_table_reading(monkeypatch)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--fusion", "transfomer",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.stderr.split())
    assert "unknown fusion 'transfomer'" in msg and "Did you mean 'transformer'?" in msg
    assert all(f in msg for f in ("late", "concat", "gated", "moe"))  # the valid choices
    assert "Traceback" not in res.output and not res.stdout.strip()
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--encoders", "a=tabular_fx",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Did you mean 'tabular_ft'?" in " ".join(res.stderr.split())


def test_out_naming_an_existing_file_fails_before_training(tiny_csv, tmp_path, monkeypatch):
    _no_table_reading(monkeypatch)
    (tmp_path / "taken").write_text("not a run")
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "taken")])
    assert res.exit_code == 2, res.output
    assert "it is a file" in " ".join(res.stderr.split())
    assert (tmp_path / "taken").read_text() == "not a run"


def test_align_weight_alone_does_not_turn_alignment_on(tiny_csv, tmp_path, monkeypatch):
    _no_table_reading(monkeypatch)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--align-weight", "0.5",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--align clip" in res.stderr


def test_evaluate_and_predict_a_tiny_run(xor_run, tiny_csv, tmp_path):
    res = runner.invoke(app, ["evaluate", str(xor_run), str(tiny_csv / "test.csv"), "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "m.json").read_text())["subsets"]) == {"a", "b", "a+b"}
    res = runner.invoke(app, ["predict", str(xor_run), str(tiny_csv / "test.csv"), "--out", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_json(tmp_path / "p.jsonl", lines=True)) == 60
    res = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(tiny_csv / "test.csv"),
                              "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "not a run folder" in res.stderr
