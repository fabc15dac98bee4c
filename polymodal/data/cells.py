"""What a column's cells are: a deterministic spread sample, one vote per cell, the majority kind and its evidence.

``infer_column`` is what ``schema.infer_schema`` asks of every column it is not told the kind of. Kept apart from
``schema.py`` (which re-exports these names) so the dataclasses stay short; nothing here imports ``schema``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
ARRAY_EXT = (".npy",)
DEPTH_HINT = re.compile(r"(depth|height|dsm|elevation|disparity)", re.I)
SAMPLE_CELLS = 1000  # kinds are inferred from the majority of up to this many non-missing cells per column


def sample_column(series: pd.Series, k: int = SAMPLE_CELLS) -> list[tuple[Any, Any]]:
    """Up to ``k`` non-missing ``(row label, cell)`` pairs spread evenly over the column (deterministic)."""
    idx = np.flatnonzero(~series.isna().to_numpy(dtype=bool))
    if len(idx) > 4 * k:  # a few more candidates than needed: blank strings are dropped below
        idx = idx[np.linspace(0, len(idx) - 1, 4 * k).astype(np.int64)]
    labels = series.index[idx].tolist()
    cells = [(r, v) for r, v in zip(labels, series.iloc[idx].tolist()) if not _is_missing(v)]
    if len(cells) > k:
        cells = [cells[i] for i in np.linspace(0, len(cells) - 1, k).astype(np.int64)]
    return cells


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, str) and v.strip() == "":
        return True
    if v is pd.NA or v is pd.NaT:
        return True
    return False


def is_missing(v: Any) -> bool:
    """The one rule for 'this cell is missing': None, NaN, NA, or an empty/blank string."""
    return _is_missing(v)


def _bytes_kind(b: bytes) -> str | None:
    if b[:8] == b"\x89PNG\r\n\x1a\n" or b[:3] == b"\xff\xd8\xff" or b[:6] in (b"GIF87a", b"GIF89a") or b[:2] == b"BM":
        return "image"
    if b[:4] in (b"RIFF", b"fLaC", b"OggS") or b[:3] == b"ID3":
        return "audio"
    return None


def dense_array(v: Any) -> np.ndarray:
    """``np.asarray`` that also stacks nested cells whose inner items are arrays.

    Parquet ``list<list<float>>`` (and fixed-size list) cells come back from pyarrow as object arrays of float
    arrays; nested Python lists and lists of arrays work too. Raises ``ValueError`` naming the inner lengths when
    the nesting is ragged. Objects that are not numbers (None, strings mixed with numbers) stay an object array.
    """
    try:
        arr = np.asarray(v)
    except ValueError as e:
        if "inhomogeneous" in str(e):
            raise ValueError("ragged nested lists (inner lists of different lengths)") from None
        raise
    if arr.dtype != object or arr.ndim == 0 or arr.size == 0:
        return arr
    items = list(arr.ravel())
    first = items[0]
    if isinstance(first, np.ndarray) and first.ndim and first.dtype != object and all(
        isinstance(x, np.ndarray) and x.dtype != object and x.shape == first.shape for x in items
    ):
        return np.concatenate(items).reshape(arr.shape + first.shape)  # the common case, pyarrow's cells
    if not all(isinstance(x, (list, tuple, np.ndarray)) for x in items):
        return arr  # scalars of mixed types: the caller reports the non-numbers
    if not all(isinstance(x, np.ndarray) and x.dtype != object for x in items):
        items = [dense_array(x) for x in items]
    shapes = sorted({x.shape for x in items})
    if len(shapes) > 1:
        raise ValueError(f"ragged nested lists (inner lists of different shapes: {', '.join(map(str, shapes[:4]))})")
    return np.stack(items).reshape(arr.shape + shapes[0])


_NOUNS = {
    ("image", "file"): "image files", ("image", "bytes"): "encoded images", ("image", "array"): "pixel arrays",
    ("depth", "file"): "depth files", ("depth", "bytes"): "encoded depth maps", ("depth", "array"): "2-D arrays",
    ("audio", "file"): "audio files", ("audio", "bytes"): "encoded audio", ("audio", "dict"): "audio arrays",
    ("timeseries", "array"): "arrays", ("timeseries", "json"): "JSON numeric lists", ("timeseries", "file"): ".npy files",
}
_NUMERIC = "number"  # pseudo-votes; a column of them is tabular (numeric or categorical) or text
_STRING = "string"
_BAD = "bad"


def json_numeric_list(s: str) -> np.ndarray | None:
    """The cell as an array when it is a JSON list of numbers (``"[0.1, 0.2]"``, ``"[[1, 2], [3, 4]]"``), else None.

    How list cells come back from a CSV table. A ragged nested list raises ``ValueError`` (``dense_array``)."""
    t = s.strip()
    if not (t.startswith("[") and t.endswith("]")):
        return None
    try:
        obj = json.loads(t)
    except ValueError:
        return None
    arr = dense_array(obj)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        return None
    return arr


def _is_number_string(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _sniff_file(s: str, base_dir: Path | None) -> tuple[str | None, str | None]:
    """(``"image"``/``"audio"`` from the file's first bytes, or None; ``"a directory"`` when it is one)."""
    if len(s) > 1024 or "\n" in s or s.lower().startswith(("http://", "https://", "s3://", "gs://")):
        return None, None
    t = s[len("file://"):] if s.startswith("file://") else s
    try:
        p = Path(t).expanduser()
        if not p.is_absolute():
            p = (base_dir if base_dir is not None else Path.cwd()) / p
        if p.is_dir():
            return None, "a directory"
        if p.is_file():
            with open(p, "rb") as f:
                return _bytes_kind(f.read(16)), None
    except (OSError, ValueError, RuntimeError):  # unreadable, an embedded NUL, '~nouser': not a file we can read
        pass
    return None, None


def _cell_vote(column: str, v: Any, base_dir: Path | None) -> tuple[str, str]:
    """One cell's vote: (kind or pseudo-kind, where it came from: file / content / bytes / array / json / ...)."""
    hint = bool(DEPTH_HINT.search(str(column)))
    if isinstance(v, (bytes, bytearray, memoryview)):
        kind = _bytes_kind(bytes(v))
        if kind is None:
            return _BAD, "bytes"
        return ("depth" if kind == "image" and hint else kind), "bytes"
    if isinstance(v, Mapping) and "array" in v and "sampling_rate" in v:
        return "audio", "dict"  # the Hugging Face datasets convention: {"array": wave, "sampling_rate": sr}
    if isinstance(v, (list, tuple, np.ndarray)):
        try:
            arr = dense_array(v)
        except ValueError:
            return "timeseries", "array"  # ragged lists: the decoder names the row and the problem
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] > 4 and arr.shape[1] > 4:
            return "image", "array"  # H x W x C pixel array
        return ("depth" if arr.ndim == 2 and hint else "timeseries"), "array"
    if isinstance(v, (bool, int, float, np.number, np.bool_)):
        return _NUMERIC, "number"
    if isinstance(v, (str, os.PathLike)):
        s = os.fspath(v).strip()
        low = s.lower()
        if low.endswith(IMAGE_EXT):
            return ("depth" if hint else "image"), "file"
        if low.endswith(AUDIO_EXT):
            return "audio", "file"
        if low.endswith(ARRAY_EXT):
            return ("depth" if hint else "timeseries"), "file"
        if low.startswith("["):
            try:
                if json_numeric_list(s) is not None:
                    return "timeseries", "json"
            except ValueError:
                return "timeseries", "json"  # ragged: the decoder names the row
        if _is_number_string(s):
            return _NUMERIC, "numeric string"
        kind, what = _sniff_file(s, base_dir)
        if kind is not None:
            return ("depth" if kind == "image" and hint else kind), "content"  # a real image/audio file, odd name
        if what is not None:
            return _BAD, what
        return _STRING, "string"
    return _BAD, "type"


def _describe_cell(v: Any, src: str) -> str:
    if src == "a directory":
        return f"a directory {os.fspath(v)!r:.50}"
    if isinstance(v, str):
        return f"the string {v!r:.40}"
    if isinstance(v, (bool, int, float, np.number, np.bool_)):
        return f"the number {v!r:.20}"
    if src == "bytes":
        return "bytes of an unknown format"
    return f"a {type(v).__name__}"


def _json_row(r: Any) -> Any:
    if isinstance(r, np.generic):
        r = r.item()
    return r if isinstance(r, (int, str)) else str(r)


@dataclass
class ColumnEvidence:
    """What a column's sample says: its kind (None: all missing) and the JSON evidence recorded in the schema."""

    kind: str | None
    evidence: dict[str, Any]


def infer_column(column: str, series: pd.Series, base_dir: str | os.PathLike | None = None,
                 k: int = SAMPLE_CELLS) -> ColumnEvidence:
    """Infer a column's kind from the majority of up to ``k`` non-missing cells spread over it.

    Each sampled cell votes (an image path or bytes, an audio clip, an array or JSON numeric list, a number, a
    string); the most common vote wins, and the cells that voted otherwise are counted and named (row labels) in
    the evidence: a real PNG named ``.bin``, a directory or a stray string does not change what the column means.
    A column of numbers (numeric strings count, as a CSV with one stray string holds them) is tabular with
    ``as: numeric``, its strays are bad values of that kind; a column of strings only is categorical or text.
    Paths without a known extension are recognised by their first bytes (relative to ``base_dir``, default the
    current directory).
    """
    base = Path(base_dir) if base_dir is not None else None
    if pd.api.types.is_bool_dtype(series.dtype) or (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype)
    ):
        n = int(series.notna().sum())
        if n == 0:
            return ColumnEvidence(None, {"kind": None, "sampled": 0, "summary": "every cell is missing"})
        n = min(n, k)
        return ColumnEvidence("tabular", {"kind": "tabular", "as": "numeric", "sampled": n, "agree": n,
                                          "disagree": 0, "rows": [],
                                          "summary": f"tabular (numeric): a {series.dtype} column"})
    cells = sample_column(series, k)
    if not cells:
        return ColumnEvidence(None, {"kind": None, "sampled": 0, "summary": "every cell is missing"})
    votes = [_cell_vote(column, v, base) for _, v in cells]
    coarse = Counter(kind for kind, _ in votes)
    winner = coarse.most_common(1)[0][0]
    n = len(cells)
    if winner == _BAD:
        i, (_, src) = next((i, vs) for i, vs in enumerate(votes) if vs[0] == _BAD)
        r, v = cells[i]
        if src == "bytes":
            raise SchemaError(
                f"column {column!r} holds bytes that are neither a known image (PNG/JPEG/GIF/BMP) nor audio "
                "(WAV/FLAC/OGG/MP3); pass kinds={column!r: '<kind>'} or drop the column"
            )
        if src == "a directory":
            raise SchemaError(
                f"column {column!r}: most sampled cells are directories (e.g. row {r!r}: {os.fspath(v)!r:.60}), "
                f"not files; point the column at files, or drop it with ignore=[{column!r}]"
            )
        raise SchemaError(
            f"column {column!r} holds values of unsupported type {type(v).__name__} (e.g. {v!r:.60}); "
            f"supported: file paths or bytes (image/audio), strings (text/categorical), numbers, arrays (time series). "
            f"Convert the column, or drop it with ignore=[{column!r}]"
        )
    as_ = None
    if winner == _NUMERIC:
        srcs = Counter(src for kind, src in votes if kind == _NUMERIC)
        if coarse[_STRING] == 0 and srcs["number"] == 0:
            # numeric-looking strings only: kept categorical, as the tabular processor does (no guessing)
            kind, as_, agree_votes = "tabular", "categorical", {_NUMERIC}
        else:
            kind, as_, agree_votes = "tabular", "numeric", {_NUMERIC}
    elif winner == _STRING:
        strings = [v for (_, v), (kd, _) in zip(cells, votes) if kd == _STRING]
        mean_words = float(np.mean([len(str(s).split()) for s in strings]))
        non_missing = series[~series.map(_is_missing)]
        n_unique = non_missing[non_missing.map(lambda x: isinstance(x, str))].nunique()
        # few distinct short values -> categorical feature; otherwise free text
        if mean_words <= 3 and n_unique <= max(20, 0.05 * len(non_missing)):
            kind, as_ = "tabular", "categorical"
        else:
            kind = "text"
        agree_votes = {_STRING, _NUMERIC}  # a number is a category / a word too
    else:
        kind, agree_votes = winner, {winner}
    agree = [i for i, (kd, _) in enumerate(votes) if kd in agree_votes]
    odd = [i for i, (kd, _) in enumerate(votes) if kd not in agree_votes]
    by_content = [i for i in agree if votes[i][1] == "content"]
    if kind in ("tabular", "text"):
        noun = {"numeric": "numbers", "categorical": "strings"}.get(as_, "strings")
        if as_ == "categorical" and winner == _NUMERIC:
            noun = "numeric-looking strings (kept categorical)"
    else:
        src = Counter(votes[i][1] if votes[i][1] != "content" else "file" for i in agree).most_common(1)[0][0]
        noun = _NOUNS.get((kind, src), f"{kind} values")
    label = f"{kind} ({as_})" if as_ else kind
    summary = f"{label}: {len(agree)} of {n} sampled cells are {noun}"
    if by_content:
        rows = ", ".join(str(cells[i][0]) for i in by_content[:5]) + (", ..." if len(by_content) > 5 else "")
        summary += f"; {len(by_content)} recognised by content, not by extension (rows {rows})"
    if odd:
        shown = ", ".join(f"row {cells[i][0]}: {_describe_cell(cells[i][1], votes[i][1])}" for i in odd[:5])
        more = f", {len(odd) - 5} more" if len(odd) > 5 else ""
        summary += f"; {len(odd)} disagree{'s' if len(odd) == 1 else ''} ({shown}{more})"
    ev: dict[str, Any] = {"kind": kind, "sampled": n, "agree": len(agree), "disagree": len(odd),
                          "rows": [_json_row(cells[i][0]) for i in odd[:20]]}
    if as_:
        ev["as"] = as_
    if by_content:
        ev["by_content_rows"] = [_json_row(cells[i][0]) for i in by_content[:20]]
    ev["summary"] = summary
    return ColumnEvidence(kind, ev)


def infer_kind(column: str, series: pd.Series, base_dir: str | os.PathLike | None = None) -> str | None:
    """Guess a column's modality kind from the majority of its sampled values (``infer_column``); ``None`` when it
    cannot be used (all missing)."""
    return infer_column(column, series, base_dir).kind
