"""Schema inference: column -> modality kind, overrides, grouping and the errors users see."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.data.schema import ModalitySpec, Schema, infer_kind, infer_schema, infer_task, is_missing
from polymodal.errors import SchemaError


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _mixed_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "photo": [f"img/{i}.png" for i in range(n)],
            "clip": [f"wav/{i}.wav" for i in range(n)],
            "review": [f"this is review number {i} with several words" for i in range(n)],
            "age": rng.normal(40, 10, n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "signal": [rng.normal(size=(10, 2)) for _ in range(n)],
            "label": rng.integers(0, 3, n),
        }
    )


def test_infers_each_kind_and_groups_tabular_columns():
    schema = infer_schema(_mixed_frame(), "label")
    kinds = {s.name: (s.kind, s.columns) for s in schema}
    assert kinds == {
        "photo": ("image", ["photo"]),
        "clip": ("audio", ["clip"]),
        "review": ("text", ["review"]),
        "signal": ("timeseries", ["signal"]),
        "tabular": ("tabular", ["age", "city"]),
    }
    assert schema.label == "label" and schema.task == "classify"


@pytest.mark.parametrize(
    "column, values, kind",
    [
        ("x", [_png_bytes()] * 3, "image"),
        ("depth_map", [_png_bytes()] * 3, "depth"),
        ("height", ["a/1.npy", "a/2.npy"], "depth"),
        ("ts", ["a/1.npy", "a/2.npy"], "timeseries"),
        ("a", [{"array": np.zeros(10), "sampling_rate": 8000}] * 2, "audio"),
        ("pix", [np.zeros((16, 16, 3), np.uint8)] * 2, "image"),
        ("elevation", [np.zeros((16, 16))] * 2, "depth"),
        ("v", [np.zeros(16)] * 2, "timeseries"),
        ("n", [1.5, 2.5, None], "tabular"),
        ("b", [True, False, True], "tabular"),
    ],
)
def test_infer_kind_per_value_type(column, values, kind):
    assert infer_kind(column, pd.Series(values, dtype=object)) == kind


def test_all_missing_column_is_unusable_and_skipped():
    assert infer_kind("x", pd.Series([None, np.nan, "  "], dtype=object)) is None
    df = pd.DataFrame({"x": [None, None], "n": [1.0, 2.0], "y": [0, 1]})
    assert infer_schema(df, "y").names == ["tabular"]


def test_kinds_override_and_ignore():
    df = _mixed_frame()
    schema = infer_schema(df, "label", kinds={"city": "text", "clip": "ignore"}, ignore=["signal"])
    kinds = {s.name: s.kind for s in schema}
    assert kinds == {"photo": "image", "review": "text", "city": "text", "tabular": "tabular"}
    assert schema["tabular"].columns == ["age"]


def test_explicit_modalities_grouping():
    df = pd.DataFrame({"hr": [60.0, 70.0], "bp": [120.0, 130.0], "w": [80.0, 90.0], "y": [0, 1]})
    schema = infer_schema(df, "y", groups={"vitals": ["hr", "bp"]})
    assert [(s.name, s.kind, s.columns) for s in schema] == [
        ("vitals", "tabular", ["hr", "bp"]),
        ("tabular", "tabular", ["w"]),
    ]
    with pytest.raises(SchemaError, match="mixes column kinds"):
        infer_schema(_mixed_frame(), "label", groups={"bad": ["age", "review"]})
    with pytest.raises(SchemaError, match="'nope'"):
        infer_schema(df, "y", groups={"m": ["nope"]})


def test_grouping_per_channel_series_columns_into_one_timeseries():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: [rng.normal(size=20) for _ in range(4)] for c in ("ax", "ay", "az")})
    df["photo"] = [f"img/{i}.png" for i in range(4)]
    df["q"] = [f"a/{i}.png" for i in range(4)]
    df["y"] = [0, 1, 0, 1]
    schema = infer_schema(df, "y", groups={"motion": ["ay", "ax", "az"]})
    assert [(s.name, s.kind, s.columns) for s in schema] == [
        ("motion", "timeseries", ["ay", "ax", "az"]),  # channels in the order given
        ("photo", "image", ["photo"]),
        ("q", "image", ["q"]),
    ]
    with pytest.raises(SchemaError, match="only 'tabular' .* and 'timeseries' .* group several columns"):
        infer_schema(df, "y", groups={"pics": ["photo", "q"]})
    with pytest.raises(SchemaError, match="mixes column kinds"):
        infer_schema(df, "y", groups={"bad": ["ax", "photo"]})


def test_infer_kind_reads_parquet_nested_lists(tmp_path):
    """pyarrow returns list<list<...>> cells as object arrays of arrays: the nesting, not the dtype, decides."""
    rng = np.random.default_rng(0)
    pd.DataFrame({
        "motion": [rng.normal(size=(30, 3)).tolist() for _ in range(3)],
        "elevation": [rng.normal(size=(8, 8)).tolist() for _ in range(3)],
        "pix": [rng.integers(0, 255, size=(8, 8, 3)).tolist() for _ in range(3)],
        "bumpy": [[[1.0, 2.0], [3.0]]] * 3,  # ragged: left to the decoder, which names the row
    }).to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["motion"][0].dtype == object
    assert {c: infer_kind(c, back[c]) for c in back} == {
        "motion": "timeseries", "elevation": "depth", "pix": "image", "bumpy": "timeseries",
    }


def test_empty_table_error():
    with pytest.raises(SchemaError, match="empty"):
        infer_schema(pd.DataFrame({"x": [], "y": []}), "y")


def test_unknown_label_error_lists_columns():
    with pytest.raises(SchemaError, match=r"label column 'target' not found.*'age'"):
        infer_schema(_mixed_frame(), "target")


def test_unknown_kind_override_errors():
    df = _mixed_frame()
    with pytest.raises(SchemaError, match="choose one of"):
        infer_schema(df, "label", kinds={"age": "video"})
    with pytest.raises(SchemaError, match="lacks"):
        infer_schema(df, "label", kinds={"nope": "text"})


def test_unsupported_column_type_error_names_column():
    df = pd.DataFrame({"obj": [object(), object()], "y": [0, 1]})
    with pytest.raises(SchemaError, match=r"column 'obj'.*unsupported type"):
        infer_schema(df, "y")
    with pytest.raises(SchemaError, match="neither a known image"):
        infer_kind("raw", pd.Series([b"\x00\x01garbage"], dtype=object))


def test_no_usable_columns_error():
    with pytest.raises(SchemaError, match="no usable input columns"):
        infer_schema(pd.DataFrame({"y": [0, 1]}), "y")


def test_task_inference():
    assert infer_task(pd.Series(np.linspace(0, 1, 100))) == "regress"
    assert infer_task(pd.Series([0, 1, 2] * 30)) == "classify"
    assert infer_task(pd.Series(["a", "b"] * 10)) == "classify"
    with pytest.raises(SchemaError, match="task must be"):
        infer_schema(pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), "y", task="rank")


def test_spec_validation_and_json_round_trip():
    with pytest.raises(SchemaError, match="unknown kind"):
        ModalitySpec("m", "video", ["c"])
    with pytest.raises(SchemaError, match="exactly one column"):
        ModalitySpec("m", "image", ["a", "b"])
    assert ModalitySpec("m", "timeseries", ["a", "b"]).columns == ["a", "b"]  # per-channel columns
    schema = infer_schema(_mixed_frame(), "label")
    schema["tabular"].options["numeric"] = {"age": {"mean": np.float64(1.0), "std": 2.0}}
    again = Schema.from_dict(json.loads(schema.to_json()))
    assert again.names == schema.names and again.label == "label"
    assert [s.columns for s in again] == [s.columns for s in schema]
    assert again["tabular"].options["numeric"]["age"]["mean"] == 1.0
    with pytest.raises(SchemaError, match="lacks column"):
        schema.check_columns(pd.DataFrame({"photo": []}))


def test_is_missing_rule():
    for v in (None, np.nan, float("nan"), pd.NA, "", "   "):
        assert is_missing(v)
    for v in (0, 0.0, "a", b"", [], np.zeros(2)):
        assert not is_missing(v)
