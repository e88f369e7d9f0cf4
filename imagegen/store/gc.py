"""Garbage collection: delete entries that no out-link, GC root or recent generation reaches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagegen.errors import UsageError
from imagegen.store.entry import ENTRY_NAME, Entry
from imagegen.store.fsutil import disk_usage, remove_tree
from imagegen.store.generations import history, hosts
from imagegen.store.lock import EntryLock, is_locked
from imagegen.store.roots import live_roots

if TYPE_CHECKING:
    from imagegen.store.store import Store


@dataclass(frozen=True)
class GcResult:
    """What gc did (or, with dry_run, would do)."""

    removed: tuple[str, ...]  # entry path names and stale temporaries
    bytes_freed: int
    kept: tuple[str, ...]  # live entries: reachable, or being built right now
    stale_roots: tuple[str, ...]  # GC roots dropped because their out-link is gone
    dry_run: bool = False


def reachable(store: Store, keep: int) -> set[str]:
    """Path names reachable from the GC roots and the last `keep` generations of every host,
    including everything those entries were built from (their metadata's references)."""
    live, _stale = live_roots(store)
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


def collect_garbage(store: Store, keep: int, dry_run: bool = False) -> GcResult:
    """Delete every entry not reachable (see reachable()) and every stale temporary.

    An entry whose lock is held (being built or replaced) is left alone. Each entry goes under
    its own lock, metadata first, so a concurrent reader never sees a half-deleted entry as
    complete. Bytes are disk blocks, hard links counted once.
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
    kept: list[str] = []
    names = set()
    for path in store.root.iterdir():
        base = path.name.removesuffix(".json").removesuffix(".lock")
        if ENTRY_NAME.fullmatch(base):
            names.add(base)
    for name in sorted(names):
        if name in live:
            kept.append(name)
            continue
        output, meta = store.root / name, store.root / f"{name}.json"
        lock = EntryLock(store.root / f"{name}.lock")
        # A dry run must not even create lock files; it only asks whether one is held.
        if is_locked(lock.path) if dry_run else not lock.acquire(blocking=False):
            kept.append(name)
            continue
        try:
            had_entry = output.exists() or meta.exists()
            size = disk_usage(output) + disk_usage(meta)
            if not dry_run:
                meta.unlink(missing_ok=True)
                remove_tree(output)
        finally:
            lock.release(unlink=not dry_run)
        if had_entry:
            removed.append(name)
            freed += size
    return GcResult(tuple(removed), freed, tuple(kept), tuple(r.name for r in stale_roots), dry_run)
