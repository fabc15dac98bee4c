"""``add``: schema per source, provenance per record, de-duplication by content across sources."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from polymodal import __version__
from polymodal.catalog import View, add, sources, subject


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sources_schema_and_provenance(av, tmp_path):
    cat = tmp_path / "cat"
    a = add(cat, av / "images.parquet", source="scanner_a", subject="patient_id")
    add(cat, av / "notes.jsonl", source="ehr", subject="patient_id")
    add(cat, av / "audio.csv", source="lab", subject="patient_id")
    info = sources(cat)
    assert info["version"] == 3 and info["records"] == 24 + 24 + 12 and info["subjects"] == 24
    cols = {s["name"]: s["columns"] for s in info["sources"]}
    assert cols["scanner_a"] == {"image": "image file", "site": "tabular (categorical)"}
    assert cols["ehr"] == {"note": "text", "age": "tabular (numeric)", "outcome": "tabular (numeric)"}
    assert cols["lab"] == {"audio": "audio file"}
    assert a["new_blobs"] == 24 and a["files_hashed"] == 24

    shown = subject(cat, "P004")
    assert [r["source"] for r in shown["records"]] == ["scanner_a", "ehr", "lab"]
    assert shown["modalities"] == {"image": True, "tabular": True, "text": True, "audio": True}
    img, note, wav = shown["records"]
    manifest = pd.read_parquet(av / "test.parquet")
    assert img["table"] == str((av / "images.parquet").resolve()) and img["row"] == 4
    assert img["polymodal_version"] == __version__ and img["added_at"].endswith("Z")
    f = img["files"][0]
    assert f["path"] == manifest["image"][4] and f["sha256"] == _sha(av / manifest["image"][4])
    assert (cat / f["stored"]).read_bytes() == (av / manifest["image"][4]).read_bytes()
    assert note["values"] == {"note": note["values"]["note"], "age": 44, "outcome": int(manifest["digit"][4])}
    assert wav["row"] == 2 and wav["files"][0]["sha256"] == _sha(av / manifest["audio"][4])
    assert subject(cat, "P005")["modalities"]["audio"] is False  # lab has every other patient only


def test_same_content_is_stored_once_with_every_origin(av, tmp_path):
    cat = tmp_path / "cat"
    add(cat, av / "images.parquet", source="scanner_a", subject="patient_id")
    # scanner_b: byte-identical copies of the images in another folder, for other subject ids, plus one file
    # that differs from its original by one byte (must not merge)
    other = av / "copies"
    other.mkdir()
    m = pd.read_parquet(av / "images.parquet")
    paths = []
    for i, p in enumerate(m["image"]):
        dest = other / f"scan_{i}.png"
        shutil.copyfile(av / p, dest)
        paths.append(f"copies/scan_{i}.png")
    data = bytearray((other / "scan_0.png").read_bytes())
    data[-1] ^= 1
    (other / "scan_0.png").write_bytes(bytes(data))
    pd.DataFrame({"pid": [f"Q{i}" for i in range(len(paths))], "image": paths}).to_parquet(av / "b.parquet")
    b = add(cat, av / "b.parquet", source="scanner_b", subject="pid")
    assert b["new_blobs"] == 1 and b["duplicate_refs"] == len(paths) - 1
    with View(cat) as v:
        n_blobs, n_refs = v.con.execute("SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM refs)").fetchone()
        # every blob's bytes equal every file that refers to it (no false merge), checked outside the catalogue
        for sha, stored, resolved in v.con.execute(
                "SELECT b.sha256, b.stored, r.resolved FROM refs r JOIN blobs b USING (sha256)").fetchall():
            assert _sha(cat / stored) == sha == hashlib.sha256(open(resolved, "rb").read()).hexdigest()
    assert (n_blobs, n_refs) == (len(paths) + 1, 2 * len(paths))
    stored_files = [p for p in (cat / "files").rglob("*") if p.is_file()]
    assert len(stored_files) == n_blobs
    q3 = subject(cat, "Q3")["records"][0]["files"][0]
    assert [(o["source"], o["subject"], o["row"]) for o in q3["origins"]] == [("scanner_a", "P003", 3)]
    assert subject(cat, "Q0")["records"][0]["files"][0]["origins"] == []  # the one-byte-different file


def test_adding_the_same_table_again_changes_nothing(av, tmp_path):
    cat = tmp_path / "cat"
    add(cat, av / "images.parquet", source="scanner_a", subject="patient_id")
    before = (cat / "manifest.json").read_bytes()
    again = add(cat, av / "images.parquet", source="scanner_a", subject="patient_id")
    assert again["unchanged"] and again["records"] == 0
    assert (cat / "manifest.json").read_bytes() == before
    # the same table as another source: new records, no new file (hashes come from the catalogue's cache)
    other = add(cat, av / "images.parquet", source="scanner_b", subject="patient_id")
    assert other["records"] == 24 and other["new_blobs"] == 0 and other["files_hashed"] == 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_and_integer_subjects(av, tmp_path, fmt):
    m = pd.read_parquet(av / "test.parquet").head(5)
    frame = pd.DataFrame({"id": range(100, 105), "image": m["image"], "score": [1.5, 2.5, None, 4.0, 5.0]})
    path = av / f"t.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_json(path, orient="records", lines=True)
    cat = tmp_path / "cat"
    assert add(cat, path, source="s", subject="id")["records"] == 5
    rec = subject(cat, "102")["records"][0]
    assert rec["row"] == 2 and "score" not in rec["values"] and rec["files"][0]["status"] == "ok"
