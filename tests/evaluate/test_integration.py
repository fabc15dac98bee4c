import numpy as np

from polymodal.evaluate.integration import integration_test, linear_combination


def onehot(pred, c=4, conf=0.9):
    p = np.full((len(pred), c), (1 - conf) / (c - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_xor_needs_integration_that_a_linear_combination_cannot_give():
    rng = np.random.default_rng(0)
    bit0, bit1 = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    y = bit0 ^ bit1
    # each unimodal model sees one bit: its (weak) output depends on it, but says nothing about y alone
    a = np.where(bit0[:, None] == 1, [[0.45, 0.55]], [[0.55, 0.45]])
    b = np.where(bit1[:, None] == 1, [[0.45, 0.55]], [[0.55, 0.45]])
    res = integration_test(onehot(y, c=2), {"a": a, "b": b}, y)
    assert res["beats_all"] and res["accuracy"]["fused"] == 1.0
    assert res["accuracy"]["linear combination"] < 0.65 and res["accuracy"]["a only"] < 0.65
    assert res["integrated_classes"] == ["0", "1"]
    lo, hi = res["fused_minus_linear_ci95"]
    assert 0.3 < lo <= res["fused_minus_linear"] <= hi


def test_additive_evidence_is_matched_by_the_linear_combination():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    # each unimodal model knows one bit of the label and guesses the other: the two bits add up linearly
    a = onehot((y & 1) | (rng.integers(0, 2, 400) << 1))
    b = onehot((y & 2) | rng.integers(0, 2, 400))
    res = integration_test(onehot(y), {"a": a, "b": b}, y)
    assert 0.4 < res["accuracy"]["a only"] < 0.6
    assert res["accuracy"]["linear combination"] > 0.97
    assert not res["beats_all"] or res["fused_minus_linear"] < 0.03


def test_linear_combination_of_complementary_experts_is_a_strong_baseline():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    # expert a is right on classes 0-1 and says "not 0-1" otherwise; b the same for 2-3
    a = np.where((y < 2)[:, None], onehot(y), onehot(np.full(400, 2), conf=0.5))
    b = np.where((y >= 2)[:, None], onehot(y), onehot(np.full(400, 0), conf=0.5))
    lin = linear_combination({"a": a, "b": b}, y)
    assert (lin == y).mean() > 0.95
    fused_copy_of_a = a
    res = integration_test(fused_copy_of_a, {"a": a, "b": b}, y)
    assert not res["beats_all"] and res["fused_minus_linear"] < -0.2
