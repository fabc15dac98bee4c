"""Reading tables (DataFrame / CSV / Parquet / JSONL / JSON) and decoding every modality of a schema."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.threads import finishes_within
from PIL import Image

from polymodal.data.kinds import DecodeContext
from polymodal.data.schema import infer_schema
from polymodal.data.table import decode_table, fit_schema, read_table
from polymodal.errors import DecodeError, SchemaError


def _small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["a", "b", None, "d"],
            "x": [1.5, np.nan, 3.0, -2.0],
            "k": [1, 2, 3, 4],
            "flag": [True, False, True, False],
        }
    )


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif path.suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_json(path, orient="records")


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.pq", "t.jsonl", "t.ndjson", "t.json"])
def test_read_table_round_trips(tmp_path, name):
    src = _small()
    _write(src, tmp_path / name)
    frame, base = read_table(tmp_path / name)
    assert base == tmp_path.resolve()
    assert list(frame.columns) == list(src.columns) and len(frame) == 4
    assert frame["name"].tolist()[:2] == ["a", "b"] and pd.isna(frame["name"].iloc[2])
    np.testing.assert_allclose(frame["x"].to_numpy(dtype=float), src["x"].to_numpy(), equal_nan=True)
    assert frame["k"].tolist() == [1, 2, 3, 4]
    assert [bool(v) for v in frame["flag"]] == [True, False, True, False]


def test_read_table_json_keeps_list_cells(tmp_path):
    rows = [{"ts": [1.0, 2.0], "y": 0}, {"ts": [3.0], "y": 1}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    frame, _ = read_table(str(tmp_path / "t.jsonl"))
    assert frame["ts"].tolist() == [[1.0, 2.0], [3.0]]


def test_read_table_dataframe_uses_cwd():
    df = _small()
    frame, base = read_table(df)
    assert frame is df and base == Path.cwd()


def test_read_table_errors(tmp_path):
    with pytest.raises(SchemaError, match=r"nope\.csv.*does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(SchemaError, match=r"unknown file extension '\.xlsx'.*Parquet.*JSON Lines"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match=r"bad\.parquet.*not a Parquet file.*PAR1.*accepted"):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(SchemaError, match=r"bad\.jsonl.*line 2"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SchemaError, match=r"empty\.csv.*empty"):
        read_table(tmp_path / "empty.csv")
    with pytest.raises(SchemaError, match="directory"):
        read_table(tmp_path)
    with pytest.raises(SchemaError, match="DataFrame or a path"):
        read_table(42)


# ------------------------------------------------------------------ special files, binary content, CSV structure
def _refused_fast(fn, seconds=5.0):
    return finishes_within(fn, seconds)


def test_read_table_refuses_special_files_fast(tmp_path):
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    err = _refused_fast(lambda: read_table(zero))
    assert isinstance(err, SchemaError) and "not a regular file (a character device)" in str(err), err
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    err = _refused_fast(lambda: read_table(fifo))
    assert isinstance(err, SchemaError) and "not a regular file (a FIFO" in str(err), err
    loop = tmp_path / "loop.csv"
    loop.symlink_to(tmp_path / "loop2.csv")
    (tmp_path / "loop2.csv").symlink_to(loop)
    with pytest.raises(SchemaError, match="symlink loop"):
        read_table(loop)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "gone.csv")
    with pytest.raises(SchemaError, match="symlink to .*gone.csv.*does not exist"):
        read_table(dangling)


@pytest.mark.parametrize("name,fmt", [("r.csv", "CSV"), ("r.tsv", "TSV"), ("r.jsonl", "JSON Lines"),
                                      ("r.json", "JSON"), ("r.parquet", "Parquet")])
def test_read_table_refuses_random_bytes(tmp_path, name, fmt):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(100_000))
    with pytest.raises(SchemaError, match=f"not a {fmt}"):
        read_table(tmp_path / name)


def test_read_table_csv_duplicate_header_and_short_rows(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("id,note,score,note\n1,a,2,b\n")
    with pytest.raises(SchemaError, match=r"names column 'note' twice \(columns 2 and 4\).*note\.1"):
        read_table(p)
    p = tmp_path / "short.csv"
    p.write_text("id,note,score\n1,a,2\n\n2,b\n3,c,4\n")
    with pytest.raises(SchemaError, match=r"line 4 has 2 field\(s\), fewer than the header's 3"):
        read_table(p)
    p = tmp_path / "long.csv"
    p.write_text("id,note\n1,a\n2,b,c\n")
    with pytest.raises(SchemaError, match=r"line 3 has 3 field\(s\), more than"):
        read_table(p)
    # empty fields, quoted separators and newlines, blank lines: fine
    p = tmp_path / "ok.csv"
    p.write_text('id,note,score\n1,,2\n2,"a, b\nc",3\n\n3,x,\n')
    frame, _ = read_table(p)
    assert frame["note"].tolist()[1] == "a, b\nc" and len(frame) == 3 and list(frame.columns) == ["id", "note", "score"]


@pytest.fixture
def av_table(tmp_path, fixture_data):
    """A small AV-digits style table on disk: MNIST PNGs + FSDD WAVs + text + numbers, relative paths."""
    with np.load(fixture_data / "mnist" / "mnist_test.npz") as z:
        images, labels = z["images"][:10], z["labels"][:10]
    (tmp_path / "media").mkdir()
    rows = []
    for i, (img, y) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(tmp_path / "media" / f"{i}.png")
        wav = fixture_data / "fsdd" / "recordings" / f"{int(y)}_jackson_{i}.wav"
        shutil.copy(wav, tmp_path / "media" / f"{i}.wav")
        caption = f"a handwritten digit {int(y)} , spoken by jackson"
        rows.append({"image": f"media/{i}.png", "audio": f"media/{i}.wav", "caption": caption,
                     "score": float(i), "label": int(y)})
    rows[3]["image"] = None
    rows[5]["audio"] = ""
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "table.csv", index=False)
    return tmp_path / "table.csv", images


def test_fit_and_decode_table_from_csv_resolves_relative_paths(av_table, monkeypatch, tmp_path_factory):
    path, images = av_table
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # relative paths must not depend on the cwd
    frame, base = read_table(path)
    schema = infer_schema(frame, "label", kinds={"caption": "text"})
    kinds = {s.name: s.kind for s in schema}
    assert kinds == {"image": "image", "audio": "audio", "caption": "text", "tabular": "tabular"}
    ctx = DecodeContext(base_dir=base)
    fit_schema(schema, frame, ctx)
    assert schema["image"].options == {"size": [28, 28], "channels": 1}
    assert schema["audio"].options["sample_rate"] == 8000
    json.loads(schema.to_json())  # fitted options stay JSON
    out = decode_table(schema, frame, ctx, progress=False)
    assert list(out) == schema.names
    px, present = out["image"][0]["pixels"], out["image"][1]
    assert present.tolist() == [i != 3 for i in range(10)]
    np.testing.assert_allclose(px[present, 0], images[present] / 255.0, atol=1e-6)
    assert out["audio"][1].tolist() == [i != 5 for i in range(10)]
    assert out["caption"][1].all() and out["tabular"][1].all()
    assert ctx.report.missing == {"image": 1, "audio": 1}
    assert ctx.report.n_errors == 0


def test_decode_table_error_names_row_column_file(av_table):
    path, _ = av_table
    frame, base = read_table(path)
    schema = infer_schema(frame, "label")
    fit_schema(schema, frame, DecodeContext(base_dir=base))
    os.remove(path.parent / "media" / "7.png")
    with pytest.raises(DecodeError) as info:
        decode_table(schema, frame, DecodeContext(base_dir=base))
    msg = str(info.value)
    assert "row 7" in msg and "column 'image'" in msg and "media/7.png" in msg and "does not exist" in msg
    ctx = DecodeContext(base_dir=base, on_error="missing")
    out = decode_table(schema, frame, ctx)
    assert not out["image"][1][7] and ctx.report.errors == {"image": 1}
    assert ctx.report.causes == {"absent file": 1}  # an absent file is an error treated as missing, ...
    assert ctx.report.missing == {"image": 1, "audio": 1}  # ... apart from the cells that were empty
    assert ctx.report.summary().startswith("1 value treated as missing (1 absent file; by column: image=1)")


def test_decode_table_checks_columns_first():
    schema = infer_schema(_small(), None)
    fit_schema(schema, _small())
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['x'\]"):
        decode_table(schema, _small().drop(columns=["x"]))


def test_progress_bar_only_for_long_tables(capsys, monkeypatch):
    """Progress goes to stderr, only for >= 200 rows of a file kind, and never when progress=False."""
    import polymodal.data.kinds.image as image_mod
    from polymodal.data.kinds import _common

    frame = pd.DataFrame({"img": [np.zeros((2, 2), np.uint8)] * 250})
    schema = infer_schema(frame, None, kinds={"img": "image"})
    fit_schema(schema, frame)
    seen = []

    def spy(items, total, description, ctx=None):
        seen.append(total >= _common.PROGRESS_MIN_ROWS and _common.progress_enabled.get())
        return _common.track(items, total, description, ctx)

    monkeypatch.setattr(image_mod, "track", spy)
    decode_table(schema, frame, progress=False)
    decode_table(schema, frame.iloc[:10])
    out = decode_table(schema, frame)
    assert seen == [False, False, True] and out["img"][1].all()
    assert capsys.readouterr().out == ""  # nothing on stdout
