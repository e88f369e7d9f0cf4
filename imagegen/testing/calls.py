"""The log of every Machine and Lab call: what was asked, how long it took, how it ended.

Each call is a line in the artifacts' call log (calls within a call, such as the polls of a wait, are
indented under it); a call made by the test itself is also handed to on_call, which shows it as a check.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The call log's name in the artifacts directory.
CALL_LOG = "machine-calls.log"


@dataclass
class Call:
    """One call as it runs; the call sets detail to what the report shows beside it."""

    title: str
    depth: int
    detail: str = ""
    seconds: float = 0.0
    ok: bool = True


@dataclass
class CallLog:
    path: Path | None = None
    on_call: Callable[[Call], object] | None = None
    _depth: int = 0
    _started: float = field(default_factory=time.monotonic)

    def write(self, text: str) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def section(self, title: str) -> None:
        self.write(f"== {title}")

    @contextlib.contextmanager
    def call(self, title: str) -> Iterator[Call]:
        c = Call(title, self._depth)
        self._depth += 1
        start = time.monotonic()
        try:
            yield c
        except BaseException as e:
            c.ok = False
            c.detail = c.detail or f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise
        finally:
            self._depth -= 1
            c.seconds = time.monotonic() - start
            at = start - self._started
            outcome = "ok" if c.ok else "FAILED"
            detail = f" — {c.detail}" if c.detail else ""
            self.write(f"[{at:8.2f} s] {'  ' * c.depth}{title} ({c.seconds:.2f} s) {outcome}{detail}")
            if c.ok and c.depth == 0 and self.on_call is not None:
                self.on_call(c)
