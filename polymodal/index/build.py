"""``Index``: a persistent cross-modal search index of a table, built with a trained embedding model.

    idx = pm.Index.build("runs/emb", "data.parquet", "idx/")     # incremental: re-running adds only new rows
    idx = pm.Index("idx/")
    idx.search(text="a smiling face", top_k=5, where="split = 'test'")

Rows are keyed by ``id_column`` when given, otherwise by the row's modality cells (file paths, texts; the content
digest for inline bytes/arrays). Each row also stores a content hash (file bytes for paths), so a re-build:
adds new keys, re-embeds rows whose content changed (an edited file), leaves unchanged rows alone, and, with
``prune`` (default), removes keys no longer in the table and rows whose files were deleted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.schema import Schema, is_missing
from polymodal.data.table import read_table
from polymodal.errors import PolymodalError, SchemaError
from polymodal.index.store import IndexError_, VectorStore

FUSED = "fused"
FILE_KINDS = ("image", "audio", "depth", "timeseries")


def load_run(run: Any):
    """A trained model with a shared space: an ``AlignedModel`` or a supervised ``Model`` fitted with ``align=``."""
    from polymodal.recipes.loading import load

    model = load(run) if isinstance(run, (str, Path)) else run
    if getattr(model.net, "align_head", None) is None:
        raise PolymodalError(
            f"{run!r} has no shared embedding space; index a run trained with `polymodal align` "
            "(or `fit` with an alignment objective)"
        )
    return model


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:32]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def _cell_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, np.ndarray):
        return str(v.shape).encode() + str(v.dtype).encode() + np.ascontiguousarray(v).tobytes()
    if isinstance(v, dict):
        return b"".join(str(k).encode() + _cell_bytes(v[k]) for k in sorted(v, key=str))
    if isinstance(v, (list, tuple)):
        return _cell_bytes(np.asarray(v))
    return repr(v).encode()


def row_keys_and_hashes(
    schema: Schema, frame: pd.DataFrame, base_dir: Path, names: Sequence[str], id_column: str | None = None
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(key per row, content hash per row, missing-file problems [{row, column, file}])."""
    keys, hashes, missing = [], [], []
    cols = [(m, c) for m in names for c in schema[m].columns]
    ids = frame[id_column].tolist() if id_column else None
    for i, (row_label, row) in enumerate(zip(frame.index, frame[[c for _, c in cols]].itertuples(index=False, name=None))):
        key_parts, content_parts = [], []
        for (m, c), v in zip(cols, row):
            kind = schema[m].kind
            if is_missing(v):
                key_parts.append(b"\0")
                content_parts.append(b"\0")
            elif isinstance(v, str) and kind in FILE_KINDS:
                p = Path(v).expanduser()
                p = p if p.is_absolute() else base_dir / p
                key_parts.append(v.encode())
                if p.is_file():
                    content_parts.append(_file_digest(p).encode())
                else:
                    missing.append({"row": row_label, "column": c, "file": str(p)})
                    content_parts.append(b"\0missing")
            else:
                b = _cell_bytes(v)
                key_parts.append(b if isinstance(v, str) else _digest(b).encode())
                content_parts.append(b)
        keys.append(str(ids[i]) if ids is not None else _digest(*key_parts))
        hashes.append(_digest(*content_parts))
    return keys, hashes, missing


def metadata_frame(frame: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    """The metadata to store: given columns, or every column whose values are plain scalars (str/number/bool)."""
    if columns is not None:
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise SchemaError(f"metadata column(s) {absent} not in the table; it has {list(frame.columns)}")
        return frame[list(columns)]
    keep = []
    for c in frame.columns:
        vals = [v for v in frame[c].head(50).tolist() if not is_missing(v)]
        if all(isinstance(v, (str, bool, int, float, np.generic)) for v in vals):
            keep.append(c)
    return frame[keep]


class Index:
    """A persistent vector index (LanceDB on disk) of a table's embeddings, with the model that made them."""

    def __init__(self, path: str | Path, model: Any = None, *, ann_threshold: int | None = None) -> None:
        self.path = Path(path)
        self.store = VectorStore(self.path)
        meta = self.store.meta() if self.store.exists() else {}
        self.store.ann_threshold = ann_threshold or meta.get("ann_threshold", 50_000)
        self._model = model
        self.last_build: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.store)

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, rows={len(self)}, vectors={self.store.vector_names()})"

    @property
    def meta(self) -> dict[str, Any]:
        return self.store.meta()

    @property
    def model(self):
        if self._model is None:
            self._model = load_run(self.meta["run"])
        return self._model

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        run: Any,
        data: Any,
        path: str | Path,
        *,
        id_column: str | None = None,
        metadata: Sequence[str] | None = None,
        prune: bool = True,
        on_error: str = "raise",
        chunk_size: int = 2048,
        ann_threshold: int = 50_000,
        progress: bool = False,
    ) -> "Index":
        """Embed the table's new and changed rows into the index at ``path`` (created if absent)."""
        t0 = time.perf_counter()
        from polymodal.data.decode import decode
        from polymodal.evaluate.scoring import embeddings

        model = load_run(run)
        fingerprint = _model_fingerprint(run, model)
        store = VectorStore(path, ann_threshold=ann_threshold)
        if store.exists():
            meta = store.meta()
            if meta.get("model_fingerprint") != fingerprint:
                raise IndexError_(
                    f"the index at {path} was built with another model ({meta.get('run')}); "
                    "vectors from two models are not comparable: build into a new folder"
                )
        frame, base_dir = read_table(data)
        if len(frame) == 0:
            raise SchemaError("the table is empty: nothing to index")
        if id_column is not None and id_column not in frame.columns:
            raise SchemaError(f"id column {id_column!r} not in the table; it has {list(frame.columns)}")
        names = [m for m in model.schema.names if all(c in frame.columns for c in model.schema[m].columns)]
        if not names:
            raise SchemaError(
                f"the table has none of the columns the model reads ({[s.columns for s in model.schema]}); "
                f"it has {list(frame.columns)}"
            )
        keys, hashes, missing = row_keys_and_hashes(model.schema, frame, base_dir, names, id_column)
        dup = pd.Series(keys).duplicated(keep=False).to_numpy()
        if dup.any():
            rows = list(frame.index[dup][:4])
            raise IndexError_(
                f"rows {rows} have identical content keys; give each row a unique id with id_column= (--id COLUMN)"
            )
        missing_rows = {m["row"] for m in missing}
        ok = np.array([r not in missing_rows for r in frame.index])
        existing = store.hashes()
        todo = np.array([ok[i] and existing.get(k) != h for i, (k, h) in enumerate(zip(keys, hashes))], bool)
        meta_frame = metadata_frame(frame, metadata)
        store.write_meta({
            "run": str(Path(run).resolve()) if isinstance(run, (str, Path)) else None,
            "model_fingerprint": fingerprint,
            "modalities": names,
            "kinds": {m: model.schema[m].kind for m in names},
            "vectors": [*names, FUSED],
            "id_column": id_column,
            "metadata": list(meta_frame.columns),
            "ann_threshold": ann_threshold,
            **({k: v for k, v in store.meta().items() if k == "ann_rows"} if store.exists() else {}),
        })
        inserted = updated = 0
        rows = np.flatnonzero(todo)
        for start in range(0, len(rows), chunk_size):  # each chunk is one atomic commit
            sel = rows[start : start + chunk_size]
            part = frame.iloc[sel]
            _, ds, _ = decode(model.schema, part, on_error=on_error, labels="ignore", names=names, base_dir=base_dir,
                              progress=False)
            emb, present = embeddings(model.net, ds, names)
            r = store.upsert([keys[i] for i in sel], [hashes[i] for i in sel], emb, present, meta_frame.iloc[sel].reset_index(drop=True))
            inserted, updated = inserted + r["inserted"], updated + r["updated"]
        stale = [k for k in existing if k not in set(np.asarray(keys, dtype=object)[ok])] if prune else []
        if not prune:  # rows whose files were deleted still leave the index
            stale = [keys[i] for i in np.flatnonzero(~ok) if keys[i] in existing]
        deleted = store.delete(stale)
        ann = False
        meta = store.meta()
        n = len(store)
        if n >= ann_threshold and n > 1.2 * meta.get("ann_rows", 0):
            store.create_ann()
            meta["ann_rows"] = n
            store.write_meta(meta)
            ann = True
        idx = cls(path, model)
        idx.last_build = {
            "rows": len(frame),
            "inserted": inserted,
            "updated": updated,
            "unchanged": int(ok.sum() - todo.sum()),
            "deleted": deleted,
            "missing_files": len(missing_rows),
            "missing_examples": missing[:5],
            "total": n,
            "version": store.version,
            "ann_built": ann,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return idx

    # ------------------------------------------------------------------ search
    def query_vector(self, value: Any, modality: str) -> np.ndarray:
        return self.model.encode(modality, [value])[0]

    def search(
        self,
        *,
        text: str | None = None,
        image: Any = None,
        audio: Any = None,
        vector: np.ndarray | None = None,
        modality: str | None = None,
        target: str | None = None,
        top_k: int = 10,
        where: str | None = None,
        exact: bool | None = None,
    ) -> pd.DataFrame:
        """The ``top_k`` rows nearest to the query, best first (``score`` = cosine similarity).

        Give one of ``text`` / ``image`` (path, bytes or array) / ``audio`` (path or ``{array, sampling_rate}``),
        or a raw ``vector``. ``modality`` names the query's modality when the model has several of that kind;
        ``target`` is the stored vector to search (default: the first indexed modality other than the query's).
        """
        from polymodal.recipes.embed import modality_of_kind

        given = {k: v for k, v in (("text", text), ("image", image), ("audio", audio)) if v is not None}
        if len(given) + (vector is not None) != 1:
            raise PolymodalError("give exactly one query: text=, image=, audio= or vector=")
        meta = self.meta
        if vector is None:
            kind, value = next(iter(given.items()))
            m = modality or modality_of_kind(self.model.schema, kind)
            vector = self.query_vector(value, m)
        else:
            m = modality
        if target is None:
            others = [x for x in meta["modalities"] if x != m]
            target = others[0] if others else FUSED
        return self.store.search(vector, target, top_k=top_k, where=where, exact=exact)


def _model_fingerprint(run: Any, model: Any) -> str:
    if isinstance(run, (str, Path)) and (Path(run) / "weights.safetensors").exists():
        return _file_digest(Path(run) / "weights.safetensors")
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
