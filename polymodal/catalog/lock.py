"""The catalogue's writer lock: ``fcntl.flock`` on ``<catalogue>/.lock``, one writer at a time across processes.

The same idea as ``polymodal/index/lock.py``, which sits in a higher layer (``index``) that the catalogue may not
import. The OS releases the lock when its holder exits or is killed, so a crashed ``add`` never leaves a stale
lock behind. Readers take no lock: they read the committed manifest, which is replaced by one atomic rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from polymodal.catalog.errors import CatalogLockedError


@contextlib.contextmanager
def writer_lock(lock_path: Path, wait: float = 600.0) -> Iterator[None]:
    """Hold the exclusive lock at ``lock_path`` for the body, waiting up to ``wait`` seconds for another writer."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                raise CatalogLockedError(
                    f"another writer holds the catalogue lock {str(lock_path)!r} ({holder}) for more than "
                    f"{wait:g}s; wait for it to finish and try again"
                )
            time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
