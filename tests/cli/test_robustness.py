"""The harness commands (``cli/robustness.py``) end to end through the CLI (tiny model, tiny table)."""

import json

import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app
from tests.xor_data import xor_table

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, xor_run):
    """A folder with ``run`` (the session's CLI-trained xor run) and ``test.csv``; outputs go next to them."""
    import shutil

    d = tmp_path_factory.mktemp("cli_rob")
    shutil.copytree(xor_run, d / "run")
    xor_table(60, seed=4).to_csv(d / "test.csv", index=False)
    return d


def test_robustness_command(saved):
    out = saved / "rob"
    r = runner.invoke(app, ["robustness", str(saved / "run"), str(saved / "test.csv"), "--noise", "0,1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "modalities" in r.output and "MNAR" in r.output and "corruption" in r.output
    rep = json.loads((out / "robustness.json").read_text())
    assert rep["noise"]["levels"] == [0.0, 1.0] and set(rep["mnar"]) >= {"a", "b", "rate", "clean"}


def test_explain_command_writes_rows_and_summary(saved):
    out = saved / "explain.csv"
    r = runner.invoke(app, ["explain", str(saved / "run"), str(saved / "test.csv"), "--out", str(out), "--show", "3"])
    assert r.exit_code == 0, r.output
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 60 and {"prediction", "shapley_a", "shapley_b", "loo_a", "loo_b"} <= set(table.columns)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["method"] == "shapley" and summary["grouped_by"] == "true"


def test_bad_flags_give_one_line_errors(saved):
    r = runner.invoke(app, ["robustness", str(saved / "run"), str(saved / "test.csv"), "--noise", "lots"])
    assert r.exit_code == 2 and "--noise expects comma-separated numbers" in r.stderr
    r = runner.invoke(app, ["explain", str(saved / "run"), str(saved / "test.csv"), "--method", "lime"])
    assert r.exit_code == 2 and "--method must be" in r.stderr
    r = runner.invoke(app, ["compare", str(saved / "test.csv"), "--label", "y", "--fusions", "late,nope"])
    assert r.exit_code == 2 and "unknown fusion" in r.stderr
    r = runner.invoke(app, ["robustness", str(saved / "run"), str(saved / "test.csv"), "--corruption", "a"])
    assert r.exit_code == 2 and "--corruption expects modality=corruption" in r.stderr


def test_compare_command_on_a_csv(saved):
    r = runner.invoke(app, ["compare", str(saved / "test.csv"), "--label", "y", "--fusions", "late", "--seeds", "1",
                            "--epochs", "2", "--no-unimodal", "--workers", "1", "--noise", "", "--out", str(saved / "cmp")])
    assert r.exit_code == 0, r.output
    assert "compare (1 seed(s))" in r.output and (saved / "cmp" / "compare.json").exists()


def _cells(output: str, first: str) -> list[str]:
    """The cells of the plain-text table row (not a terminal: no box) that starts with ``first``."""
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [first])


def test_compare_formats_numbers_by_type_and_never_truncates(monkeypatch):
    import polymodal.experiments.compare as cmp

    long_name = "transformer_with_a_rather_long_fusion_name_that_a_narrow_table_would_cut"
    entry = {"metric": "accuracy", "mean": 0.5, "std": 0.0125, "params": 1234.0, "train_s": 12.345,
             "latency_ms": 0.123456}  # params averaged over seeds: a float
    monkeypatch.setattr(cmp, "compare", lambda *a, **k: {"models": {"late": entry, long_name: dict(entry, mean=0.25)}})
    r = runner.invoke(app, ["compare", "basicmotions", "--label", "activity", "--seeds", "2"])
    assert r.exit_code == 0, r.output
    assert _cells(r.stdout, "late") == ["late", "0.5000", "0.0125", "1234", "12.3", "0.1235"]  # int, seconds, 4 dp
    assert long_name in r.stdout and "\u2026" not in r.stdout  # full width: no "reduc…"
    assert "accuracy mean" in r.stdout and "latency ms/sample" in r.stdout


def test_explain_prints_integer_classes_as_integers(saved, monkeypatch):
    import pandas as pd

    import polymodal.evaluate.attribution as attribution

    rows = pd.DataFrame({"prediction": [4, 0], "probability": [0.9, 0.8], "shapley_a": [0.25, -0.125],
                         "shapley_b": [0.5, 0.0]}, index=[10, 11])
    summary = {"method": "shapley", "grouped_by": "true", "per_class": {"shapley": {"4": {"a": 0.1, "b": 0.2}}},
               "decode_report": {"errors": {"a1": 2}, "causes": {"bad value": 2}, "examples": [], "missing": {},
                                 "dropped_rows": {}}}
    monkeypatch.setattr(attribution, "explain", lambda *a, **k: (rows, summary))
    r = runner.invoke(app, ["explain", str(saved / "run"), str(saved / "test.csv")])
    assert r.exit_code == 0, r.output
    assert _cells(r.stdout, "10") == ["10", "4", "0.2500", "0.5000"]  # a row Series would have made it 4.0000
    assert _cells(r.stdout, "11") == ["11", "0", "-0.1250", "0.0000"]
    assert _cells(r.stdout, "4") == ["4", "0.1000", "0.2000"]  # the per-class table
    assert "decode: 2 values treated as missing" in r.stdout


def test_compare_accepts_a_builtin_dataset_name(monkeypatch):
    import polymodal.experiments.compare as cmp

    seen = {}

    def fake(train, label, **kw):
        seen.update(train=train, test=kw["test"], seeds=kw["seeds"], fusions=kw["fusions"])
        return {"models": {"late": {"metric": "accuracy", "mean": 0.5, "std": 0.0, "params": 1, "train_s": 1.0,
                                    "latency_ms": 0.1}}}

    monkeypatch.setattr(cmp, "compare", fake)
    r = runner.invoke(app, ["compare", "basicmotions", "--label", "activity", "--fusions", "late", "--seeds", "2"])
    assert r.exit_code == 0, r.output
    assert seen == {"train": ("dataset", "basicmotions", "train"), "test": ("dataset", "basicmotions", "test"),
                    "seeds": (0, 1), "fusions": "late"}
