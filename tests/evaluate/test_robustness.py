import numpy as np
import pytest

from polymodal.evaluate.robustness import (
    effective_robustness,
    mnar_study,
    noise_sweep,
    relative_robustness,
    robustness,
    score,
    subset_scores,
)


def test_relative_and_effective_robustness_formulas():
    assert relative_robustness([0.9, 0.8, 0.5], [0.0, 0.5, 1.0]) == pytest.approx((0.85 * 0.5 + 0.65 * 0.5) / 1.0)
    assert relative_robustness([0.7], [0.0]) == 0.7
    # same shape as the reference, shifted: effective robustness 0; flatter than the reference: positive
    assert effective_robustness([0.9, 0.8, 0.7], [0.8, 0.7, 0.6]) == pytest.approx(0.0)
    assert effective_robustness([0.9, 0.9, 0.9], [0.8, 0.7, 0.6]) == pytest.approx((0 + 0.1 + 0.2) / 3)
    with pytest.raises(ValueError, match="length"):
        effective_robustness([1, 2], [1])


def test_subsets_show_that_each_modality_carries_half_the_label(xor_model, xor_test_ds):
    s = subset_scores(xor_model, xor_test_ds)
    assert set(s) == {"a", "b", "a+b"}
    assert s["a+b"] > 0.9 and s["a"] < 0.7 and s["b"] < 0.7  # one bit each: about 0.5 alone


def test_noise_sweep_starts_clean_and_degrades(xor_model, xor_test_ds):
    nz = noise_sweep(xor_model, xor_test_ds, [0.0, 0.5, 3.0])
    clean = score(xor_model, xor_test_ds)
    assert set(nz["curves"]) == {"a", "b", "all"}
    for curve in nz["curves"].values():
        assert curve[0] == pytest.approx(clean)
    assert nz["curves"]["all"][-1] < clean - 0.3  # 3 standard deviations of noise on the signal columns
    assert nz["corruption"] == {"a": "gaussian", "b": "gaussian"}
    assert nz["relative_robustness"]["all"] < clean


def test_mnar_study_reports_patterns_and_their_dependence(xor_model, xor_test_ds):
    res = mnar_study(xor_model, xor_test_ds, rate=0.3)
    assert res["clean"] > 0.9
    for m in ("a", "b"):
        assert {"mcar", "label", "content"} <= set(res[m])
        lab = res[m]["label"]
        assert lab["pattern"]["mutual_info"] > 0.1  # the pattern is informative about the label
        # hiding 30 % of one modality costs accuracy, whatever the pattern
        assert res[m]["mcar"]["metric"] < res["clean"]


def test_robustness_on_a_table_writes_json_and_plots(xor_model, tmp_path):
    from tests.xor_data import xor_table

    rep = robustness(xor_model, xor_table(80, seed=3), missing=["subsets"], noise=[0, 1.0], out=tmp_path)
    assert "mnar" not in rep and set(rep["subsets"]) == {"a", "b", "a+b"}
    assert (tmp_path / "robustness.json").exists()
    assert rep["plots"] == ["subsets.png", "noise.png"] and (tmp_path / "noise.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown missing-modality studies"):
        robustness(xor_model, xor_table(20), missing=["everything"])


def test_expert_utilisation_for_moe_only(xor_model, xor_test_ds):
    import polymodal as pm
    from polymodal.evaluate.robustness import expert_utilisation
    from polymodal.data.decode import decode
    from tests.xor_data import GROUPS, xor_table

    assert expert_utilisation(xor_model, xor_test_ds) is None  # concat has no experts
    moe = pm.fit(xor_table(64), "y", fusion={"name": "moe", "options": {"experts": 3}}, groups=GROUPS, epochs=1,
                 dim=16, progress=False)
    ds = decode(moe.schema, xor_table(40, seed=5), progress=False).dataset
    util = expert_utilisation(moe, ds)
    assert set(util) == {"a", "b"} and all(len(u) == 3 and abs(sum(u) - 1) < 1e-4 for u in util.values())
