"""Canonical JSON, the store's base32 digests, and content digests of file trees.

Everything here is a pure function of content: no absolute paths, no times, no owners, no
dictionary order, so the same inputs give the same digest in any process on any machine.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import math
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from imagegen.errors import UsageError

# Nix's base32 alphabet: digits and lower-case letters without e, o, t, u, so that no digest
# spells a word or confuses 0 with o.
BASE32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"

# 160 bits, like a Nix store path hash: 32 base32 characters.
DIGEST_BYTES = 20

_CHUNK = 1 << 20


def nix_base32(data: bytes) -> str:
    """Encode bytes the way Nix prints store hashes: little-endian, most significant digit first."""
    number = int.from_bytes(data, "little")
    length = math.ceil(len(data) * 8 / 5)
    return "".join(BASE32_ALPHABET[(number >> (5 * i)) & 0x1F] for i in range(length - 1, -1, -1))


def short_digest(data: bytes) -> str:
    """The 32-character store digest: sha256 of data, truncated to 160 bits, in Nix base32."""
    return nix_base32(hashlib.sha256(data).digest()[:DIGEST_BYTES])


def keyed_digest(key: bytes, value: Any) -> str:
    """HMAC-SHA256 of a value's canonical JSON under key: the only form in which secret material may
    reach a hash or a record others can read (a plain sha256 of a passphrase is one guess per hash)."""
    return "hmac-sha256:" + hmac.new(key, canonical_json(value).encode(), hashlib.sha256).hexdigest()


def canonical_json(value: Any) -> str:
    """Serialise JSON-able data one way only: sorted keys, no whitespace, no NaN.

    Tuples are arrays; mapping keys must be strings (int keys would sort differently once turned
    into strings, so they are refused rather than silently converted).
    """
    check_json(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_json(value: Any, where: str) -> None:
    """Raise UsageError naming `where` if value is not plain JSON data."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{where}: {value} cannot be hashed", "use a finite number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"{where}: key {key!r} is not a string", "use string keys")
            check_json(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]")
        return
    raise UsageError(
        f"{where}: a {type(value).__name__} cannot be hashed",
        "pass strings, numbers, booleans, lists, mappings, or a FileTree for files",
    )


def normalised_mode(st_mode: int) -> int:
    """The permission bits that are part of a file's content.

    Read, execute and set-id bits are kept exactly (0600 vs 0644 vs 0640 matter: secrets);
    write bits are not (a checkout under umask 002 gives 0664, the read-only store gives 0444),
    so every write bit collapses to owner-write.
    """
    return (stat.S_IMODE(st_mode) & ~0o222) | 0o200


def is_private_mode(st_mode: int) -> bool:
    """True for a file nobody but its owner may read (a 0600/0400-type secret)."""
    return not st_mode & (stat.S_IRGRP | stat.S_IROTH)


def file_sha256(path: Path) -> str:
    """The sha256 of a regular file, read in chunks. Anything else raises OSError: a FIFO would block
    the open for ever and a device such as /dev/zero never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        digest = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TreeNode:
    """One item of a tree as the digest sees it; `path` is relative and uses '/'."""

    path: str
    kind: str  # "dir", "file" or "symlink"
    mode: int  # normalised_mode(); 0 for symlinks
    target: str = ""  # symlink target, verbatim
    link: str = ""  # for the second and later names of a hard-linked file: the first name

    def record(self, sha256: str = "", size: int = 0) -> list[Any]:
        if self.kind == "dir":
            return [self.path, "d", self.mode]
        if self.kind == "symlink":
            return [self.path, "l", self.target]
        if self.link:
            return [self.path, "h", self.link]
        return [self.path, "f", self.mode, sha256, size]


def walk_tree(root: Path, exclude: Sequence[str] = ()) -> Iterator[tuple[TreeNode, Path]]:
    """Yield (node, absolute path) for everything under root, in a fixed order, never following links.

    The order is by name at each level, so the walk (and hard-link grouping, which names the
    first path of a group) is the same wherever the tree lives. `exclude` holds fnmatch
    patterns matched against the relative path; an excluded directory is not entered.
    """
    seen_inodes: dict[tuple[int, int], str] = {}

    def visit(directory: Path, prefix: str) -> Iterator[tuple[TreeNode, Path]]:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            rel = prefix + item.name
            if any(fnmatchcase(rel, pattern) for pattern in exclude):
                continue
            st = item.stat(follow_symlinks=False)
            full = Path(item.path)
            if stat.S_ISLNK(st.st_mode):
                yield TreeNode(rel, "symlink", 0, target=os.readlink(full)), full
            elif stat.S_ISDIR(st.st_mode):
                yield TreeNode(rel, "dir", normalised_mode(st.st_mode)), full
                yield from visit(full, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                first = ""
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    first = seen_inodes.setdefault(key, rel)
                    if first == rel:
                        first = ""
                yield TreeNode(rel, "file", normalised_mode(st.st_mode), link=first), full
            else:
                raise UsageError(
                    f"{full}: only files, directories and symbolic links can be hashed",
                    "remove the device, socket or FIFO from the tree",
                )

    yield from visit(root, "")


def tree_digest(path: Path, exclude: Sequence[str] = ()) -> tuple[str, int]:
    """Content digest of a file or directory tree, and how many items it holds.

    Covers each item's relative path, type, normalised mode, file contents, symlink targets and
    which names are hard links of one another; not times, owners, or where the tree lives.
    Returns ("sha256:<hex>", count).
    """
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{path}: input does not exist", "create it or fix the path")
    st = path.lstat()
    if stat.S_ISREG(st.st_mode):
        records: list[Any] = [["", "f", normalised_mode(st.st_mode), file_sha256(path), st.st_size]]
    elif stat.S_ISDIR(st.st_mode):
        records = []
        for node, full in walk_tree(path, exclude):
            if node.kind == "file" and not node.link:
                records.append(node.record(file_sha256(full), full.stat().st_size))
            else:
                records.append(node.record())
    elif stat.S_ISLNK(st.st_mode):
        records = [["", "l", os.readlink(path)]]
    else:
        raise UsageError(f"{path}: not a file, directory or symbolic link", "point the input at a tree")
    digest = hashlib.sha256(canonical_json(records).encode()).hexdigest()
    return f"sha256:{digest}", len(records)
