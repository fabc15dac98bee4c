"""Time-series processor: lengths, channels, standardisation, files; NaN handling."""


import numpy as np
import pytest

from polymodal.errors import DecodeError

from ._helpers import assert_names, run


# ------------------------------------------------------------------------------------------------- timeseries
def test_timeseries_lengths_channels_and_standardisation():
    rng = np.random.default_rng(0)
    train = [rng.normal(5, 2, (20, 3)), rng.normal(5, 2, (30, 3)), rng.normal(5, 2, (10, 3))]
    arrays, present, _, spec = run("timeseries", train + [rng.normal(size=(40, 3))], fit_cells=train)
    allv = np.concatenate(train)
    assert spec.options["length"] == 30 and spec.options["channels"] == 3
    np.testing.assert_allclose(spec.options["mean"], allv.mean(0))
    np.testing.assert_allclose(spec.options["std"], allv.std(0))
    series, length = arrays["series"], arrays["length"]
    assert series.shape == (4, 30, 3) and length.tolist() == [20, 30, 10, 30] and present.all()
    np.testing.assert_allclose(series[0, :20], (train[0] - allv.mean(0)) / allv.std(0), rtol=1e-5, atol=1e-5)
    assert not series[0, 20:].any() and not series[2, 10:].any()


def test_timeseries_files_lists_and_json(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6.0))
    (tmp_path / "b.csv").write_text("v\n1\n2\n3\n")
    (tmp_path / "c.csv").write_text("4\n5\n")
    cells = ["a.npy", "b.csv", "c.csv", [7, 8], "[9.0, 10.0]"]
    arrays, present, _, spec = run("timeseries", cells, base_dir=tmp_path, options={"mean": [0.0], "std": [1.0]})
    assert present.all() and spec.options["length"] == 6 and spec.options["channels"] == 1
    assert arrays["length"].tolist() == [6, 3, 2, 2, 2]
    assert arrays["series"][:, :, 0].tolist()[1] == [1, 2, 3, 0, 0, 0]
    assert arrays["series"][4, :2, 0].tolist() == [9, 10]


def test_timeseries_nan_is_an_error_or_missing():
    cells = [[1.0, 2.0], [1.0, np.nan, 3.0]]
    with pytest.raises(DecodeError) as info:
        run("timeseries", cells, index=["s1", "s2"])
    assert_names(info.value, "s2")
    assert "NaN" in str(info.value)
    _, present, ctx, _ = run("timeseries", cells, on_error="missing")
    assert present.tolist() == [True, False] and ctx.report.errors == {"col": 1}


def test_timeseries_channel_mismatch_and_missing_file(tmp_path):
    opts = {"length": 5, "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    with pytest.raises(DecodeError, match=r"expected 3 channel.*got 2"):
        run("timeseries", [np.zeros((5, 2))], options=opts)
    with pytest.raises(DecodeError, match="transpose"):
        run("timeseries", [np.zeros((3, 50))], options=opts)
    with pytest.raises(DecodeError) as info:
        run("timeseries", ["missing.npy"], options=opts, base_dir=tmp_path)
    assert_names(info.value, 0, file="missing.npy")
    with pytest.raises(DecodeError, match="ragged"):
        run("timeseries", [[[1, 2], [3]]], options=opts)
