"""Bad input: errors that name the source, the row and the column, or the ``missing`` policy, counted."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from polymodal.catalog import CatalogError, View, add, select, sources, subject
from polymodal.errors import SchemaError


def test_missing_subject_column_names_source_and_columns(av, tmp_path):
    with pytest.raises(CatalogError, match=r"source 'ehr': the subject column 'pid' is not in the table; its "
                                           r"columns are \['patient_id', 'note', 'age', 'outcome'\]"):
        add(tmp_path / "cat", av / "notes.jsonl", source="ehr", subject="pid")
    assert not (tmp_path / "cat" / "manifest.json").exists()


def test_conflicting_kinds_between_sources(av, tmp_path):
    cat = tmp_path / "cat"
    add(cat, av / "notes.jsonl", source="ehr", subject="patient_id")
    m = pd.read_parquet(av / "test.parquet")
    pd.DataFrame({"patient_id": ["P001", "P002"], "age": m["image"][:2]}).to_parquet(av / "bad.parquet")
    before = (cat / "manifest.json").read_bytes()
    with pytest.raises(CatalogError, match=r"source 'scanner', column 'age' \(e.g. row 0\): its cells are "
                                           r"image\+file .* source\(s\) 'ehr' registered 'age' as tabular/numeric"):
        add(cat, av / "bad.parquet", source="scanner", subject="patient_id")
    assert (cat / "manifest.json").read_bytes() == before


def test_missing_file_raises_or_is_counted(av, tmp_path):
    m = pd.read_parquet(av / "test.parquet").head(6)
    paths = list(m["image"])
    paths[3] = "images/not_there.png"
    pd.DataFrame({"pid": [f"S{i}" for i in range(6)], "image": paths}).to_parquet(av / "holes.parquet")
    cat = tmp_path / "cat"
    with pytest.raises(CatalogError, match=r"source 'scan', row 3, column 'image', file '.*not_there.png': the "
                                           r"file does not exist; .*--on-error missing"):
        add(cat, av / "holes.parquet", source="scan", subject="pid")
    out = add(cat, av / "holes.parquet", source="scan", subject="pid", on_error="missing")
    assert (out["records"], out["missing_files"], out["new_blobs"]) == (6, 1, 5)
    f = subject(cat, "S3")["records"][0]["files"][0]
    assert (f["status"], f["sha256"]) == ("missing", None) and "does not exist" in f["problem"]
    assert subject(cat, "S3")["modalities"]["image"] is False
    assert sources(cat)["missing_files"] == 1
    with View(cat) as v:
        assert list(select(v, has="image")["subject"]) == ["S0", "S1", "S2", "S4", "S5"]


def test_rows_without_subject_and_non_numbers(av, tmp_path):
    rows = [{"pid": "A", "age": 30}, {"pid": None, "age": 31}, {"pid": "C", "age": "old"}, {"pid": "D", "age": 33}]
    (av / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cat = tmp_path / "cat"
    with pytest.raises(CatalogError, match=r"source 'ehr', row 1, column 'pid': the subject id is missing"):
        add(cat, av / "t.jsonl", source="ehr", subject="pid")
    out = add(cat, av / "t.jsonl", source="ehr", subject="pid", on_error="missing")
    assert (out["records"], out["skipped_rows"], out["bad_values"]) == (3, 1, 1)
    assert subject(cat, "C")["records"][0]["values"] == {}
    rows[1]["pid"] = "B"
    (av / "t2.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(CatalogError, match=r"source 'ehr2', row 2, column 'age': 'old' is not a number"):
        add(cat, av / "t2.jsonl", source="ehr2", subject="pid")


def test_unreadable_table_and_bad_names(av, tmp_path):
    (av / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match="is not a Parquet file"):  # read_table's own check
        add(tmp_path / "cat", av / "broken.parquet", source="s", subject="pid")
    with pytest.raises(CatalogError, match="source name 'a b'"):
        add(tmp_path / "cat", av / "notes.jsonl", source="a b", subject="patient_id")
    pd.DataFrame({"pid": ["A"], "pm_x": [1]}).to_parquet(av / "r.parquet")
    with pytest.raises(CatalogError, match=r"source 's', column 'pm_x': names starting with 'pm_'"):
        add(tmp_path / "cat", av / "r.parquet", source="s", subject="pid")
    with pytest.raises(CatalogError, match="is not a catalogue"):
        sources(tmp_path / "nothing")


@pytest.mark.parametrize("where, message", [
    ("agee > 60", r"unknown column in --where 'agee'. Did you mean 'age'\?"),
    ("age > 60; DROP TABLE records", "not a valid condition"),
    ("(SELECT count(*) FROM records) > 0", "contains a subquery"),
    ("read_text('/etc/passwd') <> ''", "the function 'read_text' is not allowed"),
    ("1=1) UNION (SELECT 1 FROM subjects", "must be a condition only"),
    ("age > 'x'", "cannot be evaluated"),
    ("pm_from_0 IS NULL", "unknown column in --where 'pm_from_0'"),
])
def test_where_is_checked(av, tmp_path, where, message):
    cat = tmp_path / "cat"
    add(cat, av / "notes.jsonl", source="ehr", subject="patient_id")
    with View(cat) as v, pytest.raises(CatalogError, match=message):
        select(v, where=where)


def test_where_cannot_reach_files_even_unchecked(av, tmp_path):
    """The connection the condition runs on has file access off and its configuration locked."""
    cat = tmp_path / "cat"
    add(cat, av / "notes.jsonl", source="ehr", subject="patient_id")
    with View(cat) as v:
        for sql in (f"SELECT * FROM read_csv('{av / 'audio.csv'}')", "SET enable_external_access = true",
                    f"COPY subjects TO '{tmp_path / 'x.csv'}'"):
            with pytest.raises(Exception, match="disabled|Cannot change"):
                v.con.execute(sql)
    assert not (tmp_path / "x.csv").exists()
