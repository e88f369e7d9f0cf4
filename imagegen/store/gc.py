"""Garbage collection: delete entries that no out-link, GC root or recent generation reaches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagegen.errors import UsageError
from imagegen.store.entry import ENTRY_NAME, Entry
from imagegen.store.fsutil import disk_usage, remove_tree
from imagegen.store.generations import history, hosts
from imagegen.store.lock import EntryLock, TreeHold, is_in_use, is_locked
from imagegen.store.roots import live_roots

if TYPE_CHECKING:
    from imagegen.store.store import Store

# The no-op builds' records (stages/unchanged.py): each names the entries it found, by path name.
RECORDS_DIR = "unchanged"


@dataclass(frozen=True)
class GcResult:
    """What gc did (or, with dry_run, would do)."""

    removed: tuple[str, ...]  # entry path names and stale temporaries
    bytes_freed: int
    kept: tuple[str, ...]  # live entries: reachable, or being built right now
    stale_roots: tuple[str, ...]  # GC roots dropped because their out-link is gone
    dry_run: bool = False


def reachable(store: Store, keep: int, also: set[str] | None = None) -> set[str]:
    """Path names reachable from the GC roots and the last `keep` generations of every host (and from
    `also`), including everything those entries were built from (their metadata's references)."""
    live, _stale = live_roots(store)
    live |= also or set()
    for host in hosts(store):
        for generation in history(store, host)[-keep:] if keep > 0 else []:
            live.add(generation.store_path)
            if generation.verdict_path:
                live.add(generation.verdict_path)
    closure: set[str] = set()
    pending = list(live)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        if store.is_complete(name):
            pending.extend(Entry(store.root / name).references)
    return closure


def _entry_names(store: Store) -> set[str]:
    names = set()
    for path in store.root.iterdir():
        base = path.name.removesuffix(".json").removesuffix(".lock")
        if ENTRY_NAME.fullmatch(base):
            names.add(base)
    return names


@dataclass
class _Claim:
    """An entry gc has locked for deletion: its build lock, and its directory's exclusive hold."""

    lock: EntryLock | None
    tree: TreeHold | None


def _claim(store: Store, name: str, dry_run: bool) -> _Claim | None:
    """Lock name for deletion without waiting; None if it is being built, replaced or used."""
    lock_path, output = store.root / f"{name}.lock", store.root / name
    store.drop_hold(name)  # this process's own use does not keep it from this process's gc
    if dry_run:
        # A dry run must not even create lock files; it only asks whether someone holds one.
        return None if is_locked(lock_path) or is_in_use(output) else _Claim(None, None)
    lock = EntryLock(lock_path)
    try:
        if not lock.acquire(blocking=False):
            return None
    except UsageError:
        return None  # a planted link where the lock belongs: leave the entry alone
    tree = None
    if output.is_dir() and not output.is_symlink():
        tree = TreeHold.take(output, shared=False, blocking=False)
        if tree is None:
            lock.release()
            return None  # in use: a temporary GC root
    return _Claim(lock, tree)


def collect_garbage(store: Store, keep: int, dry_run: bool = False) -> GcResult:
    """Delete every entry not reachable (see reachable()) and every stale temporary.

    An entry that is being built or replaced (its lock is held) or used by a running process (its
    directory is held shared, see Store.hold) is left alone. The entries to delete are locked first;
    then what is reachable is computed again, counting everything that stays, so a root, generation or
    entry referring to them that appeared meanwhile still keeps them. Each goes metadata first, so a
    concurrent reader never sees a half-deleted entry as complete. Bytes are disk blocks, hard links
    counted once.
    """
    if keep < 0:
        raise UsageError(f"--keep {keep} is negative", "pass the number of generations to keep, 0 or more")
    if not store.root.is_dir():
        return GcResult((), 0, (), (), dry_run)
    _live, stale_roots = live_roots(store)
    if not dry_run:
        for root in stale_roots:
            root.unlink(missing_ok=True)
    live = reachable(store, keep)
    temporaries = store.clean_stale(dry_run=dry_run)
    removed: list[str] = list(temporaries)
    freed = sum(temporaries.values())
    kept: set[str] = set()
    claims: dict[str, _Claim] = {}
    names = _entry_names(store)
    for name in sorted(names):
        if name in live:
            kept.add(name)
        elif (claim := _claim(store, name, dry_run)) is None:
            kept.add(name)
        else:
            claims[name] = claim
    # Re-check at commit: what stays (or appeared since the first look) keeps what it refers to.
    staying = {n for n in _entry_names(store) if n not in claims}
    still_live = reachable(store, keep, also=staying)
    try:
        for name in sorted(claims):
            if name in still_live:
                kept.add(name)
                continue
            output, meta = store.root / name, store.root / f"{name}.json"
            had_entry = output.exists() or meta.exists()
            size = disk_usage(output) + disk_usage(meta)
            if not dry_run:
                meta.unlink(missing_ok=True)
                remove_tree(output)
            if had_entry:
                removed.append(name)
                freed += size
    finally:
        for name, claim in claims.items():
            if claim.tree is not None:
                claim.tree.release()
            if claim.lock is not None:
                claim.lock.release(unlink=name not in kept)
    for record, size in _stale_records(store, dry_run).items():
        removed.append(record)
        freed += size
    return GcResult(tuple(removed), freed, tuple(sorted(kept)), tuple(r.name for r in stale_roots), dry_run)


def _stale_records(store: Store, dry_run: bool) -> dict[str, int]:
    """Remove the no-op records that name an entry the store no longer holds: no build can use them
    again (a build checks the entries first), and without this they would pile up for ever. The record's
    format is stages/unchanged.py's; gc needs only that its string values that look like entry names
    are what it names. A record being written is a temporary there, never a `*.json`, so it is left."""
    directory = store.root / RECORDS_DIR
    if directory.is_symlink() or not directory.is_dir():
        return {}
    stale: dict[str, int] = {}
    for path in sorted(directory.glob("*.json")):
        if path.is_symlink() or not path.is_file():
            continue  # not one of ours
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None  # unreadable: a build ignores it, so it is of no use to keep either
        named = [v for v in data.values() if isinstance(v, str) and ENTRY_NAME.fullmatch(v)] \
            if isinstance(data, dict) else []
        if data is not None and named and all(store.is_complete(n) for n in named):
            continue
        size = disk_usage(path)
        if not dry_run:
            path.unlink(missing_ok=True)
        stale[f"{RECORDS_DIR}/{path.name}"] = size
    return stale
