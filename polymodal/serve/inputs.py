"""Request bodies -> records: one dict per record, keyed by the run's column names, each value a cell.

Two body types (anything else is 415):

* ``application/json``: ``{"records": [{"caption": "a red car", "age": 31}, ...]}`` for the modalities whose
  values are JSON (text, tabular, time series). A file modality (image, audio, depth) cannot be given in JSON: a
  string there could name a server-side path, and the server never reads one.
* ``multipart/form-data``: file uploads for image / audio / depth, form fields for the others. A field named
  ``image`` belongs to record 0; ``image[3]`` to record 3. A form field ``records`` may hold the JSON records (its
  non-file values) and the uploads then add their files to those records.

Any modality may be left out of a record (it is then missing, as everywhere in polymodal), but each record must
give at least one. Values are checked here only for their shape (a file where a file belongs, a known field);
what a value means (a number, a text, a decodable PNG) is checked by the run's own processors when the records are
decoded (``serve/decoding.py``), and every problem is a ``RequestError`` naming the record and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError

FILE_KINDS = ("image", "audio", "depth")  # kinds whose values are files: accepted only as uploads
# media types an upload of each file kind may declare; a part with no type or a generic one is accepted as well
MEDIA_TYPES = {"image": ("image/",), "depth": ("image/", "application/x-npy", "application/npy"), "audio": ("audio/",)}
GENERIC_MEDIA = ("", "application/octet-stream")
_FIELD = re.compile(r"^(?P<col>.+?)(?:\[(?P<i>\d{1,6})\])?$")


class RequestError(PolymodalError):
    """Bad input in a request; ``status`` is the HTTP status it is answered with (413, 415 or 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Field:
    """One request field: a column of the run's table, the modality that reads it and its kind."""

    column: str
    modality: str
    kind: str

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS


def fields_of(schema: Schema) -> dict[str, Field]:
    """{column: Field} for every column the run reads, in schema order."""
    return {c: Field(c, s.name, s.kind) for s in schema for c in s.columns}


def _where(i: int, column: str) -> str:
    return f"record {i}, field {column!r}"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _describe(fields: dict[str, Field]) -> str:
    return ", ".join(f"{c} ({f.kind})" for c, f in fields.items())


def check_records(records: Any, fields: dict[str, Field], max_records: int) -> list[dict[str, Any]]:
    """The records of a JSON body (or the ``records`` form field), checked for shape: a non-empty list of objects
    naming known, non-file fields."""
    if not isinstance(records, list) or not records:
        raise RequestError('"records" must be a non-empty list of objects, e.g. {"records": [{"field": value}]}')
    if len(records) > max_records:
        raise RequestError(f"{len(records)} records in one request; the limit is {max_records}", status=413)
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RequestError(f"record {i} must be an object of field -> value, got {type(rec).__name__}")
        for col, v in rec.items():
            f = fields.get(col)
            if f is None:
                raise RequestError(f"{_where(i, col)}: unknown field; this model reads {_describe(fields)}")
            if f.is_file and v is not None:
                raise RequestError(
                    f"{_where(i, col)}: {col!r} is {_a(f.kind)} and must be uploaded as a file (multipart/form-data "
                    f"field {col!r} or {col}[{i}]); the server never reads a path or URL named in a request")
        out.append(dict(rec))
    return out


def json_records(body: bytes, fields: dict[str, Field], max_records: int) -> list[dict[str, Any]]:
    """The records of an ``application/json`` body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested arrays
        raise RequestError(f"the body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict) or "records" not in data:
        raise RequestError('the JSON body must be an object with a "records" list: {"records": [{...}, ...]}')
    extra = sorted(set(data) - {"records"})
    if extra:
        raise RequestError(f"unknown top-level key(s) {extra}; the body holds only \"records\"")
    return check_records(data["records"], fields, max_records)


async def form_records(items: Iterable[tuple[str, Any]], fields: dict[str, Field], max_records: int,
                       max_file_bytes: int) -> list[dict[str, Any]]:
    """The records of a parsed ``multipart/form-data`` body (the ``multi_items()`` of a Starlette ``FormData``)."""
    records: dict[int, dict[str, Any]] = {}
    for key, value in items:
        is_upload = not isinstance(value, str)
        if key == "records":
            if is_upload:
                raise RequestError('the "records" field holds JSON records as text, not a file')
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError) as e:
                raise RequestError(f'the "records" field is not valid JSON: {str(e)[:200]}') from None
            for i, rec in enumerate(check_records(parsed, fields, max_records)):
                records.setdefault(i, {}).update(rec)
            continue
        m = _FIELD.match(key)
        col, i = (m["col"], int(m["i"] or 0)) if m else (key, 0)
        f = fields.get(col)
        if f is None:
            raise RequestError(f"{_where(i, key)}: unknown field; this model reads {_describe(fields)} (record i's "
                               "field is named field[i]; a bare name is record 0)")
        if i >= max_records:
            raise RequestError(f"{_where(i, col)}: record index over the limit of {max_records} records", status=413)
        rec = records.setdefault(i, {})
        if col in rec:
            raise RequestError(f"{_where(i, col)}: given twice")
        rec[col] = await _upload(value, f, i, max_file_bytes) if f.is_file else _form_value(value, f, i, is_upload)
    if not records:
        raise RequestError(f"the form holds no fields; this model reads {_describe(fields)}")
    n = max(records) + 1
    if n > max_records:
        raise RequestError(f"{n} records in one request; the limit is {max_records}", status=413)
    return [records.get(i, {}) for i in range(n)]


async def _upload(value: Any, f: Field, i: int, max_file_bytes: int) -> bytes:
    if isinstance(value, str):
        raise RequestError(
            f"{_where(i, f.column)}: {_a(f.kind)} must be a file upload (curl -F {f.column}=@file); a text value is "
            "never read as a server-side path or URL")
    media = (value.content_type or "").split(";")[0].strip().lower()
    if media not in GENERIC_MEDIA and not media.startswith(MEDIA_TYPES[f.kind]):
        allowed = ", ".join(t + ("*" if t.endswith("/") else "") for t in MEDIA_TYPES[f.kind] + GENERIC_MEDIA[1:])
        raise RequestError(f"{_where(i, f.column)}: the upload is {media!r}; {_a(f.kind)} upload is {allowed}",
                           status=415)
    if value.size is not None and value.size > max_file_bytes:
        raise RequestError(f"{_where(i, f.column)}: the file is {value.size:,} bytes, over the limit of "
                           f"{max_file_bytes:,} bytes per file", status=413)
    data = await value.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        raise RequestError(f"{_where(i, f.column)}: the file is over the limit of {max_file_bytes:,} bytes per file",
                           status=413)
    if not data:
        raise RequestError(f"{_where(i, f.column)}: the uploaded file is empty (0 bytes)")
    return data


def _form_value(value: Any, f: Field, i: int, is_upload: bool) -> Any:
    if is_upload:
        raise RequestError(f"{_where(i, f.column)}: {_a(f.kind)} value is sent as a form field, not as a file upload")
    if f.kind == "timeseries":  # a series in a form field is JSON text: [1.5, 2.0, ...] or [[...], ...]
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise RequestError(f"{_where(i, f.column)}: a time series form field holds a JSON array, e.g. "
                               "[0.1, 0.5, 0.2]") from None
    return value  # numbers stay strings here: the tabular processor reads numeric strings of a numeric column
