"""Schema inference: column -> modality kind, overrides, grouping and the errors users see."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import DecodeError
from PIL import Image

from polymodal.data.schema import (
    ModalitySpec,
    Schema,
    infer_column,
    infer_kind,
    infer_schema,
    infer_task,
    is_missing,
)
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


# ------------------------------------------------------------------- majority inference and its evidence
def _png_files(folder, n: int, prefix: str = "") -> list[str]:
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}{i}.png").write_bytes(_png_bytes())
    return [f"{folder.name}/{prefix}{i}.png" for i in range(n)]


def test_a_png_named_bin_and_a_directory_do_not_change_an_image_column(tmp_path):
    paths = _png_files(tmp_path / "img", 30)
    (tmp_path / "img" / "odd.bin").write_bytes(_png_bytes())  # a real PNG under another name
    (tmp_path / "img" / "sub").mkdir()
    paths[0], paths[5], paths[17] = "img/odd.bin", "img/sub", "img/typo"  # the first row is the odd one
    df = pd.DataFrame({"photo": paths, "y": [0, 1] * 15})
    schema = infer_schema(df, "y", base_dir=tmp_path)
    assert [(s.name, s.kind) for s in schema] == [("photo", "image")]
    ev = schema["photo"].evidence["photo"]
    assert ev["kind"] == "image" and ev["sampled"] == 30 and ev["agree"] == 28 and ev["disagree"] == 2
    assert ev["rows"] == [5, 17] and ev["by_content_rows"] == [0]
    assert ev["summary"].startswith("image: 28 of 30 sampled cells are image files")
    assert "1 recognised by content, not by extension (rows 0)" in ev["summary"]
    assert "row 5: a directory 'img/sub'" in ev["summary"] and "row 17: the string 'img/typo'" in ev["summary"]
    # a column of real images that all have odd names is an image column too (magic bytes)
    for i in range(4):
        (tmp_path / f"blob{i}").write_bytes(_png_bytes())
    assert infer_kind("f", pd.Series([f"blob{i}" for i in range(4)]), base_dir=tmp_path) == "image"


def test_a_stray_string_in_a_numeric_csv_column_stays_numeric_and_is_reported(tmp_path):
    rng = np.random.default_rng(0)
    vals = [f"{x:.3f}" for x in rng.normal(size=40)]
    vals[7] = "oops"
    pd.DataFrame({"age": vals, "w": rng.normal(size=40), "y": [0, 1] * 20}).to_csv(tmp_path / "t.csv", index=False)
    df = pd.read_csv(tmp_path / "t.csv")
    assert not pd.api.types.is_numeric_dtype(df["age"])  # what one stray string does to a CSV column
    schema = infer_schema(df, "y")
    assert [(s.name, s.kind, s.columns) for s in schema] == [("tabular", "tabular", ["age", "w"])]
    ev = schema["tabular"].evidence["age"]
    assert ev["as"] == "numeric" and ev["agree"] == 39 and ev["disagree"] == 1 and ev["rows"] == [7]
    assert ev["summary"] == ("tabular (numeric): 39 of 40 sampled cells are numbers; "
                             "1 disagrees (row 7: the string 'oops')")
    assert schema["tabular"].evidence["w"]["as"] == "numeric"
    # strings that only look numeric, with no stray, stay categorical (as the tabular processor keeps them)
    ev = infer_column("code", pd.Series(["1", "2", "2", "3"])).evidence
    assert ev["kind"] == "tabular" and ev["as"] == "categorical" and ev["disagree"] == 0


def test_json_list_strings_from_a_csv_are_a_timeseries(tmp_path):
    from polymodal.data.kinds.base import DecodeContext
    from polymodal.data.table import decode_table, fit_schema

    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "flat": [json.dumps(rng.normal(size=12).round(3).tolist()) for _ in range(6)],
        "multi": [json.dumps(rng.normal(size=(9, 2)).round(3).tolist()) for _ in range(6)],
        "y": [0, 1] * 3,
    })
    df.to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv")
    assert isinstance(back["flat"][0], str) and back["flat"][0].startswith("[")
    schema = infer_schema(back, "y")
    assert {s.name: s.kind for s in schema} == {"flat": "timeseries", "multi": "timeseries"}
    assert schema["multi"].evidence["multi"]["summary"] == "timeseries: 6 of 6 sampled cells are JSON numeric lists"
    ctx = DecodeContext(base_dir=tmp_path)
    fit_schema(schema, back, ctx, progress=False)
    arrays = decode_table(schema, back, ctx, progress=False)
    assert schema["multi"].options["channels"] == 2 and schema["flat"].options["channels"] == 1
    assert arrays is not None


def test_the_majority_of_a_spread_sample_decides_not_the_first_rows():
    paths = [f"img/{i}.png" for i in range(5000)]
    paths[:10] = [f"stray {i}" for i in range(10)]  # every first row disagrees
    found = infer_column("photo", pd.Series(paths))
    assert found.kind == "image"
    assert found.evidence["sampled"] == 1000 and found.evidence["disagree"] <= 10
    assert infer_column("photo", pd.Series(paths)).evidence == found.evidence  # deterministic
    assert infer_kind("n", pd.Series([1.0, 2.0, "x", 4.0, 5.0], dtype=object)) == "tabular"


def test_evidence_round_trips_through_schema_json():
    schema = infer_schema(_mixed_frame(), "label")
    again = Schema.from_dict(json.loads(schema.to_json()))
    assert [s.evidence for s in again] == [s.evidence for s in schema]
    assert again["photo"].evidence["photo"]["summary"] == "image: 40 of 40 sampled cells are image files"
    old = json.loads(schema.to_json())
    for m in old["modalities"]:
        del m["evidence"]  # a schema.json written before the field existed
    assert Schema.from_dict(old)["photo"].evidence == {}
    assert infer_schema(_mixed_frame(), "label", kinds={"city": "text"})["city"].evidence == {
        "city": {"kind": "text", "summary": "text: set by kinds="}
    }


def test_a_tiny_fit_prints_the_inferred_schema(capsys):
    import polymodal as pm

    rng = np.random.default_rng(0)
    n = 24
    age = [f"{x:.2f}" for x in rng.normal(size=n)]
    age[3] = "oops"
    df = pd.DataFrame({
        "age": age,  # object dtype, as a CSV column with a stray string reads
        "w": rng.normal(size=n),
        "signal": [json.dumps(rng.normal(size=(8, 2)).round(3).tolist()) for _ in range(n)],
        "y": [0, 1] * (n // 2),
    })
    with pytest.raises(DecodeError, match=r"row 3, column 'age': expected a number"):  # the stray is a bad value
        pm.fit(df, "y", epochs=1, dim=16, progress=False)
    model = pm.fit(df, "y", epochs=1, dim=16, progress=True, on_error="missing")
    assert model.info["decode_report"]["errors"] == {"age": 1}  # counted, not silently a category
    err = capsys.readouterr().err.splitlines()
    i = err.index("polymodal: schema (modality -> kind <- columns)")
    assert err[i + 1] == "  signal -> timeseries <- signal"
    assert err[i + 2] == ("  tabular -> tabular <- age, w  [age: tabular (numeric): 23 of 24 sampled cells are "
                          "numbers; 1 disagrees (row 3: the string 'oops')]")


def test_a_dotted_column_name_becomes_a_usable_modality_name():
    """'img.path' would key the net's modules ('.' is refused by torch): the modality is 'img_path', reading the
    column 'img.path'; a groups= name with '.' is refused with the fix."""
    frame = pd.DataFrame({"img.path": ["a b c", "d e f", "g h i"] * 4, "y": [0, 1, 0] * 4})
    s = infer_schema(frame, "y", kinds={"img.path": "text"})
    assert s.names == ["img_path"] and s["img_path"].columns == ["img.path"]
    with pytest.raises(SchemaError, match="without '.'"):
        infer_schema(frame, "y", groups={"a.b": ["img.path"]})
