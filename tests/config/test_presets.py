"""``config/presets.py``: the shipped presets, the precedence of layers, presets of your own."""

import json

import pytest

import polymodal as pm
from polymodal.config import presets
from polymodal.config.model import ConfigError, ModelConfig, TrainConfig
from polymodal.config.presets import add_preset, list_presets, load_preset, preset_files, resolve
from polymodal.registry import Component
from tests.xor_data import GROUPS, xor_table


def test_every_shipped_preset_loads_and_builds_a_valid_config():
    names = list_presets()
    assert {"default", "fast", "best", "pretrained"} <= set(names)
    for name, description in names.items():
        assert description, f"preset {name!r} has no first comment line describing it"
        assert load_preset(name), f"preset {name!r} is empty"
        m, t = resolve(preset=name)
        assert isinstance(m, ModelConfig) and isinstance(t, TrainConfig)
        m.validate(), t.validate()


def test_default_preset_spells_out_the_library_defaults():
    assert resolve(preset="default") == resolve()
    m, t = resolve(preset="fast")
    assert (m.dim, m.fusion, t.epochs) == (32, Component("late"), 10)


def test_precedence_preset_then_config_file_then_keywords(tmp_path):
    """defaults < preset < config file < keyword options, read back from the saved run's config.json."""
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("model:\n  dim: 16\ntrain:\n  patience: 2\n  epochs: 5\n")
    pm.fit(xor_table(24), "y", groups=GROUPS, preset="fast", config=cfg_file, epochs=1, batch_size=8,
           progress=False, out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    model, train = saved["model"], saved["train"]
    assert model["dim"] == 16  # config file over preset (32)
    assert model["fusion"] == {"name": "late", "options": {}}  # preset over the library default (transformer)
    assert train["patience"] == 2  # config file over preset (4)
    assert train["epochs"] == 1  # keyword over config file (5) over preset (10)
    assert train["batch_size"] == 8 and train["lr"] == TrainConfig().lr  # untouched fields keep the defaults
    assert saved["run_type"] == "model"


def test_resolve_layers_a_config_dict_and_renames_components():
    m, _ = resolve({"fusion": "concat"}, preset="best", config={"model": {"dim": 48}})
    assert m.dim == 48
    assert m.fusion == Component("concat")  # best's transformer options do not leak into concat
    m, _ = resolve({"fusion": {"options": {"heads": 2}}}, preset="best")
    assert m.fusion == Component("transformer", {"layers": 3, "heads": 2})


def test_add_preset_registers_a_file_of_your_own(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "_EXTRA", {})
    f = tmp_path / "tiny.yaml"
    f.write_text("# Tiny nets for smoke tests\ndim: 8\nfusion: {name: transformer, options: {layers: 1}}\nepochs: 1\n")
    assert add_preset(f) == "tiny"
    assert list_presets()["tiny"] == "Tiny nets for smoke tests"
    m, t = resolve(preset="tiny")
    assert (m.dim, m.fusion, t.epochs) == (8, Component("transformer", {"layers": 1}), 1)
    assert add_preset(f, name="smoke") == "smoke" and "smoke" in preset_files()
    bad = tmp_path / "bad.yaml"
    bad.write_text("dim: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        add_preset(bad)


def test_a_preset_with_an_unknown_option_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "_EXTRA", {})
    f = tmp_path / "typo.yaml"
    f.write_text("dimm: 8\n")
    add_preset(f)
    with pytest.raises(ConfigError, match=r"'dimm'\. Did you mean 'dim'\?"):
        resolve(preset="typo")


def test_unknown_preset_says_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown preset 'fsat'\. Did you mean 'fast'\?.*Valid: best, default"):
        resolve(preset="fsat")
    with pytest.raises(ConfigError, match="unknown preset"):
        pm.fit(xor_table(12), "y", preset="fastest", progress=False)
