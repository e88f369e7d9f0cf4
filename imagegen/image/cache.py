"""Whether mkosi's incremental cache may be reused for a build, decided before mkosi runs.

mkosi keys its cache on the package list and repositories only, and never on ExtraTrees: a change of the
rendered overlay alone must reuse the cache, a change of the packages, the mkosi configuration, the
repositories or the mkosi version must not. imagegen records its own key beside mkosi's cache.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import UsageError

KEY_FILE = "imagegen-cache-key.json"

# Scripts mkosi runs after it has saved (or restored) its cached tree, named by what they are
# (e.g. `50-lab-debian-initrd.finalize.chroot`): editing one changes the image, never what the cache holds.
# Prepare scripts run before the cache point, so they stay in the key.
AFTER_CACHE_SCRIPTS = frozenset({"build", "postinst", "finalize", "postoutput", "clean"})


def _after_cache(path: Path) -> bool:
    suffixes = [s.lstrip(".") for s in path.suffixes]
    if suffixes and suffixes[-1] == "chroot":
        suffixes.pop()
    return bool(suffixes) and suffixes[-1] in AFTER_CACHE_SCRIPTS


@dataclass(frozen=True)
class CacheDecision:
    reuse: bool
    reason: str


def config_key(
    *,
    conf_dir: Path,
    distribution: str,
    release: str,
    variant: str,
    mkosi_version: str,
    repositories: str,
    packages: tuple[str, ...] = (),
) -> dict[str, str]:
    """Everything that changes what mkosi installs, as a small JSON-able dict of digests; `packages` are
    the profile's (`!NAME` for one purged after installation)."""
    conf = hashlib.sha256()
    for path in sorted(conf_dir.rglob("*")):
        if path.is_file() and not _after_cache(path):
            conf.update(path.relative_to(conf_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return {
        "distribution": distribution,
        "release": release,
        "variant": variant,
        "mkosi_version": mkosi_version,
        "mkosi_conf": conf.hexdigest(),
        "repositories": hashlib.sha256(repositories.encode()).hexdigest(),
        "packages": hashlib.sha256("\n".join(packages).encode()).hexdigest(),
    }


def key_hash(key: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def image_cache_entries(cache_dir: Path, distribution: str) -> list[Path]:
    """mkosi's cached trees of the image (and its default initrd), not of the tools tree."""
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if p.name.startswith(f"{distribution}~"))


def decide(cache_dir: Path, distribution: str, key: dict[str, str]) -> CacheDecision:
    entries = image_cache_entries(cache_dir, distribution)
    if not any(p.name.endswith(".cache") for p in entries):
        return CacheDecision(False, "no cached image yet")
    key_file = cache_dir / KEY_FILE
    if not key_file.is_file():
        return CacheDecision(False, "cached image has no imagegen key")
    old = json.loads(key_file.read_text())
    changed = sorted(k for k in key.keys() | old.keys() if key.get(k) != old.get(k))
    if changed:
        return CacheDecision(False, f"changed since the cached image: {', '.join(changed)}")
    return CacheDecision(True, "packages, mkosi configuration and repositories unchanged")


def drop_image_cache(cache_dir: Path, distribution: str) -> None:
    """Remove the cached image trees; the tools tree stays, it does not depend on the image."""
    for path in image_cache_entries(cache_dir, distribution):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (cache_dir / KEY_FILE).unlink(missing_ok=True)


def record_key(cache_dir: Path, key: dict[str, str]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A fresh name (O_EXCL): a link planted at a fixed temporary name would be followed and written through.
    fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(key, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, cache_dir / KEY_FILE)


@contextlib.contextmanager
def locked(cache_dir: Path, waiting: Callable[[str], None]) -> Iterator[int]:
    """Hold the cache for one build: mkosi's output and cached trees there are not safe to share.
    Yields the lock's file descriptor, which a process that must hold the lock too can inherit."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / ".lock"
    try:
        # Never followed and never truncated: imagegen builds as root, and a link planted here would
        # otherwise make it empty whatever file the link names.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link, not the cache lock imagegen made",
                             "remove it") from None
        raise
    with os.fdopen(fd, "r+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"waiting for another build that uses {cache_dir}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield f.fileno()
