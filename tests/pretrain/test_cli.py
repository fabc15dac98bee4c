"""``polymodal pretrain`` -> ``generate`` -> ``fit --init --freeze``: the real CLI on exported av-digits files."""

import json

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from polymodal.cli.app import app

runner = CliRunner()
SMALL = ["--dim", "16", "--epochs", "1", "--batch-size", "32"]


def test_pretrain_generate_and_probe(exported_av_digits, tmp_path):
    data = exported_av_digits(120)
    pre = tmp_path / "pre"
    res = runner.invoke(app, ["pretrain", str(data / "train.parquet"), "--out", str(pre), "--ignore", "digit",
                              "--mask-ratio", "0.6", "--budget", "image=20", "--hide-modality", "0.3", *SMALL])
    assert res.exit_code == 0, res.output
    assert "best validation loss" in res.output and "image=" in res.output and "audio=" in res.output
    cfg = json.loads((pre / "config.json").read_text())
    assert cfg["run_type"] == "pretrain" and cfg["pretrain"]["mask_ratio"] == 0.6
    assert cfg["pretrain"]["budget"] == {"image": 20} and cfg["pretrain"]["hide_modality"] == 0.3

    rows = pd.read_parquet(data / "test.parquet").head(3).drop(columns=["image", "digit"])
    rows["audio"] = [str(data / p) for p in rows["audio"]]  # the shared export stays untouched: absolute paths
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path)
    recon = tmp_path / "recon"
    res = runner.invoke(app, ["generate", str(pre), str(rows_path), "--target", "image", "--out", str(recon)])
    assert res.exit_code == 0, res.output
    index = pd.read_csv(recon / "index.csv")
    assert len(index) == 3 and Image.open(index["path"][0]).size == (28, 28)

    ft = tmp_path / "probe"
    res = runner.invoke(app, ["fit", str(data / "train.parquet"), "--label", "digit", "--out", str(ft),
                              "--init", str(pre), "--freeze", "encoders", *SMALL])
    assert res.exit_code == 0, res.output
    report = json.loads((ft / "report.json").read_text())
    assert report["init"]["frozen"] == ["encoders"] and report["init"]["fusion_loaded"]


def test_bad_flags_exit_2_with_a_message(exported_av_digits, tmp_path):
    data = exported_av_digits(120)
    res = runner.invoke(app, ["pretrain", str(data / "train.parquet"), "--out", str(tmp_path / "p"),
                              "--budget", "image=lots"])
    assert res.exit_code == 2 and "--budget expects modality=tokens" in res.output
    res = runner.invoke(app, ["generate", str(tmp_path / "none"), str(data / "test.parquet"), "--target", "image",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "not a run folder" in res.output
