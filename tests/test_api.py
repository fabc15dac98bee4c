"""The Python API where users bring scikit-learn / AutoGluon habits: ``help`` / ``dir`` on the lazy package root,
``predict_proba``, ``evaluate(metrics=...)``, and wide class sets without pandas fragmentation warnings."""

import inspect
import pydoc
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from tests.recipes.conftest import GROUP, paired_table
from tests.xor_data import GROUPS, xor_table

TINY = dict(epochs=1, dim=16, progress=False)


@pytest.fixture(scope="module")
def classifier():
    return pm.fit(xor_table(48), "y", groups=GROUPS, **TINY)


@pytest.fixture(scope="module")
def regressor():
    frame = xor_table(20).drop(columns="y").assign(t=np.linspace(0.0, 2.0, 20) ** 2)
    return pm.fit(frame, "t", groups=GROUPS, task="regress", **TINY)


# ------------------------------------------------------------------------------------ help / dir / __all__
def test_lazy_names_resolve_to_the_functions_with_their_signatures_and_docs():
    from polymodal.recipes.align import align
    from polymodal.recipes.fit import fit
    from polymodal.recipes.loading import load

    assert (pm.align, pm.fit, pm.load) == (align, fit, load)
    for f in (pm.align, pm.fit, pm.load):
        assert inspect.isfunction(f) and f.__doc__
        doc = pydoc.render_doc(f, renderer=pydoc.plaintext)
        assert f.__doc__.split("\n")[0] in doc
    assert list(inspect.signature(pm.fit).parameters)[:2] == ["train", "label"]
    assert "label" in inspect.signature(pm.align).parameters
    for f in (pm.fit, pm.align):  # the training time limit is documented where users look
        assert "max_minutes" in f.__doc__ and "time limit" in f.__doc__


def test_every_name_in_all_resolves_and_dir_lists_them():
    names = dir(pm)
    assert set(pm.__all__) <= set(names) and "__version__" in names
    for name in pm.__all__:
        assert getattr(pm, name) is not None, name
    assert inspect.isclass(pm.Model) and inspect.isclass(pm.AlignedModel) and callable(pm.list_presets)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pm.nope  # noqa: B018


def test_a_fresh_interpreter_sees_the_api_before_anything_heavy_loads():
    code = (
        "import sys, pydoc, polymodal as pm\n"
        "names = dir(pm)\n"
        "assert {'fit', 'align', 'load', 'Model'} <= set(names), names\n"
        "assert 'polymodal.recipes' not in sys.modules and 'lightning' not in sys.modules\n"
        "doc = pydoc.render_doc(pm.align, renderer=pydoc.plaintext)\n"
        "assert 'function align' in doc and 'objective' in doc and 'max_minutes' in doc, doc[:300]\n"
        "assert 'align' in vars(pm) and callable(pm.align)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


# ------------------------------------------------------------------------------------ predict_proba
def test_predict_proba_has_one_column_per_class_indexed_like_the_input(classifier):
    test = xor_table(12, seed=1).drop(columns="y")
    test.index = pd.Index([f"r{i}" for i in range(12)])
    proba = classifier.predict_proba(test)
    assert list(proba.columns) == classifier.schema.classes == ["c0", "c1", "c2", "c3"]
    assert proba.index.equals(test.index)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    pred = classifier.predict(test)
    np.testing.assert_allclose(proba.to_numpy(), pred[[f"proba_{c}" for c in proba.columns]].to_numpy())
    assert (proba.idxmax(axis=1) == pred["prediction"]).all()


def test_predict_proba_of_a_regression_model_is_a_clear_error(regressor):
    with pytest.raises(pm.PolymodalError, match=r"predict_proba needs a classification model.*model\.predict"):
        regressor.predict_proba(xor_table(4).drop(columns="y"))


# ------------------------------------------------------------------------------------ evaluate(metrics=)
def test_evaluate_computes_only_the_named_metrics(classifier):
    test = xor_table(24, seed=2)
    full = classifier.evaluate(test)
    some = classifier.evaluate(test, metrics=["macro_f1", "accuracy"])
    assert list(some["metrics"]) == ["macro_f1", "accuracy"]
    assert some["metrics"]["accuracy"] == full["metrics"]["accuracy"]
    assert set(some["subsets"]) == set(full["subsets"])
    assert all(set(v) == {"macro_f1", "accuracy"} for v in some["subsets"].values())
    cm = classifier.evaluate(test, metrics="confusion_matrix")
    assert list(cm["metrics"]) == ["confusion_matrix"] and "subsets" not in cm
    assert cm["metrics"]["confusion_matrix"] == full["metrics"]["confusion_matrix"]
    assert set(classifier.metric_names()) == set(full["metrics"])


def test_evaluate_refuses_unknown_metric_names_with_a_suggestion(classifier, regressor):
    test = xor_table(8)
    with pytest.raises(pm.PolymodalError, match=r"unknown metric 'acuracy'\. Did you mean 'accuracy'\?.*macro_f1"):
        classifier.evaluate(test, metrics=["acuracy"])
    with pytest.raises(pm.PolymodalError, match=r"unknown metric 'accuracy'.*rmse.*regression"):
        regressor.evaluate(test.drop(columns="y").assign(t=1.0), metrics=["accuracy"])
    with pytest.raises(pm.PolymodalError, match="names no metric"):
        classifier.evaluate(test, metrics=[])


def test_evaluate_regression_metrics_by_name(regressor):
    frame = xor_table(10, seed=3).drop(columns="y").assign(t=np.linspace(0.0, 2.0, 10) ** 2)
    res = regressor.evaluate(frame, metrics=["rmse", "r2"], subsets=False)
    assert list(res["metrics"]) == ["rmse", "r2"] and "subsets" not in res
    assert set(regressor.metric_names()) == {"mae", "n", "r2", "rmse"}


# ------------------------------------------------------------------------------------ wide frames
def test_200_classes_predict_without_fragmentation_warnings():
    rng = np.random.default_rng(0)
    n_classes = 200
    y = np.repeat(np.arange(n_classes), 2)
    frame = pd.DataFrame({"x1": y / n_classes + 0.01 * rng.normal(size=len(y)), "x2": rng.normal(size=len(y)),
                          "y": [f"k{v}" for v in y]})
    model = pm.fit(frame, "y", val_fraction=0.0, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        pred = model.predict(frame.head(5))
        proba = model.predict_proba(frame.head(5))
    assert pred.shape == (5, 1 + n_classes) and proba.shape == (5, n_classes)


def test_200_prototypes_classify_without_fragmentation_warnings():
    model = pm.align(paired_table(64), groups=GROUP, label="cls", embed_dim=8, **TINY)
    support = paired_table(200, seed=3).assign(cls=[f"c{i}" for i in range(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        out = model.prototype_classify(support, "cls", paired_table(6, seed=4).drop(columns="cls"), modality="a")
    assert out.shape == (6, 201) and out.columns[1] == "score_c0"
    assert out["prediction"].isin(support["cls"]).all()
