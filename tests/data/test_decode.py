"""``data/decode.py``: decoding a table with a fitted schema — labels, a subset of modalities, base folders."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.data.decode import decode, subschema
from polymodal.data.kinds import DecodeContext, DecodeReport
from polymodal.data.labels import fit_labels
from polymodal.data.schema import infer_schema
from polymodal.data.table import Table, fit_schema
from polymodal.errors import DecodeError, SchemaError


def _frame(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "x1": rng.normal(size=n), "x2": rng.normal(size=n),
        "note": [f"word{i % 3} other" for i in range(n)],
        "y": ["a", "b"] * (n // 2),
    })


def _schema(frame: pd.DataFrame, label: str | None = "y", **kw):
    schema = infer_schema(frame, label, kinds={"note": "text"} if "note" in frame else None, **kw)
    if label is not None:
        fit_labels(schema, frame[label])
    fit_schema(schema, frame, kw.pop("ctx", None) or DecodeContext())
    return schema


def test_labels_require_decodes_targets_and_refuses_a_table_without_them():
    frame = _frame()
    schema = _schema(frame)
    frame_out, ds, report = decode(schema, frame, labels="require", progress=False)
    assert ds.target.tolist() == [0, 1] * 4 and len(ds) == 8
    pd.testing.assert_frame_equal(frame_out, frame)
    assert report.n_errors == 0
    with pytest.raises(SchemaError, match="label column 'y' not found"):
        decode(schema, frame.drop(columns="y"), labels="require", progress=False)


def test_labels_require_missing_label_raises_or_drops_and_counts():
    frame = _frame()
    frame.loc[3, "y"] = None
    schema = _schema(frame.drop(index=3))
    with pytest.raises(DecodeError, match=r"row 3, column 'y'.*label is missing"):
        decode(schema, frame, labels="require", progress=False)
    out = decode(schema, frame, labels="require", on_error="missing", progress=False)
    assert list(out.frame.index) == [0, 1, 2, 4, 5, 6, 7] and len(out.dataset) == 7
    assert out.report.dropped_rows == {"missing label": 1}
    assert out.dataset.target.tolist() == [0, 1, 0, 0, 1, 0, 1]  # row 3 (a "b") is gone


def test_labels_ignore_and_auto():
    frame = _frame()
    schema = _schema(frame)
    assert decode(schema, frame, labels="ignore", progress=False).dataset.target is None
    assert decode(schema, frame, labels="auto", progress=False).dataset.target is not None
    unlabelled = decode(schema, frame.drop(columns="y"), labels="auto", progress=False)
    assert unlabelled.dataset.target is None and len(unlabelled.dataset) == 8
    # ignore keeps rows whose label is missing (prediction tables need no label)
    holes = frame.assign(y=[None] * 8)
    assert len(decode(schema, holes, labels="ignore", progress=False).dataset) == 8


def test_names_decodes_only_those_modalities_and_no_label():
    frame = _frame()
    schema = _schema(frame)
    assert schema.names == ["note", "tabular"]
    out = decode(schema, frame[["note"]], names=["note"], progress=False)
    assert list(out.dataset.present) == ["note"] and out.dataset.target is None
    assert subschema(schema, ["note"]).label is None and subschema(schema, None) is schema
    with pytest.raises(SchemaError, match=r"unknown modalities \['nope'\]"):
        decode(schema, frame, names=["nope"], progress=False)
    with pytest.raises(SchemaError, match=r"lacks column"):
        decode(schema, frame[["note"]], names=["tabular"], progress=False)


def test_empty_table_is_an_error():
    frame = _frame()
    schema = _schema(frame)
    with pytest.raises(SchemaError, match="empty"):
        decode(schema, frame.iloc[:0], progress=False)


@pytest.fixture
def image_folder(tmp_path):
    """A folder holding ``media/<i>.png`` and ``table.csv`` whose ``img`` column names them relatively."""
    rng = np.random.default_rng(0)
    (tmp_path / "media").mkdir()
    pixels = rng.integers(0, 255, size=(4, 6, 6), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / "media" / f"{i}.png")
    frame = pd.DataFrame({"img": [f"media/{i}.png" for i in range(4)], "y": ["a", "b", "a", "b"]})
    frame.to_csv(tmp_path / "table.csv", index=False)
    schema = infer_schema(frame, "y", kinds={"img": "image"})
    fit_labels(schema, frame["y"])
    fit_schema(schema, frame, DecodeContext(base_dir=tmp_path))
    return tmp_path, frame, schema, pixels


def test_relative_paths_resolve_against_the_table_folder(image_folder, tmp_path_factory, monkeypatch):
    folder, frame, schema, pixels = image_folder
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # never the current directory for a Table or a file
    by_table = decode(schema, Table(frame, folder), progress=False)
    by_file = decode(schema, folder / "table.csv", progress=False)
    by_arg = decode(schema, frame, base_dir=folder, progress=False)
    for d in (by_table, by_file, by_arg):
        px = d.dataset.arrays["img"]["pixels"].numpy()
        np.testing.assert_allclose(px[:, 0], pixels / 255.0, atol=1e-6)
        assert d.dataset.present["img"].all()
    # a DataFrame alone resolves against the cwd, where the files are not
    with pytest.raises(DecodeError, match=r"row 0, column 'img'.*media/0.png"):
        decode(schema, frame, progress=False)
    missing = decode(schema, frame, on_error="missing", progress=False)
    assert not missing.dataset.present["img"].any() and missing.report.errors == {"img": 4}


def test_base_dir_overrides_the_folder_a_table_carries(image_folder, tmp_path):
    folder, frame, schema, _ = image_folder
    other = tmp_path / "empty"
    other.mkdir()
    with pytest.raises(DecodeError, match="does not exist"):
        decode(schema, Table(frame, folder), base_dir=other, progress=False)


def test_report_counts_empty_cells_apart_from_values_treated_as_missing(image_folder):
    """Empty cells are ``missing``; absent and corrupt files are ``errors`` treated as missing, counted by cause."""
    folder, _, schema, _ = image_folder
    (folder / "media" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = pd.DataFrame({
        "img": ["media/0.png", None, "media/gone.png", "media/bad.png", "media/gone_too.png", "  "],
        "y": ["a", "b", "a", "b", "a", "b"],
    })
    d = decode(schema, Table(rows, folder), on_error="missing", progress=False)
    r = d.report
    assert d.dataset.present["img"].tolist() == [True, False, False, False, False, False]
    assert r.missing == {"img": 2} and r.errors == {"img": 3} and r.n_errors == 3
    assert r.causes == {"absent file": 2, "corrupt image": 1}
    assert [(e["row"], e["cause"]) for e in r.examples] == [(2, "absent file"), (3, "corrupt image"),
                                                             (4, "absent file")]
    assert r.summary() == (
        "3 values treated as missing (2 absent files, 1 corrupt image; by column: img=3); 2 empty cells (img=2)"
    )
    assert r.to_dict()["causes"] == {"absent file": 2, "corrupt image": 1}
    total = DecodeReport()
    total.merge(r)
    total.merge(r)  # e.g. the training table's report plus the validation table's
    assert total.causes == {"absent file": 4, "corrupt image": 2} and total.missing == {"img": 4}
    assert total.errors == {"img": 6} and len(total.examples) == 6
    assert DecodeReport().summary() == "no decode errors"


def test_a_table_without_any_label_is_refused_not_scored_as_nan():
    import pandas as pd

    from polymodal.data.decode import decode
    from polymodal.data.schema import ModalitySpec, Schema
    from polymodal.errors import SchemaError

    schema = Schema({"x": ModalitySpec("x", "tabular", ["x"], options={"numeric": {"x": {"mean": 0.0, "std": 1.0}}})},
                    label="y", task="classify")
    schema.classes = [0, 1]
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [None, None]})
    with pytest.raises(SchemaError, match="none of the 2 rows has a label"):
        decode(schema, frame, on_error="missing", labels="require")
