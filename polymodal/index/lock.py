"""An exclusive writer lock across processes: ``fcntl.flock`` on a file (``msvcrt.locking`` on Windows).

The OS releases the lock when its holder exits or dies, so a crashed writer never leaves a stale lock (on a file
system without working ``flock``, e.g. some network mounts, remove the file by hand). The file stays (emptied)
after release: removing a file another process may be about to lock would let two writers in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from polymodal.errors import PolymodalError


class IndexError_(PolymodalError):
    """A problem with a vector index (its folder, its model, its contents)."""


class IndexLockedError(IndexError_):
    """Another writer (an ``index build``) holds the index's lock."""


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without blocking; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)



@contextlib.contextmanager
def writer_lock(lock_path: Path, wait: float = 0.0, *, what: str = "the index") -> Iterator[None]:
    """Hold the lock at ``lock_path`` for the body; ``IndexLockedError`` (naming the holder's pid) when it is not
    free within ``wait`` seconds."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, float(wait))
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    holder = os.read(fd, 200).decode(errors="replace").strip()
                except OSError:  # (Windows: the holder's locked byte cannot be read)
                    holder = ""
                pid = holder.split()[1] if holder.startswith("pid ") and len(holder.split()) > 1 else "unknown"
                raise IndexLockedError(
                    f"another `index build` holds {what} (pid {pid}); wait for it or remove "
                    f"the lock ({lock_path}) if no build runs"
                )
            time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))
        try:
            os.ftruncate(fd, 0)
            since = time.strftime("%Y-%m-%dT%H:%M:%S")
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} host {socket.gethostname()} since {since}\n".encode())
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
