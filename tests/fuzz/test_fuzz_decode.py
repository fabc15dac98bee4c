"""Property-based fuzz of decode + predict (issue 12): every cell of every kind, valid or not, either decodes to
finite outputs or raises polymodal's documented error, and no call hangs.

One tiny model (image files, WAV files, text, a number, a category, a float series; label ``y``) is trained once
per module. Hypothesis then draws 1-5 row tables whose cells come from a per-kind strategy: valid values;
None / NaN / empty; wrong types (int in text, str in numeric, dict, list, bytes); extreme numbers (1e25, -1e308,
inf, nan, subnormals, huge ints); arrays of the wrong shape or dtype (0x0, 3-D, object, complex); special files
(missing, a directory, a FIFO, /dev/null, a symlink loop, an empty file, a truncated WAV, random bytes named
.png / .wav, a PNG whose header declares a huge image); long strings, unicode and NUL bytes.

Each table goes through ``model.predict`` under both policies, each call in a daemon thread with a 10 s bound:

- ``on_error="raise"``: success with finite probabilities in [0, 1] summing to 1 for every row, or a
  ``PolymodalError``; a ``DecodeError`` names one of the table's index labels and one of its columns.
- ``on_error="missing"``: success with finite outputs for every row (predict keeps every row), or a
  ``SchemaError`` (a table-level problem).

The one table-level fault generated is a missing column (about 1 table in 5 drops one), so a ``SchemaError`` on a table
that has every column fails the test, under either policy.

Anything else (another exception type, a NaN output, a dropped row, a hang) fails. Counters are printed by the
last test. Nothing of the generated domain is excluded.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from polymodal.errors import DecodeError, PolymodalError, SchemaError  # noqa: E402

TIMEOUT_S = 10.0
MAX_EXAMPLES = 1000
COLUMNS = ["image", "audio", "text", "num", "cat", "series"]
STATS = {"examples": 0, "records": 0, "calls": 0, "ok": 0, "ok_raise": 0, "ok_missing": 0, "polymodal_errors": 0, "decode_errors": 0,
         "schema_errors": 0, "other_exceptions": 0, "nan_outputs": 0, "hangs": 0}
FAILURES: list[str] = []


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _huge_header_png() -> bytes:
    """A valid PNG signature + IHDR declaring 100000 x 100000 RGB, with a tiny (wrong) IDAT."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(model, {name: path}) -- the tiny model and the files (valid and special) the strategies draw from."""
    import soundfile as sf
    from PIL import Image

    from polymodal.recipes.fit import fit

    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        img = d / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(img)
        wav = d / f"aud{i}.wav"
        sf.write(wav, (rng.standard_normal(800) * 0.1).astype("float32"), 8000)
        rows.append({"image": str(img), "audio": str(wav), "text": f"sample {i} says word{i % 5} and more {i * 7}",
                     "num": float(i), "cat": "abc"[i % 3], "series": rng.standard_normal(10).astype("float32"),
                     "y": "xy"[i % 2]})
    df = pd.DataFrame(rows)
    model = fit(df, "y", kinds={"text": "text"}, epochs=1, dim=16, progress=False)
    kinds = {s.name: s.kind for s in model.schema}
    assert {"image", "audio", "text", "series"} <= set(kinds), kinds

    files: dict[str, str] = {"valid_png": rows[0]["image"], "valid_wav": rows[0]["audio"]}
    files["missing.png"] = str(d / "missing.png")
    files["missing.wav"] = str(d / "missing.wav")
    (d / "adir.png").mkdir()
    files["dir.png"] = str(d / "adir.png")
    os.mkfifo(d / "fifo.wav")
    files["fifo.wav"] = str(d / "fifo.wav")
    os.mkfifo(d / "fifo.png")
    files["fifo.png"] = str(d / "fifo.png")
    files["devnull"] = "/dev/null"
    os.symlink(d / "loopb.png", d / "loopa.png")
    os.symlink(d / "loopa.png", d / "loopb.png")
    files["loop.png"] = str(d / "loopa.png")
    (d / "empty.png").write_bytes(b"")
    files["empty.png"] = str(d / "empty.png")
    (d / "empty.wav").write_bytes(b"")
    files["empty.wav"] = str(d / "empty.wav")
    full = Path(rows[1]["audio"]).read_bytes()
    (d / "trunc.wav").write_bytes(full[: len(full) // 2])
    files["trunc.wav"] = str(d / "trunc.wav")
    (d / "header_only.wav").write_bytes(full[:44])
    files["header_only.wav"] = str(d / "header_only.wav")
    (d / "rand.png").write_bytes(rng.bytes(300))
    files["rand.png"] = str(d / "rand.png")
    (d / "rand.wav").write_bytes(rng.bytes(300))
    files["rand.wav"] = str(d / "rand.wav")
    (d / "huge.png").write_bytes(_huge_header_png())
    files["huge.png"] = str(d / "huge.png")
    png = Path(rows[2]["image"]).read_bytes()
    (d / "trunc.png").write_bytes(png[: len(png) // 2])
    files["trunc.png"] = str(d / "trunc.png")
    (d / "png_as.wav").write_bytes(png)
    files["png_as.wav"] = str(d / "png_as.wav")
    (d / "wav_as.png").write_bytes(full)
    files["wav_as.png"] = str(d / "wav_as.png")
    files["valid_paths"] = {"image": [r["image"] for r in rows], "audio": [r["audio"] for r in rows]}
    return model, files


# ---- strategies ---------------------------------------------------------------------------------------------

EXTREME = st.sampled_from([1e25, -1e308, 1e308, math.inf, -math.inf, math.nan, 5e-324, -0.0, 2.2250738585072014e-308,
                           10**30, -(10**400), 2**63, -(2**64)])
EMPTY = st.sampled_from([None, math.nan, "", " ", pd.NA, pd.NaT])
WRONG = st.one_of(
    st.integers(), st.booleans(), st.just({"a": 1}), st.just([1, 2, 3]), st.just([]), st.binary(max_size=20),
    st.just(b"\x00\xff"), st.just(object()), st.just(1 + 2j), st.just(pd.Timestamp(0)),
)
STRINGS = st.one_of(
    st.text(max_size=40), st.text(min_size=2000, max_size=3000, alphabet="ab c\u00e9\u4e2d"),
    st.just("\x00\x00nul"), st.just("\ud83d\ude00 emoji \u200b\u202e"), st.just("a" * 100_000),
    st.just("~nouser/x.png"), st.just("file://"), st.just("."),
)
ARRAYS = st.one_of(
    st.just(np.zeros((0, 0))), st.just(np.zeros(0, dtype=np.float32)), st.just(np.zeros((2, 3, 4, 5))),
    st.just(np.array([1, "a", None], dtype=object)), st.just(np.ones(5, dtype=np.complex64)),
    st.just(np.full(10, np.nan)), st.just(np.full(10, np.inf)), st.just(np.full(10, 1e308)),
    st.just(np.ones((10, 7), dtype=np.float64)), st.just(np.ones(10_000, dtype=np.float16)),
    st.just(np.array(["x"] * 10)), st.just(np.ones(10, dtype=bool)), st.just(np.int64(3)),
    st.just(np.zeros((8, 8), dtype=np.uint8)), st.just(np.zeros((8, 8, 3), dtype=np.uint8)),
    st.just(np.zeros((1, 1, 1), dtype=np.uint8)), st.just(np.full((4, 4, 3), 255, dtype=np.int64)),
    st.just(np.ones((3, 8, 8), dtype=np.float32) * 1e30),
)
FILE_NAMES = ["missing.png", "missing.wav", "dir.png", "fifo.wav", "fifo.png", "devnull", "loop.png", "empty.png",
              "empty.wav", "trunc.wav", "header_only.wav", "rand.png", "rand.wav", "huge.png", "trunc.png",
              "png_as.wav", "wav_as.png"]
SPECIAL = st.sampled_from(FILE_NAMES).map(lambda n: ("file", n))
VALID_IMAGE = st.integers(0, 23).map(lambda i: ("valid", "image", i))
VALID_AUDIO = st.integers(0, 23).map(lambda i: ("valid", "audio", i))
BAD = st.one_of(EMPTY, WRONG, EXTREME, STRINGS, ARRAYS, SPECIAL)

CELL = {
    "image": st.one_of(VALID_IMAGE, VALID_IMAGE, BAD),
    "audio": st.one_of(VALID_AUDIO, VALID_AUDIO, BAD),
    "text": st.one_of(st.text(max_size=30), st.text(max_size=30), BAD),
    "num": st.one_of(st.floats(-100, 100), st.floats(allow_nan=True, allow_infinity=True), BAD),
    "cat": st.one_of(st.sampled_from(["a", "b", "c", "unseen"]), BAD),
    "series": st.one_of(
        st.lists(st.floats(-5, 5, width=32), min_size=10, max_size=10).map(lambda v: np.array(v, np.float32)),
        st.lists(st.floats(width=32), min_size=0, max_size=20).map(lambda v: np.array(v, np.float32)), BAD),
}
VALID_CELL = {
    "image": VALID_IMAGE, "audio": VALID_AUDIO, "text": st.text(max_size=30), "num": st.floats(-100, 100),
    "cat": st.sampled_from(["a", "b", "c", "unseen"]),
    "series": st.lists(st.floats(-5, 5, width=32), min_size=1, max_size=30).map(lambda v: np.array(v, np.float32)),
}
ROW = st.one_of(st.fixed_dictionaries(VALID_CELL), st.fixed_dictionaries(CELL))  # half the rows are all valid
TABLE = st.tuples(
    st.lists(ROW, min_size=1, max_size=5),
    st.sampled_from(["range", "str", "shuffled", "dup"]),
    st.sampled_from([set()] * 24 + [{c} for c in COLUMNS]),  # about 1 table in 5 lacks a column
)


def _resolve(value, files):
    if isinstance(value, tuple) and value and value[0] == "valid":
        return files["valid_paths"][value[1]][value[2]]
    if isinstance(value, tuple) and value and value[0] == "file":
        return files[value[1]]
    return value


def _frame(rows, index_kind, drop, files) -> pd.DataFrame:
    n = len(rows)
    data = {c: pd.Series([_resolve(r[c], files) for r in rows], dtype=object) for c in COLUMNS}
    df = pd.DataFrame(data)
    if index_kind == "str":
        df.index = [f"r{i}" for i in range(n)]
    elif index_kind == "shuffled":
        df.index = list(range(10 * n, 0, -10))
    elif index_kind == "dup" and n > 1:
        df.index = [7] * n
    # a valid-looking column keeps its natural dtype now and then (a float column, a str column)
    for c in COLUMNS:
        try:
            df[c] = df[c].infer_objects()
        except Exception:  # noqa: BLE001  (whatever pandas makes of it, the object column stays)
            pass
    return df.drop(columns=sorted(drop))


def _call(model, df, on_error):
    """('ok', result) | ('error', exc) | ('hang', None): predict in a daemon thread, bounded by TIMEOUT_S."""
    box: dict = {}

    def target():
        try:
            box["result"] = model.predict(df, on_error=on_error, progress=False)
        except BaseException as exc:  # noqa: BLE001  (judged by the caller)
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT_S)
    if t.is_alive():
        return "hang", None
    return ("error", box["error"]) if "error" in box else ("ok", box["result"])


def _check_result(model, df, result) -> str | None:
    if len(result) != len(df) or list(result.index) != list(df.index):
        return f"rows changed: {len(df)} in, {len(result)} out"
    proba = result[[f"proba_{c}" for c in model.schema.classes]].to_numpy(dtype=float)
    if not np.isfinite(proba).all():
        STATS["nan_outputs"] += 1
        return f"non-finite probabilities {proba.tolist()}"
    if (proba < 0).any() or (proba > 1).any() or not np.allclose(proba.sum(1), 1.0, atol=1e-4):
        return f"probabilities out of range / not summing to 1: {proba.tolist()}"
    return None


def _judge(model, df, on_error, dropped) -> str | None:
    STATS["calls"] += 1
    status, value = _call(model, df, on_error)
    if status == "hang":
        STATS["hangs"] += 1
        return f"hang (> {TIMEOUT_S} s)"
    if status == "ok":
        STATS["ok"] += 1
        STATS[f"ok_{on_error}"] += 1
        return _check_result(model, df, value)
    exc = value
    if not isinstance(exc, PolymodalError):
        STATS["other_exceptions"] += 1
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    STATS["polymodal_errors"] += 1
    if isinstance(exc, DecodeError):
        STATS["decode_errors"] += 1
        if on_error == "missing":
            return f"DecodeError under on_error='missing': {str(exc)[:300]}"
        if exc.row not in list(df.index):
            return f"DecodeError row {exc.row!r} is not an index label of {list(df.index)}"
        if exc.column not in list(df.columns):
            return f"DecodeError column {exc.column!r} is not a column of {list(df.columns)}"
        return None
    if isinstance(exc, SchemaError):
        STATS["schema_errors"] += 1
        if not dropped:  # the only table-level fault generated is a missing column
            return f"SchemaError on a table with every column: {str(exc)[:300]}"
        return None
    if on_error == "missing":
        return f"{type(exc).__name__} under on_error='missing': {str(exc)[:300]}"
    return None


SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


def test_decode_predict_never_crashes_and_figures(world):
    """Every generated table through predict under both policies; then the run's figures: >= 1000 records, no
    other exception, no NaN output, no hang. (One test, so the figures are read in the process that made them,
    whichever pytest-xdist worker that is.)"""
    model, files = world

    @SETTINGS
    @given(table=TABLE)
    def one_table(table):
        rows, index_kind, drop = table
        df = _frame(rows, index_kind, drop, files)
        STATS["examples"] += 1
        STATS["records"] += len(df)
        problems = []
        for on_error in ("raise", "missing"):
            problem = _judge(model, df, on_error, drop)
            if problem:
                problems.append(f"on_error={on_error!r}: {problem}")
        if problems:
            FAILURES.append(f"{df!r}\n  " + "\n  ".join(problems))
        assert not problems, f"table:\n{df!r}\ncells: {[dict(r) for r in rows]!r}\n" + "\n".join(problems)

    one_table()
    print("\nfuzz decode+predict figures:", STATS)
    assert STATS["records"] >= 1000, STATS
    assert STATS["other_exceptions"] == 0 and STATS["nan_outputs"] == 0 and STATS["hangs"] == 0, STATS
