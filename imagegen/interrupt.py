"""Ctrl-C, SIGTERM and SIGHUP end a command one way: unwinding (so every `finally` stops what it
started), then one line saying what was interrupted and where its evidence is, and exit 128 + signal."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

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


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise Interrupted, as Ctrl-C raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; a caller's thread keeps its own
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
