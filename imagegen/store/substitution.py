"""The store's hook for binary caches: a Substituter fills a new entry from elsewhere instead of a build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from imagegen.store.derivation import Derivation


@dataclass(frozen=True)
class Substituted:
    """What a substituter brought: the stage's report (as the builder returned it) and where it came from."""

    report: Any
    origin: str


class Substituter(Protocol):
    def substitute(self, drv: Derivation, out: Path) -> Substituted | None:
        """Fill the empty directory out with drv's verified output and say so, or leave out empty and
        return None (nobody has it, or what they had was refused); may raise to stop the build."""
        ...
