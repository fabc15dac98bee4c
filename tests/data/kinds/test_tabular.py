"""Tabular processor: numeric/categorical features, masks, unseen categories, inf."""


import numpy as np
import pandas as pd
import pytest

from polymodal.errors import DecodeError

from ._helpers import assert_names, run


# ---------------------------------------------------------------------------------------------------- tabular
def test_tabular_numeric_categorical_masks_and_unseen():
    train = pd.DataFrame({"age": [10.0, 20.0, np.nan, 30.0], "city": ["rome", "oslo", None, "rome"],
                          "flag": [True, False, True, True], "n": pd.array([1, 2, None, 4], dtype="Int64")})
    test = pd.DataFrame({"age": [20.0, np.nan, np.nan], "city": ["oslo", "lima", None],
                         "flag": [False, True, False], "n": pd.array([2, None, None], dtype="Int64")})
    test.loc[2, "flag"] = False
    arrays, present, ctx, spec = run("tabular", test, fit_cells=train)
    opts = spec.options
    assert opts["categorical"] == {"city": ["oslo", "rome"]}
    assert list(opts["numeric"]) == ["age", "flag", "n"]
    assert opts["numeric"]["age"] == {"mean": pytest.approx(20.0), "std": pytest.approx(np.std([10, 20, 30]))}
    num, num_mask, cat, cat_mask = arrays["num"], arrays["num_mask"], arrays["cat"], arrays["cat_mask"]
    assert num.shape == (3, 3) and cat.shape == (3, 1)
    assert num[0, 0] == 0.0 and num_mask[:, 0].tolist() == [True, False, False]
    assert num[1, 0] == 0.0  # missing feature -> 0
    assert cat[:, 0].tolist() == [1, 0, 0]  # oslo -> 1, unseen 'lima' -> 0, missing -> 0
    assert cat_mask[:, 0].tolist() == [True, True, False]
    assert present.tolist() == [True, True, True]  # every row has some feature (flag)
    assert ctx.report.missing == {"age": 2, "n": 2, "city": 1}


def test_tabular_row_with_all_features_missing_is_absent():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})
    arrays, present, _, _ = run("tabular", frame)
    assert present.tolist() == [True, False]
    assert not arrays["num"][1].any() and not arrays["cat"][1].any()


def test_tabular_numeric_strings_stay_categorical_and_empty_groups():
    frame = pd.DataFrame({"code": ["1", "2", "n/a", "2"]})
    arrays, present, _, spec = run("tabular", frame)
    assert spec.options["numeric"] == {} and spec.options["categorical"] == {"code": ["1", "2", "n/a"]}
    assert arrays["num"].shape == (4, 0) and arrays["num_mask"].shape == (4, 0)
    assert arrays["cat"][:, 0].tolist() == [1, 2, 3, 2] and present.all()
    arrays, _, _, _ = run("tabular", pd.DataFrame({"x": [1.0, 2.0]}))
    assert arrays["cat"].shape == (2, 0) and arrays["cat"].dtype == np.int64


def test_tabular_inf_is_an_error_or_missing_feature():
    frame = pd.DataFrame({"x": [1.0, np.inf, 3.0], "y": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    fit = pd.DataFrame({"x": [1.0, 3.0], "y": [1.0, 3.0]})
    with pytest.raises(DecodeError) as info:
        run("tabular", frame, fit_cells=fit)
    assert_names(info.value, "b", "x")
    assert "inf" in str(info.value)
    arrays, present, ctx, _ = run("tabular", frame, fit_cells=fit, on_error="missing")
    assert arrays["num_mask"][1].tolist() == [False, True] and present.all()
    assert ctx.report.errors == {"x": 1} and ctx.report.missing == {}


def test_tabular_non_number_in_numeric_column_at_decode():
    fit = pd.DataFrame({"x": [1.0, 3.0]})
    frame = pd.DataFrame({"x": pd.Series([2.0, "abc", "4"], dtype=object)})
    with pytest.raises(DecodeError, match=r"row 1, column 'x'.*expected a number.*'abc'"):
        run("tabular", frame, fit_cells=fit)
    arrays, present, ctx, _ = run("tabular", frame, fit_cells=fit, on_error="missing")
    assert present.tolist() == [True, False, True] and arrays["num"][2, 0] == pytest.approx(2.0)
