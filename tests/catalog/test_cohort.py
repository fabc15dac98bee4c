"""The chain run -> cohort -> records -> source files, through the real CLI: add three sources, query a cohort,
export it, train on it (1 tiny epoch), and find the run in ``catalog show``."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from polymodal.catalog import View, cohort_of, select
from polymodal.cli.app import app

runner = CliRunner()


def _ok(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _sources(av, cat) -> None:
    for table, source in (("images.parquet", "scanner_a"), ("notes.jsonl", "ehr"), ("audio.csv", "lab")):
        _ok("catalog", "add", cat, av / table, "--source", source, "--subject", "patient_id")


def test_query_matches_a_pandas_reference(av, tmp_path):
    cat = tmp_path / "cat"
    _sources(av, cat)
    notes = pd.read_json(av / "notes.jsonl", lines=True)
    audio = pd.read_csv(av / "audio.csv")
    images = pd.read_parquet(av / "images.parquet")
    cases = [
        ("image,text", "age > 50", set(notes.loc[notes.age > 50, "patient_id"])),
        ("audio", None, set(audio.patient_id)),
        ("image,audio", "outcome IN (1, 2, 3) OR site = 'b'",
         set(audio.patient_id) & (set(notes.loc[notes.outcome.isin([1, 2, 3]), "patient_id"])
                                  | set(images.loc[images.site == "b", "patient_id"]))),
        ("tabular", "lower(note) LIKE '%seven%' AND n_records = 3",
         set(notes.loc[notes.note.str.contains("seven"), "patient_id"]) & set(audio.patient_id)),
    ]
    with View(cat) as v:
        for has, where, expected in cases:
            got = list(select(v, has, where)["subject"])
            assert got == sorted(expected), (has, where)
    out = json.loads(_ok("catalog", "query", cat, "--has", "image,text", "--where", "age > 50", "--json"))
    assert out["subjects"] == len(cases[0][2])


def test_cohort_to_fit_to_show(av, tmp_path):
    cat = tmp_path / "cat"
    _sources(av, cat)
    cohort_file = tmp_path / "work" / "cohort.parquet"
    out = _ok("catalog", "query", cat, "--has", "image,audio", "--where", "age > 45", "--out", cohort_file)
    assert "subjects" in out
    meta = json.loads(pq.read_schema(cohort_file).metadata[b"polymodal.cohort"])
    assert meta["catalog"] == str(cat.resolve()) and meta["catalog_version"] == 3
    assert meta["query"] == {"has": ["image", "audio"], "where": "age > 45"}
    # a table fit samples or streams (over 50k rows) has no attrs: the cohort is read from the file itself
    assert cohort_of(cohort_file, pd.DataFrame())["cohort"] == cohort_of(str(cohort_file))["cohort"] == meta["cohort"]
    cohort = pd.read_parquet(cohort_file)
    # even patients (lab has every other one) older than 45: P006, P008, ..., P022
    assert meta["subjects"] == len(cohort) == 9
    assert list(cohort.columns) == ["image", "site", "note", "age", "outcome", "audio"]
    src = pd.read_parquet(av / "test.parquet")
    for i, row in cohort.iterrows():
        k = 6 + 2 * i
        assert (cohort_file.parent / row["image"]).read_bytes() == (av / src["image"][k]).read_bytes()
        assert (cohort_file.parent / row["audio"]).read_bytes() == (av / src["audio"][k]).read_bytes()
        assert row["age"] == 40 + k and row["outcome"] == src["digit"][k]

    run = tmp_path / "runs" / "c1"
    _ok("fit", cohort_file, "--label", "outcome", "--out", run, "--use", "image,audio", "--epochs", "1", "--dim",
        "16", "--batch-size", "16", "--val-fraction", "0")
    report = json.loads((run / "report.json").read_text())
    assert {k: report["cohort"][k] for k in ("catalog", "catalog_version", "cohort", "query")} == {
        k: meta[k] for k in ("catalog", "catalog_version", "cohort", "query")}

    shown = json.loads(_ok("catalog", "show", cat, "--subject", "P008", "--json"))
    assert [r["source"] for r in shown["records"]] == ["scanner_a", "ehr", "lab"]
    assert shown["cohorts"] == [meta["cohort"]]
    assert [(r["run"], r["cohort"], r["catalog_version"]) for r in shown["runs"]] == [
        (str(run.resolve()), meta["cohort"], 3)]
    text = " ".join(_ok("catalog", "show", cat, "--subject", "P008").split())
    assert f"run {run.resolve()}: cohort {meta['cohort']}" in text
    assert "images/test_00008.png" in text and "audio/test_00008.wav" in text  # down to the source files
    assert json.loads(_ok("catalog", "show", cat, "--subject", "P007", "--json"))["runs"] == []  # odd: no audio
    listing = " ".join(_ok("catalog", "sources", cat).split())
    assert "version 3, 60 records of 24 subjects" in listing and "1 cohorts, 1 runs" in listing


def test_cli_errors_exit_2_with_the_message(av, tmp_path):
    res = runner.invoke(app, ["catalog", "add", str(tmp_path / "cat"), str(av / "notes.jsonl"), "--source", "ehr",
                              "--subject", "pid"])
    assert res.exit_code == 2 and "the subject column 'pid' is not in the table" in " ".join(res.output.split())
    _sources(av, tmp_path / "cat")
    res = runner.invoke(app, ["catalog", "query", str(tmp_path / "cat"), "--has", "imag"])
    assert res.exit_code == 2 and "Did you mean 'image'?" in res.output
    res = runner.invoke(app, ["catalog", "show", str(tmp_path / "cat"), "--subject", "nobody"])
    assert res.exit_code == 2 and "has no record" in res.output
