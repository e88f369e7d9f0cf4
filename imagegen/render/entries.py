"""What an overlay is made of: files, hard links and symlinks, planned before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

UNIT_DIR = "etc/systemd/system"
SECRET = 0o600
PUBLIC = 0o644


@dataclass(frozen=True)
class File:
    path: str
    content: bytes
    mode: int = PUBLIC


@dataclass(frozen=True)
class HardLink:
    """Another name for an already planned file: the same inode, as `ln` makes it."""

    path: str
    source: str


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


Entry = File | HardLink | Symlink


@dataclass(frozen=True)
class Plan:
    entries: tuple[Entry, ...]

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}
