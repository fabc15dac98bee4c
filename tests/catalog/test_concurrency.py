"""Two ``add`` processes at once both commit; an ``add`` killed before its commit leaves the catalogue as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from polymodal.catalog import View, add, sources

REPO = Path(__file__).resolve().parents[2]

ADD = """
import sys
from polymodal.catalog import add
add(sys.argv[1], sys.argv[2], source=sys.argv[3], subject=sys.argv[4])
"""

# the same add, but it signals and then blocks right before the commit (the rename of manifest.json): killed there,
# every new file of the batch is on disk and the manifest is still the old one -- the worst moment to die
ADD_AND_HANG = """
import sys, time
import polymodal.catalog.ingest as ingest
def hang(root, manifest):
    open(sys.argv[5], "w").close()
    time.sleep(600)
ingest.commit = hang
ingest.add(sys.argv[1], sys.argv[2], source=sys.argv[3], subject=sys.argv[4])
"""


def _spawn(code: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_processes_add_at_once(av, tmp_path):
    cat = tmp_path / "cat"
    procs = [_spawn(ADD, cat, av / "images.parquet", "scanner_a", "patient_id"),
             _spawn(ADD, cat, av / "notes.jsonl", "ehr", "patient_id")]
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
    info = sources(cat)
    assert info["version"] == 2 and sorted(s["name"] for s in info["sources"]) == ["ehr", "scanner_a"]
    assert info["records"] == 48 and info["blobs"] == 24
    assert sorted(p.name for p in (cat / "records").iterdir()) == sorted(
        Path(f).name for f in [b["files"]["records"] for b in View(cat).manifest["batches"]])


def test_add_killed_before_its_commit_leaves_the_catalogue_as_it_was(av, tmp_path):
    cat = tmp_path / "cat"
    add(cat, av / "notes.jsonl", source="ehr", subject="patient_id")
    manifest = (cat / "manifest.json").read_bytes()
    flag = tmp_path / "about-to-commit"
    p = _spawn(ADD_AND_HANG, cat, av / "images.parquet", "scanner_a", "patient_id", flag)
    deadline = time.monotonic() + 240
    while not flag.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline, "the add never reached its commit"
        time.sleep(0.1)
    assert len(list((cat / "files").rglob("*.png"))) == 24  # the batch's files are all written...
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert (cat / "manifest.json").read_bytes() == manifest  # ...and the committed state is untouched
    info = sources(cat)
    assert (info["version"], info["records"], [s["name"] for s in info["sources"]]) == (1, 24, ["ehr"])
    with View(cat) as v:
        assert v.con.execute("SELECT count(*) FROM refs").fetchone()[0] == 0
    # the next writer removes what the killed one left and commits normally (the lock died with its holder)
    again = add(cat, av / "images.parquet", source="scanner_a", subject="patient_id")
    assert again["version"] == 2 and again["new_blobs"] == 24
    committed = {Path(b["files"][k]).name for b in View(cat).manifest["batches"] for k in ("records", "refs")
                 if b["files"][k]}
    assert {p.name for d in ("records", "refs") for p in (cat / d).iterdir()} == committed
    assert len(pd.read_parquet(cat / "records")) == 48
    assert len([p for p in (cat / "files").rglob("*") if p.is_file()]) == sources(cat)["blobs"] == 24
