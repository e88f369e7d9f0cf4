"""Ctrl-C, SIGTERM and SIGHUP end a command one way: unwinding (so every `finally` stops what it
started), then one line saying what was interrupted and where its evidence is, and exit 128 + signal."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

# Signals that mean "stop now" to a command-line program; SIGINT already raises KeyboardInterrupt.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt that knows its signal, what it stopped and where that left evidence."""

    def __init__(self, signum: int = signal.SIGINT, what: str | None = None,
                 artifacts: Path | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.what = what
        self.artifacts = artifacts

    @property
    def exit_code(self) -> int:
        # The shell's convention for a death by signal: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
        return 128 + self.signum

    def line(self, default_what: str) -> str:
        text = f"interrupted: {self.what or default_what} ({signal.Signals(self.signum).name})"
        if self.artifacts is not None:
            text += f"; evidence so far: {self.artifacts}"
        return text


def interrupted(e: KeyboardInterrupt, *, what: str | None = None, artifacts: Path | None = None) -> Interrupted:
    """e as an Interrupted, with what it stopped and where the evidence is added (kept if already set)."""
    signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
    if isinstance(e, Interrupted):
        what = e.what or what
        artifacts = e.artifacts or artifacts
    return Interrupted(signum, what, artifacts)


class Terminated(Interrupted):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every `with`
    and `finally` on the way out runs: children are ended and locks released before imagegen exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)


def _install() -> dict[int, Any] | None:
    """Make SIGTERM and SIGHUP raise Terminated in the main thread; the handlers they had, else None.

    Only the first signal raises: a second one would cut short the clean-up the first one started."""
    if threading.current_thread() is not threading.main_thread():
        return None  # Python runs signal handlers in the main thread only (a CLI invoked by a test's thread)
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signum)

    return {s: signal.signal(s, handler) for s in STOP_SIGNALS}


def terminate_as_interrupt() -> None:
    """For the rest of the process, SIGTERM and SIGHUP end it the way Ctrl-C does (see _install)."""
    _install()


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise Terminated, as Ctrl-C raises KeyboardInterrupt; the
    handlers from before come back afterwards."""
    old = _install()
    try:
        yield
    finally:
        for s, h in (old or {}).items():
            signal.signal(s, h)
