"""Files referenced by a table: resolve, hash (sha256, each distinct file once), and keep each content once.

The content store holds every distinct file once, at ``files/<sha[:2]>/<sha256><ext>``: registering the same
bytes again (the same path, a copy elsewhere, the same file from another source) stores nothing new, and every
origin stays in ``refs/`` (replication avoidance with full provenance). Two files merge only when their bytes are
equal: a new file whose sha256 names an existing blob is also compared byte for byte with the stored one, so a
merge never rests on the hash alone.

Hashing is cached by ``(resolved path, size, mtime_ns)``: a file seen before (in this ``add``, or recorded in
the catalogue's ``refs``) with the same size and modification time is not read again.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.catalog.errors import CatalogError

Key = tuple[str, int, int]  # (resolved path, size, mtime_ns)


@dataclass
class FileInfo:
    """One referenced file: where it resolved to, its size, mtime, sha256, and ``status`` ``ok`` or the problem."""

    resolved: str
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    status: str = "ok"  # ok | missing | unreadable | not a file
    problem: str = ""


def resolve(cell: Any, base_dir: Path) -> Path:
    """A path cell as an absolute path: ``~`` expanded, ``file://`` dropped, relative to the table's folder."""
    s = os.fspath(cell).strip()
    if s.startswith("file://"):
        s = s[len("file://"):]
    p = Path(s).expanduser()
    return p if p.is_absolute() else base_dir / p


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class Hasher:
    """sha256 of files, each distinct (path, size, mtime) read once; ``cache`` may be seeded from the catalogue."""

    cache: dict[Key, str] = field(default_factory=dict)
    hashed: int = 0  # files actually read
    fresh: set[str] = field(default_factory=set)  # resolved paths hashed now (not from the cache)

    def info(self, path: Path) -> FileInfo:
        resolved = os.path.abspath(path)
        try:
            st = os.stat(resolved)
        except FileNotFoundError:
            return FileInfo(resolved, status="missing", problem="the file does not exist")
        except OSError as e:
            return FileInfo(resolved, status="unreadable", problem=f"cannot access the file ({e.strerror})")
        if not os.path.isfile(resolved):
            return FileInfo(resolved, status="not a file", problem="the path is a directory or a special file")
        key = (resolved, st.st_size, st.st_mtime_ns)
        sha = self.cache.get(key)
        if sha is None:
            try:
                sha = sha256_file(resolved)
            except OSError as e:
                return FileInfo(resolved, st.st_size, st.st_mtime_ns, status="unreadable",
                                problem=f"cannot read the file ({e.strerror})")
            self.cache[key] = sha
            self.hashed += 1
            self.fresh.add(resolved)
        return FileInfo(resolved, st.st_size, st.st_mtime_ns, sha)


def blob_path(sha: str, ext: str) -> str:
    """Where content ``sha`` lives in the store, relative to the catalogue folder."""
    return f"files/{sha[:2]}/{sha}{ext}"


def store_blob(root: Path, info: FileInfo) -> dict[str, Any]:
    """Copy a new file into the content store (through a temporary name, then a rename); its blob row."""
    ext = Path(info.resolved).suffix.lower()[:16]
    rel = blob_path(info.sha256, ext)
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{secrets.token_hex(4)}")
    try:
        shutil.copyfile(info.resolved, tmp)
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"cannot copy {info.resolved!r} into the catalogue's content store ({e})") from None
    return {"sha256": info.sha256, "size": int(info.size), "stored": rel, "ext": ext}


def same_bytes(root: Path, stored: str, info: FileInfo) -> None:
    """Refuse to merge a file into a blob whose bytes differ (a sha256 collision, or a store edited by hand)."""
    path = root / stored
    if not path.is_file():
        raise CatalogError(f"the catalogue's content store lacks {stored!r}, which manifest and blobs name; "
                           "the folder was modified by hand: restore the file or rebuild the catalogue")
    if not filecmp.cmp(path, info.resolved, shallow=False):
        raise CatalogError(
            f"{info.resolved!r} has the sha256 of stored file {stored!r} but different bytes; refusing to merge them "
            "(a hash collision, or the content store was edited by hand)"
        )


def remove_unstored(root: Path, stored: set[str]) -> int:
    """Delete content-store files no committed blob names (a killed ``add`` copied them); call under the lock."""
    removed = 0
    for p in (root / "files").glob("*/*"):
        if f"files/{p.parent.name}/{p.name}" not in stored:
            p.unlink(missing_ok=True)
            removed += 1
    return removed
