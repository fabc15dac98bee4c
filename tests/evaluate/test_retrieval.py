import numpy as np
import pytest

from polymodal.evaluate.retrieval import (
    class_ranks,
    gap_report,
    modality_gap,
    pairwise_report,
    ranks,
    retrieval_metrics,
    summarize,
)


def test_ranks_of_true_matches_with_ties_counting_against():
    s = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.6], [0.2, 0.2, 0.2]])
    np.testing.assert_array_equal(ranks(s), [1, 3, 1])
    s[2, 0] = 0.3  # one strictly better item
    assert ranks(s)[2] == 2


def test_summary_recall_and_median():
    out = summarize(np.array([1, 2, 6, 11]), ks=(1, 5, 10))
    assert out == {"R@1": 0.25, "R@5": 0.5, "R@10": 0.75, "median_rank": 4.0, "n": 4}


def test_class_level_rank_is_first_item_of_the_query_class():
    s = np.array([[0.1, 0.9, 0.5], [0.8, 0.7, 0.6]])
    r = class_ranks(s, ["a", "b"], ["a", "b", "a"])
    np.testing.assert_array_equal(r, [2, 2])  # query a: order 1(b),2(a)...; query b: 0(a),1(b)
    assert np.isinf(class_ranks(s, ["z", "a"], ["a", "b", "a"])[0])


def test_retrieval_metrics_perfect_and_shuffled():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perfect = retrieval_metrics(x, x, list(range(50)), list(range(50)))
    assert perfect["instance"]["R@1"] == 1.0 and perfect["instance"]["median_rank"] == 1.0
    assert perfect["class"]["R@1"] == 1.0
    shuffled = retrieval_metrics(x, x[rng.permutation(50)])
    assert shuffled["instance"]["R@1"] < 0.2
    with pytest.raises(ValueError, match="row-aligned"):
        retrieval_metrics(x, x[:10])


def test_modality_gap_is_centroid_distance():
    a = np.array([[1.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 2.0], [0.0, 3.0]])  # normalised to (0, 1)
    assert modality_gap(a, b) == pytest.approx(np.sqrt(2))
    assert modality_gap(a, a) == 0.0


def test_pairwise_and_gap_reports_use_rows_with_both_modalities():
    rng = np.random.default_rng(1)
    e = {"x": rng.normal(size=(10, 4)), "y": rng.normal(size=(10, 4))}
    p = {"x": np.ones(10, bool), "y": np.r_[np.ones(7, bool), np.zeros(3, bool)]}
    rep = pairwise_report(e, p, labels=list(range(10)))
    assert set(rep) == {"x->y", "y->x"}
    assert rep["x->y"]["instance"]["n"] == 7 and rep["y->x"]["class"]["n"] == 7
    assert set(gap_report(e, p)) == {"x|y"}
