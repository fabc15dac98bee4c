import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, mean_absolute_error, r2_score

from polymodal.evaluate.metrics import classification_metrics, regression_metrics
from polymodal.evaluate.subsets import modality_subsets, subset_key


def test_classification_metrics_match_sklearn():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 5, generator=g)
    target = torch.randint(0, 5, (200,), generator=g)
    m = classification_metrics(logits, target, 5)
    pred = logits.argmax(-1).numpy()
    assert np.isclose(m["accuracy"], accuracy_score(target, pred))
    assert np.isclose(m["macro_f1"], f1_score(target, pred, average="macro"), atol=1e-6)
    assert m["confusion_matrix"] == confusion_matrix(target, pred, labels=range(5)).tolist()


def test_regression_metrics_match_sklearn():
    g = torch.Generator().manual_seed(2)
    y = torch.randn(100, generator=g)
    p = y + 0.3 * torch.randn(100, generator=g)
    m = regression_metrics(p, y)
    assert np.isclose(m["mae"], mean_absolute_error(y, p), atol=1e-6)
    assert np.isclose(m["r2"], r2_score(y, p), atol=1e-5)


def test_subsets_enumerates_every_nonempty_subset():
    s = modality_subsets(["a", "b", "c"])
    assert len(s) == 7 and len(set(s)) == 7
    assert s[:3] == [("a",), ("b",), ("c",)] and s[-1] == ("a", "b", "c")
    assert subset_key(("a", "c")) == "a+c"
