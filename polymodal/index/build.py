"""``Index``: a persistent cross-modal search index of a table, built with a trained embedding model.

    idx = pm.Index.build("runs/emb", "data.parquet", "idx/")     # incremental: re-running adds only new rows
    idx = pm.Index("idx/")
    idx.search(text="a smiling face", top_k=5, where="split = 'test'")

Rows are keyed by ``id_column`` when given, otherwise by the row's modality cells (file paths, texts; the content
digest for inline bytes/arrays). Each row also stores a content hash (file bytes for paths), so a re-build:
adds new keys, re-embeds rows whose content changed (an edited file), leaves unchanged rows alone, and, with
``prune`` (default), removes keys no longer in the table and rows whose files were deleted.

Concurrency: a build holds the index's writer lock (``VectorStore.lock``, an ``flock`` on
``.polymodal_build.lock`` in the index folder) from before it reads the stored hashes until its last write. A second
build into the same index fails at once with ``IndexLockedError`` naming the holder's pid (``lock_wait=`` seconds
makes it wait instead). LanceDB alone would let two builds insert the same new ids twice. A build also repairs ids
stored more than once (``duplicates_removed``), keeping the newest row, before it compares hashes.

``last_build`` (the CLI prints it) counts ``rows``, ``inserted``, ``updated``, ``unchanged``, ``deleted``,
``skipped`` (rows not indexed: ``skipped_reasons`` -> count, ``missing_files`` / ``missing_examples`` for the
files), ``duplicates_removed``, ``decode`` (the merged ``DecodeReport.to_dict()``) and ``decode_summary`` (its
one line: values treated as missing per cause and column), ``metadata_as_text`` (mixed-type metadata columns
stored as strings). A build that would index none of a table's rows raises, saying why.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.table import read_table
from polymodal.errors import PolymodalError, SchemaError
from polymodal.index.rows import file_digest, metadata_frame, row_keys_and_hashes
from polymodal.index.store import IndexError_, VectorStore

FUSED = "fused"


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
        lock_wait: float = 0.0,
    ) -> "Index":
        """Embed the table's new and changed rows into the index at ``path`` (created if absent).

        The whole build holds the index's writer lock; ``lock_wait`` is how many seconds to wait for another
        build that holds it (default 0: fail at once with ``IndexLockedError``, naming its pid).

        ``on_error="missing"``: undecodable values (an absent or corrupt file, a bad value) count as missing and
        the row is indexed with the modalities that did decode; a row with none is skipped. ``"raise"``: the first
        undecodable value raises, except absent files, whose rows are skipped (and leave the index)."""
        t0 = time.perf_counter()
        model = load_run(run)
        fingerprint = _model_fingerprint(run, model)
        store = VectorStore(path, ann_threshold=ann_threshold)
        with store.lock(wait=lock_wait):
            stats = _build_locked(store, run, model, fingerprint, data, path, id_column=id_column, metadata=metadata,
                                  prune=prune, on_error=on_error, chunk_size=chunk_size, ann_threshold=ann_threshold)
        idx = cls(path, model)
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        idx.last_build = stats
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


def _build_locked(store: VectorStore, run: Any, model: Any, fingerprint: str, data: Any, path: str | Path, *,
                  id_column: str | None, metadata: Sequence[str] | None, prune: bool, on_error: str,
                  chunk_size: int, ann_threshold: int) -> dict[str, Any]:
    """The body of ``Index.build``, run under the index's writer lock; returns ``last_build``."""
    from polymodal.data.decode import decode
    from polymodal.data.kinds.base import DecodeReport
    from polymodal.evaluate.scoring import embeddings

    if on_error not in ("raise", "missing"):
        raise PolymodalError(f"on_error must be 'raise' or 'missing', got {on_error!r}")
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
    # under "raise" a row with an absent file is skipped; under "missing" the decoder treats the file as missing
    ok = np.array([on_error == "missing" or r not in missing_rows for r in frame.index], bool)
    if not ok.any():
        ex = missing[0]
        raise IndexError_(
            f"none of the {len(frame)} rows can be indexed: every row names a file that does not exist "
            f"(e.g. column {ex['column']!r}: {ex['file']!r}); check the paths (relative ones resolve against "
            f"{str(Path(base_dir).resolve())!r}), or pass on_error='missing' (--on-error missing) to index rows "
            "with the modalities they have"
        )
    repaired = store.dedupe()
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
    report = DecodeReport()
    inserted = updated = 0
    empty: list[int] = []  # rows where no modality decoded: not stored
    rows = np.flatnonzero(todo)
    for start in range(0, len(rows), chunk_size):  # each chunk is one atomic commit
        sel = rows[start : start + chunk_size]
        part = frame.iloc[sel]
        _, ds, rep = decode(model.schema, part, on_error=on_error, labels="ignore", names=names, base_dir=base_dir,
                            progress=False)
        report.merge(rep)
        emb, present = embeddings(model.net, ds, names)
        keep = np.asarray(present[FUSED], bool)
        empty.extend(int(i) for i in sel[~keep])
        if keep.any():
            r = store.upsert([keys[i] for i in sel[keep]], [hashes[i] for i in sel[keep]],
                             {k: v[keep] for k, v in emb.items()}, {k: v[keep] for k, v in present.items()},
                             meta_frame.iloc[sel[keep]].reset_index(drop=True))
            inserted, updated = inserted + r["inserted"], updated + r["updated"]
    unchanged = int(ok.sum() - todo.sum())
    skipped_reasons = {}
    if (~ok).sum():
        skipped_reasons["file missing"] = int((~ok).sum())
    if empty:
        skipped_reasons["nothing decodable"] = len(empty)
    if inserted + updated + unchanged == 0:
        raise IndexError_(
            f"0 of {len(frame)} rows indexed: no row had a usable value in any of {names} "
            f"({report.summary()}); nothing was changed in {path}"
        )
    indexed = set(np.asarray(keys, dtype=object)[ok]) - {keys[i] for i in empty}
    if prune:
        stale = [k for k in existing if k not in indexed]
    else:  # rows whose files were deleted, or that no longer decode, still leave the index
        gone = [keys[i] for i in np.flatnonzero(~ok)] + [keys[i] for i in empty]
        stale = [k for k in gone if k in existing]
    deleted = store.delete(stale)
    ann = False
    meta = store.meta()
    n = len(store)
    if n >= ann_threshold and n > 1.2 * meta.get("ann_rows", 0):
        store.create_ann()
        meta["ann_rows"] = n
        store.write_meta(meta)
        ann = True
    return {
        "rows": len(frame),
        "inserted": inserted,
        "updated": updated,
        "unchanged": unchanged,
        "deleted": deleted,
        "skipped": int(sum(skipped_reasons.values())),
        "skipped_reasons": skipped_reasons,
        "missing_files": int((~ok).sum()),  # rows skipped for an absent file (under "missing": decode report)
        "missing_examples": missing[:5] if (~ok).any() else [],
        "duplicates_removed": repaired,
        "decode": report.to_dict(),
        "decode_summary": report.summary(),
        "metadata_as_text": list(meta_frame.attrs.get("as_text", [])),
        "total": n,
        "version": store.version,
        "ann_built": ann,
    }


def _model_fingerprint(run: Any, model: Any) -> str:
    if isinstance(run, (str, Path)) and (Path(run) / "weights.safetensors").exists():
        return file_digest(Path(run) / "weights.safetensors")
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
