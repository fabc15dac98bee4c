"""The report without a browser: reports written next to every command's outputs, user strings escaped, the size
budget enforced, bad sources refused with a clear message."""

from __future__ import annotations

import json

import pytest

from polymodal.errors import PolymodalError
from polymodal.report import build_report, write_report
from polymodal.report.sources import Found, RunData, read_source
from tests.report.conftest import runner
from polymodal.cli.app import app


def test_every_command_writes_its_report_next_to_its_outputs(demo):
    late, align = demo["late"], demo["align"]
    for page in (late / "report.html", late / "eval.html", late / "robustness" / "report.html",
                 late / "tokens.html", align / "report.html", align / "eval.html", demo["cmp"] / "report.html"):
        text = page.read_text()
        assert text.startswith("<!DOCTYPE html>") and "polymodal report" in text, page
    assert 'data-section="noise"' in (late / "robustness" / "report.html").read_text()
    assert 'data-section="tokens"' in (late / "tokens.html").read_text()
    assert 'data-section="examples"' in (late / "eval.html").read_text()  # evaluate passes its table
    assert 'data-section="retrieval"' in (align / "eval.html").read_text()


HOSTILE = '<img src=x onerror="alert(1)">&"\'<script>alert(2)</script>'


def test_user_strings_are_escaped(tmp_path):
    """Column names, class labels and decode problems are user data: none reaches the page as markup."""
    ev = {"metrics": {"n": 2, "accuracy": 0.5, "confusion_matrix": [[1, 0], [1, 0]]},
          "subsets": {HOSTILE: {"n": 2, "accuracy": 0.5}},
          "decode_report": {"errors": {HOSTILE: 1}, "causes": {HOSTILE: 1}, "missing": {}, "dropped_rows": {},
                            "examples": [{"row": 0, "column": HOSTILE, "file": HOSTILE, "cause": "bad value",
                                          "problem": HOSTILE}]}}
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    run = read_source(tmp_path / "eval.json")
    run.name = HOSTILE
    text = build_report([run], tmp_path / "r.html").read_text()
    assert "<script>alert" not in text and "<img src=x" not in text and 'onerror="alert' not in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "<script" not in text.lower()  # the page itself has no script at all


def _media_run(tmp_path, n_rows: int) -> RunData:
    from polymodal.report.media import audio_clip, thumbnail
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [{"row": i, "inputs": {"image": {"image": thumbnail(rng.random((3, 224, 224)))},
                                  "audio": dict(zip(("audio", "seconds"),
                                                    audio_clip(rng.standard_normal(16000 * 5), 16000 * 5, 16000)))},
             "label": 1, "prediction": 1, "probability": 0.9, "contribution": {"image": 0.1, "audio": 0.2}}
            for i in range(n_rows)]
    ev = {"metrics": {"n": 1, "accuracy": 1.0}}
    run = RunData("media", tmp_path, found=[Found("evaluation", "eval.json", ev)])
    run.examples = {"predictions": {"kind": "predictions", "method": "shapley", "modalities": ["image", "audio"],
                                    "rows": rows, "mean_abs": {"image": 0.1, "audio": 0.2}, "n_attribution": n_rows}}
    return run


def test_media_stay_within_their_limits_and_the_page_within_its_budget(tmp_path):
    import base64
    import io
    import wave

    from PIL import Image

    run = _media_run(tmp_path, 40)
    item = run.examples["predictions"]["rows"][0]["inputs"]
    png = base64.b64decode(item["image"]["image"].split(",", 1)[1])
    assert max(Image.open(io.BytesIO(png)).size) == 64  # 224 px downsized to the 64 px limit
    with wave.open(io.BytesIO(base64.b64decode(item["audio"]["audio"].split(",", 1)[1]))) as w:
        assert w.getframerate() == 8000 and w.getnframes() == 16000  # 5 s at 16 kHz -> 2 s at 8 kHz
    # 40 rows of media are ~2 MB: under a 1 MB budget they are left out, with a note saying so
    text = build_report([run], tmp_path / "small.html", max_mb=1.0).read_text()
    assert len(text.encode()) <= 2**20 and 'data-section="examples"' not in text
    assert "predictions examples left out" in text
    full = build_report([_media_run(tmp_path, 40)], tmp_path / "full.html").read_text()
    assert 'data-section="examples"' in full and len(full.encode()) <= 5 * 2**20
    with pytest.raises(PolymodalError, match="over the 0.001 MB size budget"):
        build_report([_media_run(tmp_path, 1)], tmp_path / "tiny.html", max_mb=0.001)


def test_bad_sources_are_refused_with_a_clear_message(tmp_path):
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "nope", "does not exist"), (tmp_path / "other.json", "not a result file"),
                          (tmp_path / "broken.json", "cannot read"), (tmp_path / "empty", "holds no run")):
        with pytest.raises(PolymodalError, match=message):
            write_report(path, tmp_path / "r.html")
        res = runner.invoke(app, ["report", str(path), "--out", str(tmp_path / "r.html")])
        assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "r.html").exists()


def test_results_older_than_the_run_are_not_shown_as_its_own(demo, tmp_path):
    """``fit --overwrite`` carries the earlier model's eval.json into the new run folder: not this model's numbers."""
    import os
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo["transformer"], run)
    saved = (run / "manifest.json").stat().st_mtime
    os.utime(run / "eval.json", (saved - 60, saved - 60))
    text = write_report(run, tmp_path / "r.html").read_text()
    assert 'data-section="metrics"' not in text and "eval.json: older than the run" in text
    assert 'data-section="training"' in text
