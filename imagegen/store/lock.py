"""Per-entry locks: fcntl.flock on `<entry>.lock`, released by the kernel if the holder dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


class EntryLock:
    """An exclusive flock on one lock file, held for the object's `with` block.

    The lock file stays in place after release; gc removes a lock file only while holding
    it, and acquire() re-checks that the path still names the locked inode, so a lock taken
    on a file gc has just unlinked is dropped and taken again on the new file.
    """

    def __init__(self, path: Path, on_wait: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_wait = on_wait
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; without blocking, return False at once if another process holds it."""
        waited = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking:
                    os.close(fd)
                    return False
                if self.on_wait is not None and not waited:
                    self.on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):
                self.fd = fd
                return True
            os.close(fd)

    def release(self, unlink: bool = False) -> None:
        """Release the lock; with unlink, remove the lock file first (while still holding it)."""
        if self.fd is None:
            return
        if unlink:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> EntryLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def is_locked(path: Path) -> bool:
    """True if some process holds the lock file at path right now (a missing file is unlocked)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
