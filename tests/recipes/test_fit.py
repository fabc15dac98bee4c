"""The user-facing API end to end on a slice of the bundled real data: fit -> evaluate -> save -> load -> predict."""

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from polymodal.datasets import load_av_digits

FAST = dict(epochs=2, dim=32, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def av_small():
    return load_av_digits("train", limit=160), load_av_digits("test", limit=60)


@pytest.fixture(scope="module")
def fitted(av_small):
    train, _ = av_small
    return pm.fit(train, label="digit", fusion="transformer", **FAST)


def test_fit_infers_image_and_audio(fitted):
    assert [(s.name, s.kind) for s in fitted.schema] == [("image", "image"), ("audio", "audio")]
    assert fitted.schema.classes == list(range(10))
    assert fitted.info["n_train"] + fitted.info["n_val"] == 160
    assert fitted.info["training"]["history"], "validation history is recorded"


def test_evaluate_reports_every_subset(fitted, av_small):
    _, test = av_small
    res = fitted.evaluate(test)
    assert set(res["subsets"]) == {"image", "audio", "image+audio"}
    assert res["metrics"]["n"] == 60
    cm = np.array(res["metrics"]["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 60
    assert np.isclose(np.trace(cm) / 60, res["metrics"]["accuracy"])
    # the all-modalities subset is the same computation as the headline metric
    assert np.isclose(res["subsets"]["image+audio"]["accuracy"], res["metrics"]["accuracy"])


def test_save_load_gives_identical_predictions(fitted, av_small, tmp_path):
    _, test = av_small
    before = fitted.predict(test)
    fitted.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "manifest.json", "report.json", "schema.json", "weights.safetensors"]
    loaded = pm.load(tmp_path / "run")
    after = loaded.predict(test)
    pd.testing.assert_frame_equal(before, after)
    assert list(before.index) == list(test.index)
    probs = before.filter(like="proba_").to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_missing_modality_cells_predict_finite(fitted, av_small):
    _, test = av_small
    t = test.copy()
    t.loc[t.index[:20], "audio"] = None
    t.loc[t.index[20:40], "image"] = None
    preds = fitted.predict(t)
    assert np.isfinite(preds.filter(like="proba_").to_numpy()).all()
    # a row missing audio is predicted exactly as the image-only subset predicts it
    only_img = fitted.predict(test.iloc[:20].assign(audio=None))
    pd.testing.assert_frame_equal(preds.iloc[:20], only_img)


def test_same_seed_same_model(av_small):
    train, test = av_small
    a = pm.fit(train, label="digit", fusion="late", **{**FAST, "epochs": 1}).predict(test)
    b = pm.fit(train, label="digit", fusion="late", **{**FAST, "epochs": 1}).predict(test)
    pd.testing.assert_frame_equal(a, b)


def test_unknown_label_is_a_clear_error(av_small):
    with pytest.raises(pm.SchemaError, match="label column 'digits' not found.*'digit'"):
        pm.fit(av_small[0], label="digits", **FAST)


def test_empty_table_is_a_clear_error(av_small):
    with pytest.raises(pm.SchemaError, match="empty"):
        pm.fit(av_small[0].iloc[:0], label="digit", **FAST)


def test_missing_label_raises_or_is_counted(av_small):
    train = av_small[0].copy()
    train["digit"] = train["digit"].astype(object)
    train.loc[train.index[5], "digit"] = None
    with pytest.raises(pm.DecodeError, match=r"row 5, column 'digit'.*label is missing"):
        pm.fit(train, label="digit", **FAST)
    model = pm.fit(train, label="digit", on_error="missing", **{**FAST, "epochs": 1})
    assert model.info["decode_report"]["dropped_rows"] == {"missing label": 1}
    assert model.info["n_train"] + model.info["n_val"] == len(train) - 1


def test_test_table_missing_a_column(fitted, av_small):
    with pytest.raises(pm.SchemaError, match=r"lacks column\(s\) \['audio'\]"):
        fitted.predict(av_small[1].drop(columns="audio"))


def test_unseen_class_at_evaluation_names_the_row(fitted, av_small):
    test = av_small[1].copy()
    test.loc[test.index[3], "digit"] = 42
    with pytest.raises(pm.DecodeError, match=r"row 3, column 'digit'.*42 was not seen"):
        fitted.evaluate(test)


def test_regression_on_tabular_and_text_learns():
    rng = np.random.default_rng(0)
    n = 400
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    words = np.where(x2 > 0, "warm sunny day outside", "cold rainy night inside")
    df = pd.DataFrame({"x1": x1, "colour": rng.choice(["red", "green"], n), "note": words,
                       "y": 3 * x1 + 2 * (x2 > 0) + 0.1 * rng.normal(size=n)})
    model = pm.fit(df.iloc[:300], label="y", epochs=30, dim=32, progress=False, lr=3e-3)
    assert model.schema.task == "regress"
    assert {s.kind for s in model.schema} == {"tabular", "text"}
    m = model.evaluate(df.iloc[300:])["metrics"]
    assert m["r2"] > 0.8, m
    preds = model.predict(df.iloc[300:])["prediction"]
    assert abs(preds.mean() - df["y"].iloc[300:].mean()) < 0.5


# ------------------------------------------------------------------------- the configuration language, through fit
def test_components_by_kind_and_by_name_reach_the_net(tmp_path):
    from polymodal.registry import Component
    from tests.xor_data import GROUPS, xor_table

    model = pm.fit(
        xor_table(24), "y", groups=GROUPS, epochs=1, dim=16, progress=False, out=tmp_path / "run",
        encoders={"tabular": {"name": "tabular_ft", "options": {"layers": 2}}, "b": {"name": "tabular_ft"}},
        fusion={"name": "transformer", "options": {"layers": 1}},
        head={"name": "classify", "options": {"dropout": 0.0}},
    )
    assert model.cfg.fusion == Component("transformer", {"layers": 1})
    assert len(model.net.encoders["a"].blocks) == 2  # the kind's entry
    assert len(model.net.encoders["b"].blocks) == 1  # the modality's own entry wins over its kind
    assert model.net.head[0].p == 0.0
    loaded = pm.load(tmp_path / "run")
    assert loaded.cfg == model.cfg and loaded.train_cfg == model.train_cfg
    with pytest.raises(pm.PolymodalError, match=r"modality \(or kind\) in encoders 'c'"):
        pm.fit(xor_table(24), "y", groups=GROUPS, encoders={"c": "tabular_ft"}, epochs=1, progress=False)


def test_token_budget_is_one_option_and_saved_with_the_run(tmp_path):
    from polymodal.tokens.spec import TokenBudget
    from tests.xor_data import GROUPS, xor_table

    tokens = {"budget": 0.5, "reducer": {"name": "merge", "options": {"prop_attn": False}}, "train_budgets": [0.5, 1.0]}
    model = pm.fit(xor_table(24), "y", groups=GROUPS, tokens=tokens, epochs=1, dim=16, progress=False,
                   out=tmp_path / "run")
    assert model.cfg.tokens == TokenBudget(0.5, {"name": "merge", "options": {"prop_attn": False}},
                                           train_budgets=(0.5, 1.0))
    assert not model.cfg.tokens.use_prop_attn
    assert pm.load(tmp_path / "run").cfg.tokens == model.cfg.tokens
    half = model.with_token_budget(0.25, reducer={"name": "prune"})
    assert half.cfg.tokens.budget == 0.25 and model.cfg.tokens.budget == 0.5  # a copy; the model is unchanged


def test_small_tables_hold_out_by_the_one_splitter():
    """Below 10 rows nothing is held out; from 10 on, val_fraction of the rows (stratified for classification)."""
    from tests.xor_data import GROUPS, xor_table

    small = pm.fit(xor_table(9), "y", groups=GROUPS, epochs=1, dim=16, progress=False)
    assert (small.info["n_train"], small.info["n_val"]) == (9, 0)
    frame = xor_table(14).drop(columns="y").assign(t=np.linspace(0.0, 1.3, 14) ** 2)
    reg = pm.fit(frame, "t", groups=GROUPS, task="regress", epochs=1, dim=16, progress=False, val_fraction=0.2)
    assert reg.schema.task == "regress" and (reg.info["n_train"], reg.info["n_val"]) == (11, 3)  # round(2.8)


def test_model_exposes_cfg_and_refuses_out_that_is_a_file(tmp_path):
    from tests.xor_data import GROUPS, xor_table

    model = pm.fit(xor_table(12), "y", groups=GROUPS, epochs=1, dim=16, progress=False)
    assert model.cfg.dim == 16 and model.train_cfg.epochs == 1 and not hasattr(model, "model_cfg")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(pm.PolymodalError, match="it is a file"):
        pm.fit(xor_table(12), "y", groups=GROUPS, epochs=1, progress=False, out=f)
    with pytest.raises(pm.PolymodalError, match="on_error"):
        pm.fit(xor_table(12), "y", groups=GROUPS, on_error="skip", progress=False)
