"""Token budgets end to end: the Python API (``with_token_budget``, ``fit(tokens=...)``, save / load) and the
CLI (``fit`` / ``evaluate --token-budget``, ``bench tokens``: ``cli/tokens.py``) on a small slice of av-digits."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from polymodal.cli.app import app
from polymodal.datasets import load_av_digits
from polymodal.recipes.fit import fit
from polymodal.recipes.loading import load

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(exported_av_digits):
    return exported_av_digits(60)


@pytest.fixture(scope="module")
def trained():
    train, test = load_av_digits("train", limit=60), load_av_digits("test", limit=30)
    model = fit(train, "digit", epochs=1, dim=32, progress=False)
    return model, test


def _logits(model, test):
    from polymodal.data.decode import decode
    from polymodal.evaluate.scoring import outputs

    _, ds, _ = decode(model.schema, test, progress=False)
    return outputs(model, ds)


def test_with_token_budget_returns_a_copy_and_leaves_the_original_alone(trained, tmp_path):
    model, test = trained
    before = _logits(model, test)
    half = model.with_token_budget(0.5, reducer="merge")
    assert half is not model and half.cfg.tokens.budget == 0.5 and model.cfg.tokens.budget == 1.0
    assert half.net.encoders["image"].token_state is not None and model.net.encoders["image"].token_state is None
    out = _logits(half, test)
    assert torch.isfinite(out).all() and not torch.equal(out, before)
    assert torch.equal(_logits(model, test), before)
    assert torch.equal(_logits(model.with_token_budget(1.0), test), before)  # exact no-op
    # the budget travels with a saved run; old runs (no token fields) load with the defaults
    half.save(tmp_path / "half")
    again = load(tmp_path / "half")
    assert again.cfg.tokens.budget == 0.5 and torch.equal(_logits(again, test), out)
    cfg = json.loads((tmp_path / "half" / "config.json").read_text())
    cfg["model"].pop("tokens")
    (tmp_path / "half" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "half" / "manifest.json").unlink()  # an older run folder: no manifest, loaded unchecked
    assert torch.equal(_logits(load(tmp_path / "half"), test), before)


def test_per_modality_budget_and_bad_values(trained):
    model, test = trained
    m = model.with_token_budget({"image": 0.25}, reducer="pool")
    assert torch.isfinite(_logits(m, test)).all()
    with pytest.raises(ValueError, match="unknown modalities"):
        model.with_token_budget({"video": 0.5})
    with pytest.raises((ValueError, KeyError), match="reducer"):  # UnknownNameError is a KeyError
        model.with_token_budget(0.5, reducer="magic")


def test_fit_with_random_pool_budgets():
    train = load_av_digits("train", limit=40)
    model = fit(train, "digit", epochs=1, dim=32, progress=False,
                tokens={"reducer": "pool", "train_budgets": [1.0, 0.5, 0.25]})
    assert tuple(model.cfg.tokens.train_budgets) == (1.0, 0.5, 0.25)
    assert model.net.token_state is not None and model.net.token_state.sampled in (1.0, 0.5, 0.25)


def test_cli_fit_evaluate_and_bench_tokens(exported, tmp_path):
    run = tmp_path / "m"
    res = runner.invoke(app, ["fit", str(exported / "train.parquet"), "--label", "digit", "--out", str(run),
                              "--epochs", "1", "--dim", "32", "--token-budget", "0.5", "--reducer", "merge"])
    assert res.exit_code == 0, res.output
    tokens = json.loads((run / "config.json").read_text())["model"]["tokens"]
    assert tokens["budget"] == 0.5 and tokens["reducer"] in ("merge", {"name": "merge", "options": {}})
    res = runner.invoke(app, ["evaluate", str(run), str(exported / "test.parquet"), "--token-budget",
                              "image=0.25,audio=0.5", "--reducer", "prune", "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert "accuracy" in json.loads((tmp_path / "e.json").read_text())["metrics"]
    res = runner.invoke(app, ["evaluate", str(run), str(exported / "test.parquet"), "--token-budget", "lots"])
    assert res.exit_code == 2 and "--token-budget expects" in res.stderr
    res = runner.invoke(app, ["evaluate", str(run), str(exported / "test.parquet"), "--token-budget", "video=0.5"])
    assert res.exit_code == 2 and "video" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["bench", "tokens", str(run), str(exported / "test.parquet"), "--budgets", "1,0.5",
                              "--reducers", "merge,pool", "--reps", "1", "--batch-size", "16",
                              "--out", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "b.json").read_text())
    assert set(out["curve"]) == {"merge", "pool"} and set(out["curve"]["merge"]) == {"1.0", "0.5"}
    row = out["curve"]["merge"]["0.5"]
    assert row["flops_ratio"] > 1.05 and row["tokens"] < out["tokens_full"]
    assert out["curve"]["pool"]["1.0"]["flops_ratio"] == 1.0
    assert "throughput" in res.output


def test_list_reducers():
    res = runner.invoke(app, ["list", "reducers"])
    assert res.exit_code == 0 and all(r in res.output for r in ("merge", "prune", "pool", "zip"))
