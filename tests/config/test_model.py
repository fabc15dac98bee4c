import json

import pytest

from polymodal.config import ConfigError, ModelConfig, TrainConfig, dump, from_dict, split_options


def test_split_options_routes_keys():
    m, t = split_options({"dim": 32, "epochs": 3, "fusion": "late", "seed": 7})
    assert (m.dim, m.fusion, t.epochs, t.seed) == (32, "late", 3, 7)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown option.*'epoch'.*training options"):
        split_options({"epoch": 3})


@pytest.mark.parametrize(
    "cls,kw,msg",
    [
        (ModelConfig, {"dim": 30}, "multiple of 4"),
        (ModelConfig, {"modality_dropout": 1.0}, r"\[0, 1\)"),
        (TrainConfig, {"epochs": 0}, "epochs"),
        (TrainConfig, {"on_error": "skip"}, "on_error"),
    ],
)
def test_validation_messages(cls, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(cls, kw)


def test_dump_round_trip():
    m, t = ModelConfig(dim=16, fusion_options={"layers": 1}), TrainConfig(epochs=2)
    d = json.loads(dump(m, t))
    assert from_dict(ModelConfig, d["model"]) == m
    assert from_dict(TrainConfig, d["train"]) == t
