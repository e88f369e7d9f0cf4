"""Per-host generations: each build of a host that changed its system is a numbered record.

profiles/<host>/generation-<n>.json holds number, time, store path (the path name, so the store
can move), profile hash, and the test verdict once there is one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen.errors import UsageError
from imagegen.store.derivation import check_name
from imagegen.store.entry import Entry
from imagegen.store.hashing import canonical_json
from imagegen.store.lock import EntryLock

if TYPE_CHECKING:
    from imagegen.store.store import Store

PROFILES = "profiles"
_FILE = re.compile(r"generation-([0-9]+)\.json")


@dataclass(frozen=True)
class Generation:
    """One generation of a host; `verdict` is the test summary, `verdict_path` its store entry."""

    host: str
    number: int
    time: str
    store_path: str
    profile_hash: str
    verdict: Mapping[str, Any] | None = None
    verdict_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _host_dir(store: Store, host: str) -> Path:
    directory = store.root / PROFILES / check_name(host, "host name")
    # Generations are written (and replaced) in there: never through a planted link.
    for path in (directory.parent, directory):
        if path.is_symlink():
            raise UsageError(f"{path} is a symbolic link, not a directory of generations imagegen made",
                             "remove the link")
    return directory


def _write(path: Path, generation: Generation) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(generation.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def history(store: Store, host: str) -> list[Generation]:
    """The host's generations, oldest first (empty if it has none)."""
    directory = _host_dir(store, host)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if match := _FILE.fullmatch(path.name):
            data = json.loads(path.read_text())
            found.append((int(match[1]), Generation(**data)))
    return [generation for _, generation in sorted(found, key=lambda pair: pair[0])]


def hosts(store: Store) -> list[str]:
    """Hosts that have at least one generation."""
    directory = store.root / PROFILES
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and history(store, p.name))


def record_generation(store: Store, host: str, entry: Entry, profile_hash: str) -> Generation:
    """Add a generation for host pointing at entry, unless the newest one already does.

    Building an unchanged host is a no-op, so it returns the newest generation unchanged when
    its store path and profile hash are the same.
    """
    directory = _host_dir(store, host)
    store.ensure_root()
    directory.mkdir(parents=True, exist_ok=True)
    with EntryLock(directory / ".lock"):
        existing = history(store, host)
        if existing and (existing[-1].store_path, existing[-1].profile_hash) == (
            entry.path_name,
            profile_hash,
        ):
            return existing[-1]
        generation = Generation(
            host=host,
            number=existing[-1].number + 1 if existing else 1,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
            store_path=entry.path_name,
            profile_hash=profile_hash,
        )
        _write(directory / f"generation-{generation.number}.json", generation)
        return generation


def set_verdict(
    store: Store, host: str, number: int, verdict: Mapping[str, Any], verdict_entry: Entry | None = None
) -> Generation:
    """Attach a test verdict (JSON data) to a generation; verdict_entry is kept alive with it by gc."""
    directory = _host_dir(store, host)
    path = directory / f"generation-{number}.json"
    if not directory.is_dir():
        raise UsageError(f"host {host} has no generations", "build it first")
    # Round-trip through canonical JSON: checks the data and turns any mapping into a dict.
    plain = json.loads(canonical_json(verdict))
    with EntryLock(directory / ".lock"):
        if not path.is_file():
            raise UsageError(f"host {host} has no generation {number}", "see `imagegen history` for the numbers")
        data = json.loads(path.read_text())
        data["verdict"] = plain
        data["verdict_path"] = verdict_entry.path_name if verdict_entry is not None else None
        generation = Generation(**data)
        _write(path, generation)
        return generation
