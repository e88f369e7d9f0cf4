"""Out-links (`result-<host>`) and the GC roots that keep what they point at alive.

Like Nix's automatic roots: an out-link is a symlink anywhere to a store entry, and the store
keeps, under gcroots/, a symlink to the out-link. Deleting the out-link releases the entry; the
dangling root is cleared by the next gc.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from imagegen.errors import UsageError
from imagegen.store.entry import ENTRY_NAME, Entry
from imagegen.store.hashing import short_digest

if TYPE_CHECKING:
    from imagegen.store.store import Store

GCROOTS = "gcroots"


def add_out_link(store: Store, link: Path, entry: Entry) -> Path:
    """Point the symlink `link` at entry (replacing an older link there) and register it as a GC root.

    Returns the absolute link path. A non-link file or directory at `link` is never replaced, nor a
    link imagegen did not make: only one that names a store entry (of any store, or one collected since).
    """
    link = Path(os.path.abspath(link))
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        raise UsageError(f"{link} exists and is not a symbolic link", "remove it or choose another --out-link")
    check_link_replaceable(link)
    if not link.parent.is_dir():
        raise UsageError(f"{link.parent} is not a directory", "create it or choose another --out-link")
    _replace_symlink(link, entry.path)
    store.ensure_root()
    roots = gcroots_dir(store)
    roots.mkdir(exist_ok=True)
    # Named by the link's absolute path, so one out-link has one root however often it moves.
    readable = re.sub(r"[^A-Za-z0-9+._=-]", "_", link.name)
    _replace_symlink(roots / f"{short_digest(str(link).encode())}-{readable}", link)
    return link


def check_link_replaceable(link: Path) -> None:
    """Refuse a symbolic link at `link` that imagegen did not make: one that names no store entry (of any
    store, or one collected since). Callers check before they build, so a refusal costs nothing."""
    if link.is_symlink() and not ENTRY_NAME.fullmatch(Path(os.readlink(link)).name):
        raise UsageError(f"{link} is a symbolic link to {os.readlink(link)}, not to a store entry",
                         "remove it or choose another --out-link")


def _replace_symlink(path: Path, target: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def gcroots_dir(store: Store) -> Path:
    """store/gcroots, refused when it is a symbolic link: gc removes stale roots in it, and must never
    remove files in a directory a planted link names."""
    roots = store.root / GCROOTS
    if roots.is_symlink():
        raise UsageError(f"{roots} is a symbolic link, not the directory of GC roots imagegen made",
                         "remove the link; the next out-link makes the directory again")
    return roots


def live_roots(store: Store) -> tuple[set[str], list[Path]]:
    """Path names the GC roots reach, and the roots whose out-link is gone or points elsewhere.

    Only symbolic links are roots: anything else in gcroots/ is not imagegen's, and is left alone."""
    live: set[str] = set()
    stale: list[Path] = []
    roots = gcroots_dir(store)
    if not roots.is_dir():
        return live, stale
    real_root = Path(os.path.realpath(store.root))
    for root in sorted(roots.iterdir()):
        if not root.is_symlink():
            continue
        target = Path(os.path.realpath(root))
        if target.parent == real_root and ENTRY_NAME.fullmatch(target.name):
            live.add(target.name)
        else:
            stale.append(root)
    return live, stale
