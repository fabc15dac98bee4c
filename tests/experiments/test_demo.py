"""`polymodal demo --quick`: the main job's code path on a subset, checked for the table it must write."""

import json

from typer.testing import CliRunner

from polymodal.cli.app import app


def test_demo_quick_writes_results(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == {"image only", "audio only", "late fusion", "concat fusion", "transformer fusion"}
    for name, r in results["models"].items():
        assert 0.0 <= r["acc"] <= 1.0 and r["params"] > 0
        if "fusion" in name:
            assert {"image_only", "audio_only"} <= set(r)
    md = (tmp_path / "results.md").read_text()
    assert "| transformer fusion |" in md and "image removed" in md
    assert "transformer fusion vs best unimodal model" in res.output
