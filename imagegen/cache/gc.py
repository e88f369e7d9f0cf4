"""`imagegen cache gc`: dropping old entries from a directory cache (file://).

An HTTP cache is its server's to clean. In a directory, an entry whose metadata is older than
keep_days goes (metadata first, so it stops being present before its archive goes), then every
archive no remaining metadata names and that is itself older than keep_days — a younger one may be
a push in progress whose metadata has not landed yet. Nothing is removed from a directory without
an imagegen-cache-info file: it is not a cache imagegen made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from imagegen.cache.entryinfo import INFO_FILE, SUFFIX, EntryInfo, InfoError
from imagegen.cache.transport import DirectoryTransport, transport_for
from imagegen.errors import UsageError


@dataclass(frozen=True)
class CacheGcResult:
    removed: tuple[str, ...]  # file names relative to the cache
    bytes_freed: int
    kept: int  # entries kept


def collect_cache(url: str, keep_days: float, *, dry_run: bool = False, now: float | None = None) -> CacheGcResult:
    if keep_days < 0:
        raise UsageError(f"--keep-days {keep_days} is negative", "pass the number of days to keep, 0 or more")
    transport = transport_for(url)
    if not isinstance(transport, DirectoryTransport):
        raise UsageError(f"{url}: only a directory cache (file://) can be collected by imagegen",
                         "clean an HTTP cache on its server (e.g. by file age)")
    root = transport.root
    if not (root / INFO_FILE).is_file():
        raise UsageError(f"{url}: no {INFO_FILE} there, so it is not a cache imagegen wrote",
                         "pass the URL that imagegen push --to was given")
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    removed: list[str] = []
    freed = 0
    named: set[str] = set()
    kept = 0
    for path in sorted(root.glob(f"*{SUFFIX}")):
        if path.stat().st_mtime < cutoff:
            freed += _remove(path, dry_run)
            removed.append(path.name)
            continue
        kept += 1
        try:
            named.add(EntryInfo.parse(path.read_text()).url)
        except (InfoError, UnicodeDecodeError):
            continue
    for path in sorted((root / "archive").glob("*")) if (root / "archive").is_dir() else []:
        rel = f"archive/{path.name}"
        if rel not in named and path.stat().st_mtime < cutoff:
            freed += _remove(path, dry_run)
            removed.append(rel)
    return CacheGcResult(tuple(removed), freed, kept)


def _remove(path: Path, dry_run: bool) -> int:
    size = path.stat().st_size
    if not dry_run:
        path.unlink(missing_ok=True)
    return size
