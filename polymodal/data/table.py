"""Reading a table and decoding its columns into per-modality numpy arrays.

* ``read_table`` accepts a DataFrame or a CSV / Parquet / JSON Lines / JSON (records) file and returns the frame
  plus the folder that relative file paths in its cells resolve against;
* ``fit_schema`` lets every modality's processor learn its options from the training table;
* ``decode_table`` turns each modality into ``(arrays, present)`` following ``kinds/base.py``.

``read_table`` checks the file before parsing it: it must be a regular file (symlinks followed; a FIFO, a device
such as ``/dev/zero``, a socket or a directory is refused before it is opened, and a symlink loop is reported as
one), and its first bytes must fit its extension (``PAR1`` for Parquet; UTF-8 text without NUL bytes for CSV /
TSV / JSON), so random or binary content says ``not a CSV file`` rather than a parser's traceback. A CSV / TSV is
also checked for its structure, which pandas would repair silently: a duplicate column name in the header
(pandas renames the second ``note`` to ``note.1``) and a line with fewer (or more) fields than the header (pandas
pads it with NaN) are ``SchemaError``s naming the name or the line.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.kinds import PROCESSORS, DecodeContext
from polymodal.data.kinds._common import progress_enabled
from polymodal.data.schema import Schema

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")
ACCEPTED = "CSV (.csv, .tsv), Parquet (.parquet, .pq), JSON Lines (.jsonl, .ndjson), JSON records (.json)"
SNIFF_BYTES = 65536  # how much of a table file is looked at to tell text from binary content


def _stat_table(path: Path) -> None:
    """Refuse a path that is absent, a symlink loop, a directory or not a regular file (before opening it)."""
    try:
        st = os.stat(path)  # follows symlinks
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SchemaError(
                f"table file {str(path)!r} is a symlink loop (it links, directly or through other links, back to "
                "itself); point it at a table file"
            ) from None
        if isinstance(e, FileNotFoundError):
            if os.path.islink(path):
                raise SchemaError(
                    f"table file {str(path)!r} is a symlink to {os.readlink(path)!r}, which does not exist"
                ) from None
            raise SchemaError(
                f"table file {str(path)!r} does not exist (looked in {str(path.absolute().parent)!r})"
            ) from None
        raise SchemaError(f"cannot access table file {str(path)!r}: {e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SchemaError(f"{str(path)!r} is a directory; pass a table file ({ACCEPTED})")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a plain file")
        raise SchemaError(f"table file {str(path)!r} is not a regular file ({what}); pass a table file ({ACCEPTED})")


def _head(path: Path) -> bytes:
    """The first ``SNIFF_BYTES`` of the file, decompressed when its extension says so."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower())
    if opener is None and path.suffix.lower() in _COMPRESSION:
        return b""  # .zip / .zst: left to pandas
    try:
        with (opener or open)(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise SchemaError(f"cannot read table file {str(path)!r}: the {path.suffix} data is corrupt ({e})") from None


def _sniff(path: Path, fmt: str) -> None:
    """Refuse content that cannot be the format its extension names (random bytes, an image renamed .csv...)."""
    head = _head(path)
    if not head:
        return
    name = {"tsv": "TSV (CSV)", "jsonl": "JSON Lines", "json": "JSON"}.get(fmt, fmt.upper())
    if fmt == "parquet":
        if head[:4] != b"PAR1":
            raise SchemaError(
                f"table file {str(path)!r} is not a Parquet file: it does not start with the Parquet magic bytes "
                f"'PAR1' (first bytes {head[:8]!r}); accepted: {ACCEPTED}"
            )
        return
    text = head
    if len(head) == SNIFF_BYTES:  # may end inside a multi-byte character
        text = head[:-4]
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\0"), head.index(b"\0") + 1, "NUL byte")
        text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(
            f"table file {str(path)!r} is not a {name} file: its content is binary or not UTF-8 text "
            f"({e.reason} at byte {e.start}; first bytes {head[:8]!r}); accepted: {ACCEPTED}"
        ) from None


def _check_csv(path: Path, sep: str) -> None:
    """Duplicate header names and lines whose field count differs from the header's: both a ``SchemaError``."""
    if path.suffix.lower() in (".zip", ".zst"):
        return
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    where = f"table file {str(path)!r}"
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):  # pandas skips blank lines
            header = next(reader, None)
        if header is None:
            return
        seen: dict[str, int] = {}
        for k, h in enumerate(header, 1):
            if h == "":
                continue
            if h in seen:
                raise SchemaError(
                    f"{where}: the header names column {h!r} twice (columns {seen[h]} and {k}); pandas would "
                    f"rename the second to {h + '.1'!r} silently. Give every column a distinct name"
                )
            seen[h] = k
        n = len(header)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line (skipped by pandas too)
            if len(row) != n:
                few = "fewer" if len(row) < n else "more"
                raise SchemaError(
                    f"{where}: line {reader.line_num} has {len(row)} field(s), {few} than the header's {n} "
                    f"({', '.join(header[:8])}{', ...' if n > 8 else ''}); pandas would "
                    + ("pad it with missing values" if few == "fewer" else "refuse or shift it")
                    + " silently. Fix the line (a missing or extra separator, or an unquoted value containing "
                    f"{sep!r})"
                )


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _open_text(path: Path):
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8")


def _records(rows: list) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("a JSON list must hold one object per record")
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame()


def _read_json_lines(path: Path) -> pd.DataFrame:
    records = []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"line {lineno} is not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"line {lineno} is a JSON {type(rec).__name__}, expected an object (one record)")
            records.append(rec)
    return _records(records)


def _read_json(path: Path) -> pd.DataFrame:
    with _open_text(path) as f:
        obj = json.load(f)
    if isinstance(obj, list):
        return _records(obj)
    if isinstance(obj, dict):
        if len(obj) == 1:
            key, value = next(iter(obj.items()))
            if key in ("data", "records", "rows") and isinstance(value, list):
                return _records(value)  # {"data": [records...]}
        return pd.DataFrame(obj)  # {column: [values] or {index: value}}
    raise ValueError(f"the top-level JSON value is a {type(obj).__name__}, expected a list of records")


class Table(NamedTuple):
    """A table value: the frame and the folder its relative file paths resolve against (never ``os.chdir``)."""

    frame: pd.DataFrame
    base_dir: Path


def parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``polymodal.*`` key-value metadata of a Parquet file (``read_table`` puts it in ``frame.attrs``)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode("utf-8", "replace") for k, v in meta.items() if k.startswith(b"polymodal.")}


def read_table(source: Table | pd.DataFrame | str | os.PathLike) -> Table:
    """``Table(frame, base_dir)``: the table and the folder its relative file paths resolve against.

    A DataFrame resolves paths against the current directory; a file against its own folder; a ``Table``
    against the folder it carries.
    """
    if isinstance(source, Table):
        return source
    if isinstance(source, pd.DataFrame):
        return Table(source, Path.cwd())
    if not isinstance(source, (str, os.PathLike)):
        raise SchemaError(
            f"expected a pandas DataFrame or a path to a table file, got {type(source).__name__}; "
            f"accepted files: {ACCEPTED}"
        )
    path = Path(source).expanduser()
    _stat_table(path)
    fmt = _format_of(path)
    if fmt is None:
        raise SchemaError(
            f"cannot read table {path.name!r}: unknown file extension {''.join(path.suffixes) or '(none)'!r}; "
            f"accepted: {ACCEPTED}"
        )
    _sniff(path, fmt)
    try:
        if fmt in ("csv", "tsv"):
            _check_csv(path, "," if fmt == "csv" else "\t")
    except (UnicodeDecodeError, csv.Error) as e:
        raise SchemaError(
            f"table file {str(path)!r} is not a {fmt.upper()} file: {type(e).__name__}: {e}; accepted: {ACCEPTED}"
        ) from None
    try:
        if fmt == "csv":
            frame = pd.read_csv(path)
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t")
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
            if meta := parquet_metadata(path):  # e.g. the cohort a `catalog query --out` file was exported from
                frame.attrs["parquet_metadata"] = meta
        elif fmt == "jsonl":
            frame = _read_json_lines(path)
        else:
            frame = _read_json(path)
    except pd.errors.EmptyDataError:
        raise SchemaError(f"table file {str(path)!r} is empty (no header, no rows)") from None
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear message
        raise SchemaError(
            f"cannot read table file {str(path)!r} as {fmt.upper()}: {type(e).__name__}: {e}. "
            f"Check that the file is complete and that its extension matches its content; accepted: {ACCEPTED}"
        ) from e
    return Table(frame, path.resolve().parent)


def fit_schema(
    schema: Schema, frame: pd.DataFrame, ctx: DecodeContext | None = None, *, progress: bool = True
) -> Schema:
    """Let every modality's processor fill its options from the training table (options already set are kept)."""
    ctx = ctx or DecodeContext()
    schema.check_columns(frame)
    token = progress_enabled.set(bool(progress))
    try:
        for spec in schema:
            PROCESSORS.build(spec.kind).fit(spec, frame, ctx)
    finally:
        progress_enabled.reset(token)
    return schema


def decode_table(
    schema: Schema, frame: pd.DataFrame, ctx: DecodeContext | None = None, *, progress: bool = True
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """{modality: (arrays, present[N])} for every modality of the schema, in schema order."""
    ctx = ctx or DecodeContext()
    schema.check_columns(frame)
    token = progress_enabled.set(bool(progress))
    try:
        out: dict[str, Any] = {}
        for spec in schema:
            arrays, present = PROCESSORS.build(spec.kind).decode(spec, frame, ctx)
            out[spec.name] = ({k: np.ascontiguousarray(a) for k, a in arrays.items()}, np.ascontiguousarray(present))
    finally:
        progress_enabled.reset(token)
    return out
