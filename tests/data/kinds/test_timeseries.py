"""Time-series processor: lengths, channels, standardisation, files; NaN handling; nested lists and Parquet
list<list<float>> cells (time-major); the channel-first check; per-channel columns grouped into one series."""


import numpy as np
import pandas as pd
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


# ------------------------------------------------------------------------------- nested lists and Parquet
def _walks(lengths, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(size=(t, channels)), axis=0) for t in lengths]


def test_parquet_list_of_lists_round_trip_is_time_major(tmp_path):
    """list<list<float>> cells (rows = time steps, inner lists = channels), variable length, read back by pyarrow."""
    from polymodal.data.schema import infer_schema
    from polymodal.data.table import read_table

    walks = _walks([30, 25, 40, 12])
    pd.DataFrame({"motion": [w.tolist() for w in walks], "y": [0, 1, 0, 1]}).to_parquet(tmp_path / "t.parquet")
    frame, _ = read_table(tmp_path / "t.parquet")
    cell = frame["motion"].iloc[0]
    assert cell.dtype == object and isinstance(cell[0], np.ndarray)  # what pyarrow gives back
    assert {s.name: s.kind for s in infer_schema(frame, "y")} == {"motion": "timeseries"}
    arrays, present, _, spec = run("timeseries", frame[["motion"]], options={"mean": [0.0] * 3, "std": [1.0] * 3})
    assert present.all() and spec.options["channels"] == 3 and spec.options["length"] == 40
    assert spec.options["layout"] == "time_major"
    assert arrays["length"].tolist() == [30, 25, 40, 12]
    for k, w in enumerate(walks):
        np.testing.assert_allclose(arrays["series"][k, : len(w)], w, rtol=1e-6, atol=1e-5)
        assert not arrays["series"][k, len(w):].any()


def test_fixed_size_lists_nested_python_lists_and_lists_of_arrays(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    walks = _walks([6, 6, 6], channels=2)
    typ = pa.list_(pa.list_(pa.float32(), 2), 6)  # fixed-size list<fixed-size list<float, 2>, 6>
    pq.write_table(pa.table({"s": pa.array([w.tolist() for w in walks], type=typ)}), tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")["s"].tolist()
    cells = back + [walks[0].tolist(), list(walks[1])]  # pyarrow cells, nested Python lists, a list of arrays
    arrays, present, _, spec = run("timeseries", cells, options={"mean": [0.0] * 2, "std": [1.0] * 2})
    assert present.all() and spec.options["channels"] == 2
    expect = [walks[0], walks[1], walks[2], walks[0], walks[1]]
    np.testing.assert_allclose(arrays["series"], np.stack(expect), rtol=1e-6, atol=1e-5)


def test_ragged_inner_lists_are_named_as_such():
    ragged = np.array([np.array([1.0, 2.0]), np.array([3.0])], dtype=object)  # pyarrow-style, inner lengths 2 and 1
    with pytest.raises(DecodeError, match="ragged") as info:
        run("timeseries", [np.zeros((4, 2)), ragged], options={"mean": [0.0] * 2, "std": [1.0] * 2})
    assert_names(info.value, 1)
    with pytest.raises(DecodeError, match="non-numbers"):
        run("timeseries", [[1.0, "a", None]], options={"length": 3, "channels": 1, "mean": [0.0], "std": [1.0]})


def test_channel_first_cells_are_refused_with_a_transpose_hint_unless_layout_says_so():
    from polymodal.errors import SchemaError

    walks = _walks([500, 400, 450])
    channel_first = [w.T for w in walks]  # (3, 500), (3, 400), (3, 450): 3 < T in every row
    with pytest.raises(SchemaError, match=r"looks channel-first.*rows = time steps, columns = channels") as info:
        run("timeseries", channel_first)
    assert "transpose" in str(info.value).lower() and "layout='channels_first'" in str(info.value)
    arrays, present, _, spec = run("timeseries", channel_first, options={"layout": "channels_first"})
    ref, _, _, ref_spec = run("timeseries", walks)
    assert present.all() and spec.options["channels"] == 3 and spec.options["length"] == 500
    np.testing.assert_allclose(arrays["series"], ref["series"], atol=1e-6)
    assert spec.options["mean"] == pytest.approx(ref_spec.options["mean"])
    # stated explicitly, time-major is kept as it is (500 channels over 3 steps)
    _, _, _, spec = run("timeseries", [w.T[:, :400] for w in walks], options={"layout": "time_major"})
    assert spec.options["channels"] == 400
    with pytest.raises(SchemaError, match="option 'layout'"):
        run("timeseries", walks, options={"layout": "sideways"})


def test_time_major_series_of_any_shape_pass_the_layout_check():
    # more steps than channels, 1-D cells, or a varying first axis: nothing looks channel-first
    for cells in (_walks([5, 8], channels=3), [np.arange(4.0), np.arange(6.0)], [np.zeros((2, 3)), np.zeros((4, 3))]):
        _, present, _, spec = run("timeseries", cells)
        assert present.all() and spec.options["layout"] == "time_major"


# ------------------------------------------------------------------------- grouped per-channel columns
def _per_channel_frame(walks):
    cols = ["ax", "ay", "az"]
    return pd.DataFrame({c: pd.Series([w[:, j] for w in walks], dtype=object) for j, c in enumerate(cols)})


def test_grouped_columns_stack_into_one_multichannel_series_in_the_order_given():
    walks = _walks([20, 15, 30])
    frame = _per_channel_frame(walks)
    arrays, present, _, spec = run("timeseries", frame, columns=["az", "ax", "ay"])
    assert present.all() and spec.options["channels"] == 3 and spec.options["length"] == 30
    order = [2, 0, 1]
    allv = np.concatenate(walks)[:, order]
    np.testing.assert_allclose(spec.options["mean"], allv.mean(0))
    for k, w in enumerate(walks):
        np.testing.assert_allclose(
            arrays["series"][k, : len(w)], (w[:, order] - allv.mean(0)) / allv.std(0), rtol=1e-5, atol=1e-5
        )
    assert arrays["length"].tolist() == [20, 15, 30]


def test_grouped_columns_errors_name_the_column_and_empty_rows_are_missing():
    walks = _walks([10, 10, 10, 10])
    frame = _per_channel_frame(walks)
    frame.index = ["r0", "r1", "r2", "r3"]
    frame.at["r1", "ay"] = walks[1][:7, 1]  # one channel shorter than the others
    frame.at["r2", "az"] = None  # one channel empty
    frame.loc["r3"] = [None, None, None]  # the whole series empty: missing
    fit_rows = _per_channel_frame(walks)
    with pytest.raises(DecodeError, match=r"different lengths.*ax=10, ay=7, az=10") as info:
        run("timeseries", frame, fit_cells=fit_rows)
    assert_names(info.value, "r1", "ay")
    with pytest.raises(DecodeError, match=r"empty in column\(s\) \['az'\]") as info:
        run("timeseries", frame.drop(index="r1"), fit_cells=fit_rows)
    assert_names(info.value, "r2", "az")
    _, present, ctx, _ = run("timeseries", frame, fit_cells=fit_rows, on_error="missing")
    assert present.tolist() == [True, False, False, False]
    assert ctx.report.errors == {"ay": 1, "az": 1} and ctx.report.missing == {"ax": 1, "ay": 1, "az": 1}


def test_grouped_series_through_fit(tmp_path):
    from polymodal.data.schema import infer_schema
    from polymodal.recipes.fit import fit

    rng = np.random.default_rng(0)
    n, t = 24, 32
    y = np.arange(n) % 2
    steps = np.arange(t)
    walks = [np.stack([np.sin(steps * (0.2 + 0.4 * c) + k) for k in range(3)], 1) + 0.1 * rng.normal(size=(t, 3))
             for c in y]
    frame = _per_channel_frame(walks).assign(y=y)
    frame.to_parquet(tmp_path / "motion.parquet")
    groups = {"motion": ["ax", "ay", "az"]}
    schema = infer_schema(pd.read_parquet(tmp_path / "motion.parquet"), "y", groups=groups)
    assert [(s.name, s.kind, s.columns) for s in schema] == [("motion", "timeseries", ["ax", "ay", "az"])]
    model = fit(tmp_path / "motion.parquet", "y", groups=groups, epochs=1, dim=16, progress=False)
    spec = model.schema["motion"]
    assert spec.kind == "timeseries" and spec.columns == ["ax", "ay", "az"]
    assert spec.options["channels"] == 3 and spec.options["length"] == t
    preds = model.predict(frame.drop(columns="y"))
    assert len(preds) == n and set(preds.iloc[:, 0]) <= {0, 1}
