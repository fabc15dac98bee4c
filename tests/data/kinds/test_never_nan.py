"""A huge but finite value (1e25, a valid float32) never comes out of predict / embed as NaN (issue 12, item 1):
it is refused with a DecodeError naming row and column, or (on_error='missing') treated as missing."""

import numpy as np
import pandas as pd
import pytest

import polymodal as pm
from polymodal.errors import DecodeError


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    n = 32
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "a": rng.standard_normal(n) + y,
        "b": rng.standard_normal(n),
        "ts": [rng.standard_normal(6) + k for k in y],
        "y": y,
    })
    return pm.fit(frame, "y", kinds={"ts": "timeseries"}, align="clip", epochs=1, batch_size=16, dim=16,
                  progress=False), frame


@pytest.mark.parametrize("where", ["tabular", "series"])
def test_predict_and_embed_on_a_huge_value_raise_or_treat_as_missing(model, where):
    m, frame = model
    new = frame.drop(columns=["y"]).iloc[:4].copy()
    new.index = ["p", "q", "r", "s"]
    if where == "tabular":
        new.loc["q", "a"] = 1e25
        column = "a"
    else:
        new.at["q", "ts"] = np.array([0.0, 1e25, 0.0, 0.0, 0.0, 0.0])
        column = "ts"
    for call in (m.predict, m.embed):
        with pytest.raises(DecodeError) as info:
            call(new)
        assert "row 'q'" in str(info.value) and f"column {column!r}" in str(info.value)
        assert "too large" in str(info.value)
    out = m.predict(new, on_error="missing", progress=False)
    numbers = out.select_dtypes("number").to_numpy(dtype=float)
    assert numbers.size and np.isfinite(numbers).all()
    emb = m.embed(new, on_error="missing")
    vectors = [v for col in emb.columns for v in emb[col].tolist() if v is not None]
    assert vectors and all(np.isfinite(v).all() for v in vectors)
    assert emb.loc["q", "emb_ts" if where == "series" else "emb_tabular"] is None or where == "tabular"
