"""Locks of the store, all fcntl.flock, so the kernel releases them when their holder dies.

Two kinds, on two different files, so that a rebuild never waits for a reader and gc waits for no one:

- EntryLock: an exclusive lock on `<entry>.lock`, held by whoever builds, replaces or collects the entry.
- TreeHold: a lock on the entry's directory itself. Every process using an entry holds it shared (a
  temporary GC root, like Nix's); gc takes it exclusive without waiting and leaves alone what it cannot lock.

Every path is opened with O_NOFOLLOW: a lock path that is a symbolic link is refused, never followed (a
link planted in the store must not make imagegen create or lock files elsewhere).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from imagegen.errors import UsageError


def _refuse_link(path: Path) -> UsageError:
    return UsageError(f"{path} is a symbolic link, not a lock imagegen made",
                      "remove it; the store never holds links other than gcroots/")


class EntryLock:
    """An exclusive flock on one lock file, held for the object's `with` block.

    The lock file (mode 0600) stays in place after release; gc removes a lock file only while holding
    it, and acquire() re-checks that the path still names the locked inode, so a lock taken on a file
    gc has just unlinked is dropped and taken again on the new file.
    """

    def __init__(self, path: Path, on_wait: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_wait = on_wait
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; without blocking, return False at once if another process holds it."""
        waited = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise _refuse_link(self.path) from None
                raise
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

    def __del__(self) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def is_locked(path: Path) -> bool:
    """True if some process holds the lock file at path right now (a missing file is unlocked).

    A symbolic link there counts as locked: whoever asks must leave the entry alone.
    """
    try:
        # O_NONBLOCK: a FIFO where a lock belongs must not block the open for ever.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            return True
        raise
    return _held_elsewhere(fd)


class TreeHold:
    """A flock on an entry's directory: shared while the entry is in use, exclusive while gc deletes it.

    Released by release(), when the object is garbage, or when the process ends.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path

    @classmethod
    def take(cls, path: Path, *, shared: bool = True, blocking: bool = True) -> TreeHold | None:
        """Lock the directory at path; None if it is missing, not a directory, or (without blocking) held.

        After a wait the path may name another directory (gc removed the one waited for, a rebuild put a
        new one there): then the lock is dropped and None returned, and the caller looks again.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                os.close(fd)
                return None
            fcntl.flock(fd, operation)
        if not _same_file(fd, path):
            os.close(fd)
            return None
        return cls(fd, path)

    def is_current(self) -> bool:
        """Whether the path still names the directory this hold locks."""
        return self.fd is not None and _same_file(self.fd, self.path)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.release()


def is_in_use(path: Path) -> bool:
    """True if some process holds the entry directory at path (shared or exclusive) right now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return False
        raise
    return _held_elsewhere(fd)


def _held_elsewhere(fd: int) -> bool:
    """Whether another open file holds a flock on fd's file: an exclusive try fails then. Closes fd."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
