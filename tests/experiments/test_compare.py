import json

import numpy as np
import pytest

from polymodal.experiments.compare import compare, resolve_fusions, split_table, summarize
from polymodal.errors import PolymodalError
from tests.xor_data import GROUPS, xor_table


def test_resolve_fusions():
    assert "sequential" in resolve_fusions("all") and resolve_fusions("late, concat") == ["late", "concat"]
    with pytest.raises(PolymodalError, match="unknown fusion"):
        resolve_fusions("late,nope")


def test_split_table_is_stratified_and_disjoint(tmp_path):
    frame = xor_table(100)
    tr, te = split_table(frame, "y", 0.2, seed=0)
    assert len(tr) == 80 and len(te) == 20
    assert te["y"].value_counts().min() >= 4  # every class in the test part
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    (p1, rows_tr), (p2, rows_te) = split_table(str(path), "y", 0.2, seed=0)
    assert p1 == p2 == str(path) and not set(rows_tr) & set(rows_te)


def test_compare_end_to_end_with_integration(tmp_path):
    summary = compare(xor_table(160), "y", test=xor_table(80, seed=1), fusions="late,concat", seeds=(0,), workers=1,
                      groups=GROUPS, epochs=6, dim=16, batch_size=32, lr=5e-3, noise=(0.0, 1.0), out=tmp_path)
    models = summary["models"]
    assert set(models) == {"late", "concat", "unimodal:a", "unimodal:b"}
    for name in ("late", "concat"):
        e = models[name]
        assert e["params"] > 0 and e["latency_ms"] > 0 and set(e["subsets"]) == {"a", "b", "a+b"}
        assert e["noise"]["curves"]["all"][0] == pytest.approx(e["mean"])
    assert models["concat"]["noise"]["effective_robustness_vs_late"]  # relative to late fusion
    assert models["late"]["noise"]["effective_robustness_vs_late"]["all"] == pytest.approx(0.0)
    assert set(summary["integration"]) == {"late", "concat"}
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert "proba" not in saved["runs"][0] and (tmp_path / "compare.md").read_text().startswith("# polymodal compare")


def test_summarize_aggregates_seeds():
    runs = [
        {"key": f"late/seed{s}", "seed": s, "metric": "accuracy", "score": v, "params": 10, "train_s": 1.0,
         "latency_ms": 0.1}
        for s, v in [(0, 0.8), (1, 0.9), (2, 1.0)]
    ]
    e = summarize(runs)["models"]["late"]
    assert e["mean"] == pytest.approx(0.9) and e["std"] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert e["seeds"] == [0, 1, 2]
