"""``POST /search``: the rows of a persistent index (``index.Index``) nearest to a query record.

The body is JSON ``{"query": {field: value}, "top_k": 10, "target": "image"}`` or a multipart form with the query's
fields (uploads for files) plus ``top_k`` and ``target`` form fields. The query is one record, embedded through
the ``/embed`` batcher; with one modality given, its vector is the query and the default target is the first
other indexed modality; with several, the fused vector is the query and the default target is ``fused``. A
request cannot pass a SQL filter: the index's ``where=`` stays a local, trusted-code feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.errors import PolymodalError
from polymodal.evaluate.scoring import FUSED
from polymodal.index.rows import file_digest
from polymodal.serve.inputs import Field, RequestError, check_records, form_records

MAX_TOP_K = 1000


@dataclass
class Query:
    record: dict[str, Any]
    top_k: int
    target: str | None


def check_index(index: Any, run: str | Path | None) -> None:
    """Refuse an index built with another model than the served run (its weights' digest differs)."""
    stored = index.meta.get("model_fingerprint")
    weights = Path(run) / "weights.safetensors" if run is not None else None
    if stored and weights is not None and weights.exists() and file_digest(weights) != stored:
        raise PolymodalError(f"the index {str(index.path)!r} was built with another model than {str(run)!r}; "
                             f"rebuild it with `polymodal index build {run} TABLE --index {index.path}`")


class SearchRoute:
    """Parsing and running ``/search`` queries against one index."""

    def __init__(self, index: Any, fields: dict[str, Field], max_file_bytes: int) -> None:
        self.index, self.fields, self.max_file_bytes = index, fields, max_file_bytes
        self.targets = [*index.meta.get("modalities", []), FUSED]

    async def parse(self, body: bytes, form: Any) -> Query:
        if form is None:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as e:
                raise RequestError(f"the body is not valid JSON: {str(e)[:200]}") from None
            if not isinstance(data, dict) or "query" not in data:
                raise RequestError('the JSON body must be {"query": {field: value}, "top_k": 10, "target": ...}')
            extra = sorted(set(data) - {"query", "top_k", "target"})
            if extra:
                raise RequestError(f"unknown top-level key(s) {extra}; the body holds query, top_k, target")
            record = check_records([data["query"]], self.fields, 1)[0]
            top_k, target = data.get("top_k", 10), data.get("target")
        else:
            items = form.multi_items()
            opts = {k: v for k, v in items if k in ("top_k", "target")}
            if any(not isinstance(v, str) for v in opts.values()):
                raise RequestError("top_k and target are form fields, not files")
            record = (await form_records([(k, v) for k, v in items if k not in opts], self.fields, 1,
                                         self.max_file_bytes))[0]
            top_k, target = opts.get("top_k", "10"), opts.get("target")
            try:
                top_k = int(top_k)
            except ValueError:
                raise RequestError(f"top_k must be an integer, got {top_k!r}") from None
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise RequestError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
        if target is not None and target not in self.targets:
            raise RequestError(f"unknown target {target!r}; this index holds {', '.join(self.targets)}")
        return Query(record, top_k, target)

    def run(self, query: Query, vectors: dict[str, Any]) -> list[dict[str, Any]]:
        """The nearest rows, best first, as plain JSON objects (``score`` = cosine similarity)."""
        given = [m for m, v in vectors.items() if m != FUSED and v is not None]
        m = given[0] if len(given) == 1 else FUSED
        target = query.target or (next((x for x in self.targets if x not in (m, FUSED)), FUSED) if m != FUSED
                                  else FUSED)
        frame = self.index.search(vector=np.asarray(vectors[m], dtype=np.float32), modality=m, target=target,
                                  top_k=query.top_k)
        return json.loads(frame.to_json(orient="records"))
