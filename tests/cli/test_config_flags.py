"""``--preset`` / ``--config`` / explicit flags / ``--set`` on ``fit`` and ``align``: precedence, checked on the
saved run's ``config.json`` (preset < --config < flags < --set), and bad keys failing fast with a did-you-mean."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app
from tests.cli.helpers import GROUP_FLAG, TINY

runner = CliRunner()


def _fit(tiny_csv, out, *extra: str):
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "config.json").read_text())


def test_each_layer_overrides_the_one_below(tiny_csv, tmp_path):
    # preset "best": dim 96, transformer with 3 layers, 80 epochs, patience 12, lr 1e-3
    (tmp_path / "run.yaml").write_text("model:\n  dim: 32\n  fusion: {name: transformer, options: {layers: 2}}\n"
                                       "train:\n  epochs: 3\n  patience: 2\n  lr: 0.004\n")
    cfg = _fit(tiny_csv, tmp_path / "r", "--preset", "best", "--config", str(tmp_path / "run.yaml"),
               "--group", GROUP_FLAG, "--epochs", "2", "--dim", "16", "--batch-size", "32",
               "--set", "epochs=1", "--set", "fusion.options.layers=1", "--set", "train.seed=3")
    model, train = cfg["model"], cfg["train"]
    assert model["dim"] == 16  # flag over --config over preset
    assert model["fusion"] == {"name": "transformer", "options": {"layers": 1}}  # --set over --config over preset
    assert train["epochs"] == 1  # --set over the flag
    assert train["patience"] == 2 and train["lr"] == 0.004  # --config over preset
    assert train["seed"] == 3 and train["batch_size"] == 32


def test_preset_alone_and_flags_left_unset_keep_it(tiny_csv, tmp_path):
    # preset "fast": dim 32, late fusion, 10 epochs, patience 4; only --epochs is given on top
    cfg = _fit(tiny_csv, tmp_path / "r", "--preset", "fast", "--group", GROUP_FLAG, "--epochs", "1")
    assert cfg["model"]["dim"] == 32 and cfg["model"]["fusion"]["name"] == "late"
    assert cfg["train"]["patience"] == 4 and cfg["train"]["epochs"] == 1
    assert cfg["model"]["modality_dropout"] == 0.5 and cfg["train"]["lr"] == 0.002  # library defaults


def test_flag_renaming_a_component_drops_the_old_ones_options(tiny_csv, tmp_path):
    cfg = _fit(tiny_csv, tmp_path / "r", "--preset", "best", "--fusion", "late", *TINY,
               "--set", "tokens.budget=1.0", "--set", "head.name=classify", "--set", "head.options.dropout=0.2")
    assert cfg["model"]["fusion"] == {"name": "late", "options": {}}
    assert cfg["model"]["head"] == {"name": "classify", "options": {"dropout": 0.2}}


@pytest.mark.parametrize("args, expected", [
    (["--set", "fusoin=late"], ["unknown option 'fusoin'", "Did you mean 'fusion'?"]),
    (["--set", "train.epochz=2"], ["'epochz'", "Did you mean 'epochs'?"]),
    (["--set", "epochs"], ["--set expects key.path=value"]),
    (["--set", "head.name=clasify"], ["unknown head 'clasify'", "Did you mean 'classify'?"]),
    (["--preset", "fats"], ["unknown preset 'fats'", "Did you mean 'fast'?"]),
    (["--config", "missing.yaml"], ["cannot read config file", "missing.yaml"]),
    (["--set", "epochs=0"], ["epochs must be >= 1"]),
])
def test_bad_config_fails_fast_on_stderr(tiny_csv, tmp_path, monkeypatch, args, expected):
    import polymodal.recipes.fit as recipe

    monkeypatch.setattr(recipe, "prepare", lambda *a, **k: pytest.fail("the table was read"))
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.stderr.split())
    assert msg.startswith("error:") and all(e in msg for e in expected), msg
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


def test_align_takes_the_objective_from_the_layers(tiny_csv, tmp_path):
    (tmp_path / "a.yaml").write_text("align: {objective: siglip, embed_dim: 8}\nepochs: 1\ndim: 16\n")
    out = tmp_path / "emb"
    res = runner.invoke(app, ["align", str(tiny_csv / "train.csv"), "--group", GROUP_FLAG, "--label", "y",
                              "--config", str(tmp_path / "a.yaml"), "--set", "align.uniformity_weight=0.1",
                              "--batch-size", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run_type"] == "align" and cfg["model"]["fusion"] is None
    spec = cfg["model"]["align"]
    assert spec["objective"]["name"] == "siglip" and spec["embed_dim"] == 8 and spec["uniformity_weight"] == 0.1
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["batch_size"] == 32


@pytest.mark.parametrize("key, close", [("align.embed_dimm", "embed_dim"), ("epochz", "epochs")])
def test_align_bad_set_key(tiny_csv, tmp_path, key, close):
    res = runner.invoke(app, ["align", str(tiny_csv / "train.csv"), "--group", GROUP_FLAG, "--set", f"{key}=8",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and f"Did you mean {close!r}?" in res.stderr
