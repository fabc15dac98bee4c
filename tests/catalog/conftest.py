"""Fixtures of the catalogue tests: a small slice of the bundled av-digits, exported as PNG / WAV files with
Parquet manifests (``export_av_digits``), re-arranged as three sources about the same patients."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from polymodal.datasets import export_av_digits

N = 24  # av-digits test rows exported (each a PNG and a WAV)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="session")
def av_dir(tmp_path_factory) -> Path:
    """``av/``: images/, audio/, test.parquet (24 rows of av-digits) plus three source tables about patients
    P000..P023: ``images.parquet`` (scanner_a: image, site), ``notes.jsonl`` (ehr: note, age, outcome = the
    digit) and ``audio.csv`` (lab: audio, every other patient)."""
    d = tmp_path_factory.mktemp("av")
    export_av_digits(d, splits=("test",), limit=N, progress=False)
    m = pd.read_parquet(d / "test.parquet")
    ids = [f"P{i:03d}" for i in range(len(m))]
    pd.DataFrame({"patient_id": ids, "image": m["image"], "site": ["a" if i % 3 else "b" for i in range(len(m))]}
                 ).to_parquet(d / "images.parquet")
    with open(d / "notes.jsonl", "w") as f:
        for i, digit in enumerate(m["digit"]):
            f.write(json.dumps({"patient_id": ids[i], "note": f"the patient said {WORDS[digit]} twice",
                                "age": 40 + i, "outcome": int(digit)}) + "\n")
    pd.DataFrame({"patient_id": ids[::2], "audio": m["audio"][::2]}).to_csv(d / "audio.csv", index=False)
    return d


@pytest.fixture()
def av(av_dir, tmp_path) -> Path:
    """A private copy of ``av_dir`` (tests may add files next to it)."""
    dest = tmp_path / "av"
    shutil.copytree(av_dir, dest)
    return dest
