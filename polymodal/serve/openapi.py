"""The OpenAPI request bodies of ``/predict``, ``/embed`` and ``/search``, generated from the run's schema.

Every field is a column of the run's table, described with its modality and kind. File kinds (image, audio,
depth) appear only in the ``multipart/form-data`` body, as binary uploads; the others in both bodies (in a form,
numbers are text and a time series is a JSON array as text). A model that reads files only has no JSON body.
"""

from __future__ import annotations

from typing import Any

from polymodal.data.schema import Schema
from polymodal.serve.inputs import MEDIA_TYPES, Field, fields_of

_NUMBER = {"type": "number"}
_CATEGORY = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_SERIES = {"anyOf": [{"type": "array", "items": _NUMBER},
                     {"type": "array", "items": {"type": "array", "items": _NUMBER}}]}
_UPLOAD_TYPES = {"image": "image/png, image/jpeg, application/octet-stream",
                 "depth": "image/png, image/tiff, application/x-npy, application/octet-stream",
                 "audio": "audio/wav, audio/flac, audio/ogg, audio/mpeg, application/octet-stream"}
assert set(_UPLOAD_TYPES) == set(MEDIA_TYPES)


def _json_value(f: Field, schema: Schema) -> dict[str, Any]:
    if f.kind == "text":
        value: dict[str, Any] = {"type": "string"}
    elif f.kind == "timeseries":
        value = dict(_SERIES)
    elif f.column in (schema[f.modality].options.get("numeric") or {}):
        value = dict(_NUMBER)
    else:
        value = dict(_CATEGORY)
    return {"anyOf": [value, {"type": "null"}], "description": f"modality {f.modality!r} ({f.kind})"}


def record_schema(schema: Schema) -> dict[str, Any] | None:
    """One JSON record: the non-file fields, each optional (left out or null: missing). None: no such field."""
    props = {c: _json_value(f, schema) for c, f in fields_of(schema).items() if not f.is_file}
    if not props:
        return None
    return {"type": "object", "properties": props, "additionalProperties": False, "minProperties": 1}


def form_schema(schema: Schema) -> dict[str, Any]:
    """The multipart form: file uploads for file kinds, text fields for the others, plus ``records`` (JSON)."""
    props: dict[str, Any] = {}
    for c, f in fields_of(schema).items():
        what = f"modality {f.modality!r} ({f.kind})"
        if f.is_file:
            props[c] = {"type": "string", "format": "binary", "description": f"{what}: the file, uploaded"}
        else:
            props[c] = {"type": "string", "description": f"{what}" + (": a JSON array" if f.kind == "timeseries"
                                                                       else "")}
    if any(not f.is_file for f in fields_of(schema).values()):
        props["records"] = {"type": "string", "description": 'JSON: [{"field": value}, ...] (the non-file fields)'}
    return {"type": "object", "properties": props,
            "description": "A bare field name is record 0; `name[i]` belongs to record i (several records per "
                           "request). Any field may be left out: that modality is then missing."}


def request_body(schema: Schema, max_records: int, *, search: bool = False) -> dict[str, Any]:
    """The ``requestBody`` object of a records route (or of ``/search``, whose query is one record)."""
    content: dict[str, Any] = {}
    record = record_schema(schema)
    if record is not None:
        if search:
            body = {"type": "object", "required": ["query"], "additionalProperties": False,
                    "properties": {"query": record, "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
                                   "target": {"type": "string"}}}
        else:
            body = {"type": "object", "required": ["records"], "additionalProperties": False,
                    "properties": {"records": {"type": "array", "items": record, "minItems": 1,
                                               "maxItems": max_records}}}
        content["application/json"] = {"schema": body}
    form = form_schema(schema)
    if search:
        form["properties"].update({"top_k": {"type": "string", "description": "an integer, 1-1000"},
                                   "target": {"type": "string"}})
    encoding = {c: {"contentType": _UPLOAD_TYPES[f.kind]} for c, f in fields_of(schema).items() if f.is_file}
    content["multipart/form-data"] = {"schema": form, **({"encoding": encoding} if encoding else {})}
    return {"required": True, "content": content}


ERRORS = {
    "401": {"description": "missing or wrong API key (when the server has keys)"},
    "413": {"description": "the body, a file or the number of records is over its limit"},
    "415": {"description": "not application/json or multipart/form-data, or an upload of the wrong media type"},
    "422": {"description": "a value that cannot be used; the message names the record and the field"},
    "429": {"description": "the queue is full; retry after the Retry-After header's seconds"},
    "504": {"description": "the request waited longer than the server's timeout"},
}
