"""``config/io.py``: dataclasses <-> JSON, shorthands, unknown keys, layered merge, ``--set`` parsing, files."""

import json

import pytest

from polymodal.config.io import build, dump, from_dict, merge, parse_sets, read_file, to_dict
from polymodal.config.model import AlignSpec, ConfigError, ModelConfig, TrainConfig
from polymodal.registry import Component
from polymodal.tokens.spec import TokenBudget


def full_config() -> ModelConfig:
    return ModelConfig(
        dim=32,
        encoders={"image": Component("image_conv", {"width": 8}),
                  "notes": Component("text_transformer", {"layers": 1})},
        fusion=Component("transformer", {"layers": 2, "heads": 4}),
        head=Component("classify", {"dropout": 0.2}),
        modality_dropout=0.25,
        aux_weight=0.5,
        align=AlignSpec(Component("siglip", {"init_logit_bias": -5.0}), embed_dim=16, projection="linear", weight=0.3,
                        uniformity_weight=0.1),
        tokens=TokenBudget({"image": 0.5, "audio": 0.25}, Component("zip", {"context": 0.2}), schedule=(0.5, 1.0),
                           where="fusion", train_budgets=(0.25, 1.0)),
    )


def test_full_model_config_round_trips_through_json():
    cfg = full_config()
    text = json.dumps(to_dict(cfg))  # plain JSON types only
    back = from_dict(ModelConfig, json.loads(text))
    assert back == cfg
    assert isinstance(back.align, AlignSpec) and isinstance(back.tokens, TokenBudget)
    assert back.tokens.reducer == Component("zip", {"context": 0.2})
    assert back.tokens.schedule == (0.5, 1.0) and back.tokens.train_budgets == (0.25, 1.0)
    assert back.encoders["image"].options == {"width": 8}
    # and the run-level form (dump) goes back through build
    d = json.loads(json.dumps(dump(cfg, TrainConfig(epochs=3, lr=1e-3))))
    m, t = build({**d["model"], **d["train"]})
    assert m == cfg and (t.epochs, t.lr) == (3, 1e-3)


def test_component_json_form():
    assert to_dict(Component("late")) == {"name": "late", "options": {}}
    assert to_dict(ModelConfig().fusion) == {"name": "transformer", "options": {}}
    assert to_dict(ModelConfig(head=None))["head"] is None


def test_shorthands():
    m = from_dict(ModelConfig, {"fusion": "late", "align": "siglip", "tokens": 0.5,
                                "encoders": {"text": "text_transformer"}})
    assert m.fusion == Component("late")
    assert m.align == AlignSpec(objective=Component("siglip"))
    assert m.tokens == TokenBudget(budget=0.5)
    assert m.encoders == {"text": Component("text_transformer")}
    prune = {"name": "prune", "options": {"prop_attn": True}}
    m = from_dict(ModelConfig, {"tokens": {"budget": 0.5, "reducer": prune}})
    assert m.tokens.reducer == Component("prune", {"prop_attn": True}) and m.tokens.use_prop_attn


@pytest.mark.parametrize(
    "data,match",
    [
        ({"fusoin": "late"}, r"unknown option 'fusoin'\. Did you mean 'fusion'\?"),
        ({"align": {"objective": "clip", "embed_dims": 8}}, r"'embed_dims'\. Did you mean 'embed_dim'\?"),
        ({"tokens": {"budget": 0.5, "reduce": "merge"}}, r"'reduce'\. Did you mean 'reducer'\?"),
        ({"epochz": 3}, r"Did you mean 'epochs'\?"),
    ],
)
def test_unknown_key_is_a_config_error_with_did_you_mean(data, match):
    with pytest.raises(ConfigError, match=match):
        build(data)


@pytest.mark.parametrize(
    "data,match",
    [
        ({"dim": "wide"}, r"dim expects int"),
        ({"dim": True}, r"dim expects int"),
        ({"fusion": {"nam": "late"}}, r"fusion:.*'name' and 'options'"),
        ({"encoders": ["text_transformer"]}, r"encoders expects a mapping"),
        ({"tokens": 1.5}, r"tokens:.*\(0, 1\]"),
        ({"tokens": "half"}, r"tokens expects a token budget"),
    ],
)
def test_wrong_types_are_config_errors_naming_the_option(data, match):
    with pytest.raises(ConfigError, match=match):
        build(data)


def test_merge_is_recursive_and_later_wins():
    base = {"dim": 32, "fusion": {"name": "transformer", "options": {"layers": 2, "heads": 4}}, "epochs": 5}
    out = merge(base, {"fusion": {"options": {"layers": 4}}, "epochs": 7})
    assert out == {"dim": 32, "fusion": {"name": "transformer", "options": {"layers": 4, "heads": 4}}, "epochs": 7}
    assert base["fusion"]["options"]["layers"] == 2  # inputs are not modified


def test_merge_component_rename_drops_the_old_options():
    base = {"fusion": {"name": "transformer", "options": {"layers": 2}}}
    renamed = merge(base, {"fusion": {"name": "late"}})
    assert renamed == {"fusion": {"name": "late"}}
    assert build(renamed)[0].fusion == Component("late")  # no 'layers' leaking into late fusion
    assert merge(base, {"fusion": "concat"}) == {"fusion": "concat"}
    # the same name keeps (and merges) the options
    assert merge(base, {"fusion": {"name": "transformer", "options": {"heads": 2}}}) == {
        "fusion": {"name": "transformer", "options": {"layers": 2, "heads": 2}}}
    # options over a shorthand name extend that component
    assert merge({"fusion": "transformer"}, {"fusion": {"options": {"layers": 4}}}) == {
        "fusion": {"name": "transformer", "options": {"layers": 4}}}


def test_parse_sets_reads_values_as_yaml():
    out = parse_sets([
        "fusion.options.layers=4", "lr=1.0e-3", "dim=32", "tokens.train_budgets=[0.25, 1.0]", "head=null",
        "fusion.name=transformer", "align.objective.name=siglip", "seed=07x",
    ])
    assert out == {
        "fusion": {"options": {"layers": 4}, "name": "transformer"},
        "lr": 1e-3, "dim": 32, "tokens": {"train_budgets": [0.25, 1.0]}, "head": None,
        "align": {"objective": {"name": "siglip"}}, "seed": "07x",
    }
    assert type(out["fusion"]["options"]["layers"]) is int and type(out["lr"]) is float
    assert parse_sets(["note="]) == {"note": ""}
    assert parse_sets(["a.b=1", "a.c=2"]) == {"a": {"b": 1, "c": 2}}
    m, t = build(merge({"fusion": "transformer"}, parse_sets(["fusion.options.layers=3", "epochs=2"])))
    assert m.fusion == Component("transformer", {"layers": 3}) and t.epochs == 2


def test_parse_sets_reads_exponent_floats_as_floats():
    """``--set lr=1e-3`` is how people write a learning rate; YAML 1.2 and JSON read it as a float."""
    assert parse_sets(["lr=1e-3"]) == {"lr": 1e-3}
    assert build(parse_sets(["lr=1e-3"]))[1].lr == 1e-3


@pytest.mark.parametrize("bad,match", [("epochs", "key.path=value"), ("fusion..layers=2", "empty key"),
                                       ("=3", "empty key")])
def test_parse_sets_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_sets([bad])


def test_read_file_yaml_json_sections_and_errors(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("model:\n  dim: 16\n  fusion: late\ntrain:\n  epochs: 2\n")
    assert read_file(y) == {"dim": 16, "fusion": "late", "epochs": 2}
    j = tmp_path / "run.json"
    j.write_text(json.dumps({"run_type": "model", "model": {"dim": 8}, "train": {"seed": 3}}))
    assert read_file(j) == {"dim": 8, "seed": 3}
    (tmp_path / "empty.yaml").write_text("")
    assert read_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_file(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_file(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_file(tmp_path / "absent.yaml")
