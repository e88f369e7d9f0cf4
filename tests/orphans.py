"""What is left of the processes a test started, wherever the kernel reparented them.

Inside `adopting()` the test process is a child subreaper: a process whose parent dies is handed to the
test instead of to init, so "ours" is exactly "below the test process" and a leftover PID cannot be
reused before the test reaps it. Leaving the block kills and reaps whatever is still there, so that a
failing test does not leave a VM or a build running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(int(on)), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _parent_and_state(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            after_name = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(after_name[1]), after_name[0].decode()


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    st = _parent_and_state(pid)
    return st is not None and st[1] not in "ZX"


def living_descendants(root: int | None = None) -> dict[int, str]:
    """PID -> command line of every living process below root (default: this test process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _parent_and_state(int(name))
            if st is not None and st[1] not in "ZX":
                children.setdefault(st[0], []).append(int(name))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found[pid] = cmdline(pid)
            todo.append(pid)
    return found


def wait_until_gone(pids: list[int], timeout: float) -> list[int]:
    """The PIDs still alive after waiting up to timeout seconds for all of them to end."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _reap_adopted() -> None:
    # Only when the test is done with its own subprocesses: this would take their exit status from them.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@contextmanager
def adopting() -> Iterator[None]:
    _set_subreaper(True)
    try:
        yield
    finally:
        for pid in living_descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until_gone(list(living_descendants()), 10)
        _reap_adopted()
        _set_subreaper(False)
