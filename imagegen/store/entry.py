"""A store entry as a value: its path, and its metadata read on demand."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen.store.hashing import BASE32_ALPHABET
from imagegen.store.lock import TreeHold

# `<32 base32 characters>-<name>`
ENTRY_NAME = re.compile(rf"[{BASE32_ALPHABET}]{{32}}-[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*")


@dataclass(frozen=True)
class Entry:
    """A complete store entry. `reused` says whether realise() found it instead of building it,
    `substituted` the cache it was fetched from instead of built (None: built here or found).

    `hold` is the shared lock that keeps gc away from the entry while this process uses it (see
    lock.TreeHold); it lives as long as the Entry or the Store that handed it out.
    """

    path: Path
    reused: bool = field(default=True, compare=False)
    substituted: str | None = field(default=None, compare=False)
    hold: TreeHold | None = field(default=None, compare=False, repr=False)

    @property
    def path_name(self) -> str:
        return self.path.name

    @property
    def hash(self) -> str:
        return self.path.name[:32]

    @property
    def name(self) -> str:
        return self.path.name[33:]

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def metadata(self) -> dict[str, Any]:
        """The entry's metadata: derivation, references, created, build_seconds, size, report."""
        data: dict[str, Any] = json.loads(self.meta_path.read_text())
        return data

    @property
    def report(self) -> Any:
        """What the stage's builder returned (JSON data), e.g. a manifest summary or a verdict."""
        return self.metadata()["report"]

    @property
    def references(self) -> tuple[str, ...]:
        """Path names of the entries this one was built from."""
        return tuple(self.metadata()["references"])
