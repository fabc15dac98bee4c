"""``evaluate/scoring.py``: outputs (with some modalities missing), targets, task metrics, scores, embeddings."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error

import polymodal as pm
from polymodal.data.decode import decode
from polymodal.errors import PolymodalError
from polymodal.evaluate.scoring import FUSED, embeddings, outputs, primary_metric, score, targets, task_metrics
from tests.xor_data import GROUPS, xor_table

FAST = dict(groups=GROUPS, epochs=3, dim=16, batch_size=32, lr=5e-3, progress=False)


@pytest.fixture(scope="module")
def classifier():
    return pm.fit(xor_table(64), "y", fusion="concat", **FAST)


@pytest.fixture(scope="module")
def regressor():
    frame = xor_table(64).drop(columns="y")
    frame["t"] = 50.0 + 20.0 * frame["a1"] - 5.0 * frame["b1"]  # far from mean 0 / std 1: scaling must be undone
    return pm.fit(frame, "t", task="regress", fusion="late", **FAST), frame


def _ds(model, frame):
    return decode(model.schema, frame, labels="auto", progress=False).dataset


@pytest.mark.parametrize("keep", [("a",), ("b",), ("a", "b")])
def test_outputs_with_keep_equal_outputs_with_the_others_marked_missing(classifier, keep):
    ds = _ds(classifier, xor_table(40, seed=2))
    got = outputs(classifier, ds, keep=keep)
    hidden = _ds(classifier, xor_table(40, seed=2))
    for m in hidden.present:
        if m not in keep:
            hidden.present[m] = torch.zeros_like(hidden.present[m])
    torch.testing.assert_close(got, outputs(classifier, hidden))
    if keep != ("a", "b"):
        assert not torch.allclose(got, outputs(classifier, ds))  # hiding a modality changes the outputs


def test_outputs_follow_row_order_and_views(classifier):
    ds = _ds(classifier, xor_table(40, seed=2))
    full = outputs(classifier, ds, batch_size=7)
    assert full.shape == (40, 4)
    torch.testing.assert_close(full, outputs(classifier, ds, batch_size=256))
    rows = np.array([5, 0, 33])
    torch.testing.assert_close(outputs(classifier, ds.subset(rows)), full[rows])
    assert targets(ds.subset(rows)).tolist() == ds.target[rows].tolist()


def test_classification_metrics_and_score(classifier):
    frame = xor_table(40, seed=2)
    ds = _ds(classifier, frame)
    out, y = outputs(classifier, ds), targets(ds)
    m = task_metrics(classifier.schema, out, y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y.numpy(), out.argmax(-1).numpy()))
    assert np.array(m["confusion_matrix"]).sum() == 40
    assert primary_metric(classifier) == "accuracy" and score(classifier, ds) == pytest.approx(m["accuracy"])
    assert score(classifier, ds, keep=("a",)) == pytest.approx(
        task_metrics(classifier.schema, outputs(classifier, ds, keep=("a",)), y)["accuracy"])


def test_regression_metrics_are_on_the_original_scale(regressor):
    model, frame = regressor
    test = frame.iloc[:30]
    ds = _ds(model, test)
    out = outputs(model, ds)
    m = task_metrics(model.schema, out, targets(ds))
    stats = model.schema.target_stats
    assert abs(stats["mean"]) > 10  # the standardised target is far from the original one
    pred = out.reshape(-1).numpy() * stats["std"] + stats["mean"]
    y = test["t"].to_numpy()
    assert m["rmse"] ** 2 == pytest.approx(mean_squared_error(y, pred), rel=1e-4)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-4)
    # the same numbers as the predictions a user sees
    np.testing.assert_allclose(model.predict(test, progress=False)["prediction"].to_numpy(), pred, rtol=1e-5)
    assert primary_metric(model) == "rmse" and score(model, ds) == pytest.approx(m["rmse"])


def test_targets_need_labels_and_outputs_need_a_task_head(classifier):
    unlabelled = decode(classifier.schema, xor_table(8).drop(columns="y"), progress=False).dataset
    with pytest.raises(PolymodalError, match="labelled table"):
        targets(unlabelled)
    with pytest.raises(PolymodalError, match="no shared embedding space"):
        embeddings(classifier.net, unlabelled)


def test_embeddings_per_modality_and_fused():
    model = pm.align(xor_table(32).drop(columns="y"), **{**FAST, "epochs": 1}, embed_dim=8)
    frame = xor_table(12, seed=3)
    frame.loc[[1, 4], GROUPS["b"]] = np.nan  # b missing on rows 1 and 4
    ds = decode(model.schema, frame, labels="ignore", progress=False).dataset
    with pytest.raises(PolymodalError, match="alignment run"):
        outputs(model, ds)
    emb, present = embeddings(model.net, ds)
    assert set(emb) == {"a", "b", FUSED} and emb["a"].shape == (12, 8)
    assert present["b"].tolist() == [i not in (1, 4) for i in range(12)] and present[FUSED].all()
    np.testing.assert_allclose(np.linalg.norm(emb["a"], axis=1), 1.0, atol=1e-5)
    assert not emb["b"][[1, 4]].any()  # absent: zeros
    np.testing.assert_allclose(emb[FUSED][1], emb["a"][1], atol=1e-6)  # only a present: fused = a
    both = (emb["a"][0] + emb["b"][0]) / np.linalg.norm(emb["a"][0] + emb["b"][0])
    np.testing.assert_allclose(emb[FUSED][0], both, atol=1e-5)
    only_a, _ = embeddings(model.net, ds, ["a"])
    np.testing.assert_allclose(only_a["a"], emb["a"], atol=1e-6)
    np.testing.assert_allclose(only_a[FUSED], emb["a"], atol=1e-6)
