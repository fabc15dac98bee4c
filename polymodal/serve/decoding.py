"""Records -> the run's decoded arrays, through the run's own schema and processors; batches of requests.

``decode_records`` builds a table of the request's records (every column the run reads; ``None`` where a record
leaves a field out) and decodes it with ``data.table.decode_table``, the decoding step of ``data/decode.py``, with a
``DecodeContext`` confined to an empty folder (``root``): even if a string reached a file modality, no file
outside that empty folder could be read. Undecodable values raise at the first one (``on_error="raise"``) and
become a ``RequestError`` that names the record and the field. ``concat`` joins several requests' arrays into one
batch (padding the trailing axes of kinds whose length varies per table, such as text ids, with zeros).

``decode_batch`` is what the inference worker calls on a whole batch of requests: one table and one processor call
per modality for all their records (decoding a row costs about a third as much in a table of 64 as alone, and the
event loop does none of it). Only when that fails is each request decoded alone, so a bad request gets its own
error, naming its own record and field, and the others of the batch are still answered.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.dataset import Decoded
from polymodal.data.kinds.base import DecodeContext
from polymodal.data.schema import Schema
from polymodal.data.table import decode_table
from polymodal.errors import DecodeError, PolymodalError
from polymodal.serve.inputs import Field, RequestError

log = logging.getLogger("polymodal.serve")


def decode_records(schema: Schema, fields: dict[str, Field], records: list[dict[str, Any]], root: Path) -> Decoded:
    """``{modality: (arrays, present)}`` of the records; every record must have at least one modality present."""
    frame = pd.DataFrame({c: [rec.get(c) for rec in records] for c in fields}, index=pd.RangeIndex(len(records)))
    ctx = DecodeContext(base_dir=root, on_error="raise", root=root)
    try:
        decoded = decode_table(schema, frame, ctx, progress=False)
    except DecodeError as e:
        raise RequestError(f"record {e.row}, field {e.column!r}: {e.problem}") from None
    except PolymodalError as e:
        raise RequestError(str(e)) from None
    except Exception as e:  # noqa: BLE001  (a decoder library failing on hostile bytes: still the input's fault)
        log.warning("decoding a request failed inside a decoder library", exc_info=True)
        raise RequestError(f"the records could not be decoded ({type(e).__name__}: {str(e)[:200]})") from None
    none = ~np.stack([p for _, p in decoded.values()]).any(0)
    if none.any():
        i = int(np.flatnonzero(none)[0])
        names = ", ".join(f"{c} ({f.kind})" for c, f in fields.items())
        raise RequestError(f"record {i} gives none of the model's fields (or only empty ones); give at least one of "
                           f"{names}")
    return decoded


def decode_batch(schema: Schema, fields: dict[str, Field], requests: list[list[dict[str, Any]]],
                 root: Path) -> tuple[Decoded | None, dict[int, RequestError]]:
    """The decoded records of every request that decodes (in order; ``None`` if none does) and ``{request index:
    its RequestError}`` for those that do not."""
    try:
        return decode_records(schema, fields, [r for req in requests for r in req], root), {}
    except RequestError as e:
        if len(requests) == 1:
            return None, {0: e}
    parts, failed = [], {}
    for i, req in enumerate(requests):  # some request is bad: decode each alone to tell which, with its own indices
        try:
            parts.append(decode_records(schema, fields, req, root))
        except RequestError as e:
            failed[i] = e
    return (concat(parts) if parts else None), failed


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    shape = tuple(max(s) for s in zip(*(p.shape for p in parts)))
    if all(p.shape[1:] == shape[1:] for p in parts):
        return np.concatenate(parts)
    out = np.zeros((sum(len(p) for p in parts), *shape[1:]), dtype=parts[0].dtype)
    at = 0
    for p in parts:
        out[(slice(at, at + len(p)), *(slice(0, s) for s in p.shape[1:]))] = p
        at += len(p)
    return out


def concat(parts: list[Decoded]) -> Decoded:
    """One ``Decoded`` holding the records of every part, in order."""
    if len(parts) == 1:
        return parts[0]
    return {m: ({k: _cat([p[m][0][k] for p in parts]) for k in arrays},
                np.concatenate([p[m][1] for p in parts]))
            for m, (arrays, _) in parts[0].items()}


def split(n_per_part: list[int]) -> list[slice]:
    """The slice of each part's records in the concatenated batch."""
    bounds = np.cumsum([0, *n_per_part])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
