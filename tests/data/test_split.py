"""``data/split.py``: the one row splitter behind every validation hold-out."""

import numpy as np
import pytest

from polymodal.data.split import MIN_ROWS, split_rows


@pytest.mark.parametrize("strata", [None, np.array([0, 1, 2, 2, 1] * 20)])
def test_split_is_disjoint_covering_and_sorted(strata):
    tr, va = split_rows(100, 0.2, seed=0, strata=strata)
    assert not set(tr) & set(va)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    assert len(va) == 20
    assert (np.diff(tr) > 0).all() and (np.diff(va) > 0).all()


def test_stratified_split_keeps_class_shares_and_every_class_in_train():
    strata = np.array([0] * 50 + [1] * 30 + [2] * 10 + [3] * 2 + [4] * 1)
    tr, va = split_rows(len(strata), 0.2, seed=3, strata=strata)
    counts = {c: int((strata[va] == c).sum()) for c in range(5)}
    assert counts == {0: 10, 1: 6, 2: 2, 3: 0, 4: 0}  # round(0.2 x rows); 2 rows -> round(0.4) = 0
    assert set(strata[tr]) == {0, 1, 2, 3, 4}  # every class keeps training rows
    # even a large fraction never takes a class's last training row
    tr, va = split_rows(12, 0.8, seed=0, strata=np.array([0] * 10 + [1] * 2))
    assert set(np.array([0] * 10 + [1] * 2)[tr]) == {0, 1}


def test_fewer_than_ten_rows_hold_nothing_out():
    assert MIN_ROWS == 10
    for n in (1, 5, 9):
        tr, va = split_rows(n, 0.5, seed=0)
        assert tr.tolist() == list(range(n)) and len(va) == 0
    tr, va = split_rows(10, 0.2, seed=0)
    assert len(va) == 2 and len(tr) == 8


def test_zero_fraction_holds_nothing_out():
    tr, va = split_rows(50, 0.0, seed=0)
    assert len(tr) == 50 and len(va) == 0


def test_split_is_deterministic_by_seed():
    strata = np.arange(200) % 3
    for s in (None, strata):
        a, b, c = (split_rows(200, 0.25, seed=k, strata=s)[1] for k in (7, 7, 8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
