"""Run one command as the root of its own process tree, and let nothing of that tree outlive it.

`python reaper.py GRACE -- COMMAND...` is what spawn(reap_tree=True) runs. The reaper is a child
subreaper (PR_SET_CHILD_SUBREAPER): every process the command starts stays below it, even one that
double-forks or leaves the process group, because orphans are handed to the reaper instead of to init.
mkosi needs this: its sandboxed apt and dpkg share no PID namespace with it, and a plain SIGKILL of
mkosi leaves them running.

- The command ends: whatever it left behind is killed, and the reaper exits as the command did.
- SIGTERM, SIGINT or SIGHUP (from imagegen's clean-up, or as the reaper's own parent-death signal when
  imagegen dies, even by SIGKILL): the process group gets one SIGTERM, the command has GRACE seconds to
  clean up (mkosi then removes its workspace), then every process left in the tree is killed.

Standard library only, so that it starts in a few milliseconds with `python -I -S`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def death_signal_preexec(sig: int) -> Callable[[], None]:
    """A preexec_fn that arms `sig` as the child's parent-death signal, for the process calling this now.

    Classic race: if the parent died between fork() and the prctl(), the signal never comes; so the
    child checks that its parent is still the one that forked it and ends itself otherwise. The stop
    signals a parent blocks around its fork are unblocked again here, before the command runs.
    """
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)
    args = (ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0))

    def preexec() -> None:
        # Runs in the forked child before exec: no imports, no logging, nothing that takes a lock.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        libc.prctl(*args)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0].decode()


def descendants(root: int) -> list[int]:
    """Every living (not zombie) process below root, found through /proc's parent links."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None and st[1] not in "ZX":
            children.setdefault(st[0], []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


class Reaper:
    def __init__(self, argv: list[str], grace: float) -> None:
        self.argv = argv
        self.grace = grace
        self.command: subprocess.Popen[bytes] | None = None
        self.status: int | None = None  # the command's wait status, once reaped
        self.deadline: float | None = None  # set by the first stop signal

    def reap(self, block: bool = False) -> None:
        """Collect every child that has ended (with block, every child), the command's status among them."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.command is not None and pid == self.command.pid:
                self.status = status

    def kill_tree(self) -> None:
        """SIGKILL everything below us until nothing is left; a killed process's children come to us."""
        while left := descendants(os.getpid()):
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.reap()
            time.sleep(0.02)
        self.reap(block=True)

    def stop(self) -> None:
        if self.deadline is not None:
            # Asked a second time: no more grace.
            self.deadline = time.monotonic()
            return
        self.deadline = time.monotonic() + self.grace
        # One SIGTERM to the whole group; it reaches us too, and is recognised by its sender.
        os.killpg(0, signal.SIGTERM)

    def run(self) -> int:
        if os.getpgrp() != os.getpid():
            # The group that gets the SIGTERM must be this tree alone (spawn() makes it so already).
            os.setpgid(0, 0)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        # SIGTERM rather than spawn()'s SIGKILL: a reaper killed outright could not end its tree.
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        waited = {signal.SIGCHLD, *STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        arm = death_signal_preexec(signal.SIGKILL)

        def preexec() -> None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            arm()

        # close_fds: the descriptors passed to the reaper (locks) are for it to hold, not for the command.
        self.command = subprocess.Popen(self.argv, preexec_fn=preexec, close_fds=True)
        while self.status is None:
            timeout = 1.0 if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            info = signal.sigtimedwait(waited, timeout)
            if info is not None and info.si_signo in STOP_SIGNALS and info.si_pid != os.getpid():
                self.stop()
            self.reap()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                break
        self.kill_tree()
        for s in STOP_SIGNALS:
            # Pending stop signals are dropped, not delivered when they are unblocked.
            signal.signal(s, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
        assert self.status is not None  # kill_tree reaped every child, the command too
        if os.WIFSIGNALED(self.status):
            # End as the command ended, so that spawn() sees the command's own status.
            sig = os.WTERMSIG(self.status)
            if sig != signal.SIGKILL:
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        return os.waitstatus_to_exitcode(self.status)


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: reaper.py GRACE -- COMMAND...", file=sys.stderr)
        return 2
    try:
        return Reaper(args[2:], float(args[0])).run()
    except FileNotFoundError as e:
        print(f"{args[2]}: not found ({e})", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
