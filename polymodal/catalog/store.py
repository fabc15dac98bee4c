"""The catalogue folder: its layout, and the manifest that is the catalogue's one committed state.

A catalogue is a folder of ordinary files::

    cat/
      manifest.json            the committed state: sources + schemas, batches, cohorts, runs, version
      records/<batch>.parquet  one row per record of one ``add`` (subject, provenance, the source's own columns)
      refs/<batch>.parquet     one row per (record, file column): the file as written in the table, its sha256
      blobs/<batch>.parquet    the content hashes this batch stored for the first time
      files/ab/<sha256>.<ext>  the content store: each distinct file once, named by its sha256
      cohorts/<id>.parquet     which subject's records each exported cohort used
      .lock                    the writer lock (``lock.py``)

Only files named by ``manifest.json`` belong to the catalogue. A writer (``add``, a cohort export, a run
registration) holds the lock, writes its new files under fresh names, then commits by writing
``manifest.json.tmp-<pid>`` and renaming it over ``manifest.json`` (``os.replace``, atomic on POSIX). A writer
killed before the rename leaves the previous manifest untouched, so the catalogue is exactly as it was; the
unreferenced files it left are removed by the next writer (``remove_orphans`` for the tables,
``files.remove_unstored`` for the content store).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from polymodal import __version__
from polymodal.catalog.errors import CatalogError

MANIFEST = "manifest.json"
FORMAT = "polymodal-catalog"
FORMAT_VERSION = 1
TABLE_DIRS = ("records", "refs", "blobs")
RESERVED_PREFIX = "pm_"  # the catalogue's own columns in records/*.parquet; a source column may not start with it
RESERVED = ("subject", "n_records", "sources")  # names the per-subject view gives its own columns


def now() -> str:
    """The current UTC time, ISO 8601 with seconds (what ``added_at`` and ``created`` hold)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "version": 0, "created": now(), "updated": None,
            "polymodal_version": __version__, "sources": {}, "columns": {}, "batches": [], "blobs": 0,
            "cohorts": {}, "runs": []}


def read_manifest(root: str | os.PathLike, *, must_exist: bool = True) -> dict[str, Any]:
    """The committed manifest of the catalogue at ``root`` (an empty one for a new folder unless ``must_exist``)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        if must_exist:
            hint = "it does not exist" if not root.exists() else "it holds no manifest.json"
            raise CatalogError(
                f"{str(root)!r} is not a catalogue ({hint}); create one with `polymodal catalog add {root} TABLE "
                "--source NAME --subject COLUMN`"
            )
        if root.exists() and not root.is_dir():
            raise CatalogError(f"{str(root)!r} is a file; a catalogue is a folder")
        return empty_manifest()
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CatalogError(f"{str(path)!r} is not a readable catalogue manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CatalogError(f"{str(path)!r} is not a polymodal catalogue manifest (no format {FORMAT!r})")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CatalogError(f"{str(path)!r} was written by a newer polymodal (format {manifest['format_version']}); "
                           f"this is {__version__}: upgrade polymodal to read it")
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename: readers see the old or the new file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def commit(root: Path, manifest: dict[str, Any]) -> None:
    """Make ``manifest`` the catalogue's state: the one atomic step of every write (call it holding the lock)."""
    manifest["updated"] = now()
    manifest["polymodal_version"] = __version__
    write_atomic(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=False).encode())
    _fsync_dir(root)


def batch_files(manifest: dict[str, Any], kind: str) -> list[str]:
    """The committed ``records`` / ``refs`` / ``blobs`` Parquet files, relative to the catalogue, in add order."""
    return [b["files"][kind] for b in manifest["batches"] if b["files"].get(kind)]


def remove_orphans(root: Path, manifest: dict[str, Any]) -> int:
    """Delete the table files and temporary files a killed writer left (not named by the manifest); returns how
    many. Call it holding the lock: a file another writer is still writing is never an orphan then."""
    keep = {f for kind in TABLE_DIRS for f in batch_files(manifest, kind)}
    keep |= {c["file"] for c in manifest["cohorts"].values()}
    removed = 0
    for d in (*TABLE_DIRS, "cohorts"):
        folder = root / d
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if f"{d}/{p.name}" not in keep:
                p.unlink(missing_ok=True)
                removed += 1
    for p in root.glob(f"{MANIFEST}.tmp-*"):
        p.unlink(missing_ok=True)
        removed += 1
    return removed
