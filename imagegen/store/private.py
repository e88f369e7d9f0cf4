"""What keeps a store private: a root only its owner can enter, and the store's own key.

A root imagegen creates is mode 0700 and carries a marker file; only a root with that marker (or one an
older imagegen made, holding nothing but store items) is ever tightened, so a directory the user made
for other things keeps its mode. The key (`.key`, 32 random bytes, mode 0600) keys the digests of
secret material in the store's own records (generations), so a reader of those records cannot test
guesses of a passphrase offline.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

from imagegen.errors import UsageError

MARKER = ".imagegen-store"
KEY = ".key"
KEY_BYTES = 32
_MARKER_TEXT = "imagegen store: created by imagegen; entries are named <hash>-<name>\n"
# What a store root holds: entries and their metadata and locks, temporaries, gcroots/, profiles/.
_ENTRY_META = re.compile(r"[0-9a-z]{32}-[A-Za-z0-9+._?=-]+\.json")
_STORE_ITEM = re.compile(r"[0-9a-z]{32}-[A-Za-z0-9+._?=-]+|\.tmp-.*|gcroots|profiles")


def ensure_root(root: Path) -> None:
    """Create the store root (mode 0700, with its marker), or tighten one imagegen made, and its key."""
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(root, 0o700)
        ours = True
    except FileExistsError:
        ours = (root / MARKER).is_file() or _made_by_older_imagegen(root)
    if ours:
        if stat.S_IMODE(root.stat().st_mode) != 0o700:
            os.chmod(root, 0o700)
        if not (root / MARKER).exists():
            _write_new(root / MARKER, _MARKER_TEXT.encode(), 0o644)
    store_key(root, create=True)


def _made_by_older_imagegen(root: Path) -> bool:
    """Whether root holds an entry's metadata and nothing but store items (a directory of one's own
    that happens to hold only `profiles/` is not a store)."""
    names = [p.name for p in root.iterdir()]
    has_entry = any(_ENTRY_META.fullmatch(n) for n in names)
    return has_entry and all(_STORE_ITEM.fullmatch(n) for n in names)


def store_key(root: Path, *, create: bool = False) -> bytes | None:
    """The store's key; None if it has none yet and create is false.

    The key file must be a regular file owned by this user that no one else may read: anything else
    (a link, a world-readable copy) is refused rather than trusted or replaced.
    """
    path = root / KEY
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    try:
        _write_new(path, secrets.token_bytes(KEY_BYTES), 0o600)
    except FileExistsError:
        pass  # another process created it first: theirs is the key
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        # O_NONBLOCK: a FIFO planted here must be refused below, not block the open for ever.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link", "remove it; the store makes a new key") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_uid != os.getuid():
            # Entries are private to their owner too: a store is one user's, never shared.
            raise UsageError(f"{path}: this store belongs to another user (uid {st.st_uid})",
                             "use a store of your own: --store DIR or IMAGEGEN_STORE")
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise UsageError(f"{path}: the store key must be a file of yours with mode 0600",
                             f"chmod 600 {path}, or remove it to make a new key")
        key = f.read()
    if len(key) != KEY_BYTES:
        raise UsageError(f"{path}: the store key is damaged ({len(key)} bytes)", "remove it to make a new key")
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with data and mode, or raise FileExistsError; readers never see it half written."""
    tmp = path.with_name(f"{path.name}.new-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
