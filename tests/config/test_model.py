"""``config/model.py``: the dataclasses' validation, and their routing / JSON form through ``config/io.py``."""

import json

import pytest

from polymodal.config.io import build, dump, from_dict
from polymodal.config.model import AlignSpec, ConfigError, ModelConfig, TrainConfig, check_on_error
from polymodal.registry import Component


def test_build_routes_flat_keys_to_model_and_train():
    m, t = build({"dim": 32, "epochs": 3, "fusion": "late", "seed": 7})
    assert (m.dim, m.fusion, t.epochs, t.seed) == (32, Component("late"), 3, 7)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown option 'epoch'\. Did you mean 'epochs'\?.*Valid:.*patience"):
        build({"epoch": 3})


@pytest.mark.parametrize(
    "cls,kw,msg",
    [
        (ModelConfig, {"dim": 30}, "multiple of 4"),
        (ModelConfig, {"modality_dropout": 1.0}, r"\[0, 1\)"),
        (ModelConfig, {"fusion": None}, "alignment net"),
        (ModelConfig, {"align": {"embed_dim": 0}}, "embed_dim"),
        (ModelConfig, {"align": {"projection": "conv"}}, "projection"),
        (TrainConfig, {"epochs": 0}, "epochs"),
        (TrainConfig, {"val_fraction": 0.95}, "val_fraction"),
    ],
)
def test_validation_messages(cls, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(cls, kw)


def test_on_error_is_a_recipe_argument_not_a_train_field():
    assert check_on_error("missing") == "missing"
    with pytest.raises(ConfigError, match="on_error"):
        check_on_error("skip")
    with pytest.raises(ConfigError, match="unknown TrainConfig option 'on_error'"):
        from_dict(TrainConfig, {"on_error": "raise"}, "TrainConfig")


def test_alignment_config_is_a_model_config_without_fusion():
    cfg = ModelConfig(fusion=None, align=AlignSpec(Component("siglip"), embed_dim=8))
    cfg.validate()
    assert cfg.is_alignment and not ModelConfig().is_alignment


def test_dump_round_trip_through_json():
    m = ModelConfig(dim=16, fusion=Component("transformer", {"layers": 1}))
    t = TrainConfig(epochs=2)
    d = json.loads(json.dumps(dump(m, t, run_type="model")))
    assert d["run_type"] == "model"
    assert from_dict(ModelConfig, d["model"]) == m
    assert from_dict(TrainConfig, d["train"]) == t


def test_unknown_component_name_fails_before_any_table_is_read():
    from polymodal.errors import PolymodalError

    with pytest.raises(PolymodalError, match=r"unknown fusion 'lat'.*Did you mean 'late'"):
        build({"fusion": "lat"})
    with pytest.raises(PolymodalError, match="unknown encoder 'nope'"):
        build({"encoders": {"image": "nope"}})
    with pytest.raises(PolymodalError, match="unknown (alignment )?objective 'nope'"):
        build({"align": "nope"})
    with pytest.raises(PolymodalError, match="unknown head 'clasify'.*Did you mean 'classify'"):
        build({"head": "clasify"})
