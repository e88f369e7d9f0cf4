"""diff_trees: what changed between two overlay trees, as a unified diff with secrets masked."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from imagegen.store.hashing import TreeNode, is_private_mode, walk_tree

# Files whose whole content is a secret (the DHCPv6 control key, the DUID that identifies the host).
SECRET_FILE_NAMES = frozenset({"dhcp6cctlkey", "dhcp6c_duid"})
# Files that are readable configuration except for some key=value lines.
LINE_SECRET_FILES = ("wpa_supplicant*.conf",)
SECRET_KEY = re.compile(
    r"^(?P<lead>\s*)(?P<key>psk|password|sae_password|private_key_passwd|private_key2_passwd|wep_key[0-3])"
    r"(?P<eq>\s*=\s*)(?P<value>.*)$"
)
MASK = "<secret>"
MASK_CHANGED = "<secret changed>"


@dataclass(frozen=True)
class FileDiff:
    """One path that differs; `text` is ready to print (a unified diff for text files)."""

    path: str
    status: str  # "added", "removed" or "changed"
    text: str


@dataclass(frozen=True)
class TreeDiff:
    files: tuple[FileDiff, ...]

    def __bool__(self) -> bool:
        return bool(self.files)

    def __str__(self) -> str:
        return "\n".join(f.text for f in self.files)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)


@dataclass(frozen=True)
class _Item:
    node: TreeNode
    full: Path
    group: frozenset[str]  # every name of this file's inode in the tree (hard links)


def _index(root: Path) -> dict[str, _Item]:
    nodes = list(walk_tree(root))
    groups: dict[str, set[str]] = {}
    for node, _ in nodes:
        if node.kind == "file":
            groups.setdefault(node.link or node.path, set()).add(node.path)
    index = {}
    for node, full in nodes:
        group = frozenset(groups.get(node.link or node.path, ())) if node.kind == "file" else frozenset()
        index[node.path] = _Item(node, full, group)
    return index


def secret_kind(path: str, mode: int, secret_paths: Iterable[str] = ()) -> str | None:
    """ "lines" (mask secret key=value lines), "whole" (mask the content) or None (not secret)."""
    name = path.rsplit("/", 1)[-1]
    if any(fnmatchcase(name, pattern) for pattern in LINE_SECRET_FILES):
        return "lines"
    if name in SECRET_FILE_NAMES or is_private_mode(mode):
        return "whole"
    if any(fnmatchcase(path, pattern.lstrip("/")) for pattern in secret_paths):
        return "whole"
    return None


def diff_trees(a: Path, b: Path, secret_paths: Iterable[str] = ()) -> TreeDiff:
    """Compare two trees (e.g. the overlays of two generations) file by file.

    Text files give a unified diff (a/<path>, b/<path>), so one changed address is one '-' and
    one '+' line. Secrets never appear: in wpa_supplicant*.conf the psk/password values are
    shown as <secret> or <secret changed>; files named dhcp6cctlkey or dhcp6c_duid, files no
    group or other may read (0600-type), and paths matching `secret_paths` (fnmatch patterns,
    relative to the tree) are reported only as "secret changed"/"secret unchanged".
    Mode changes (read/execute/set-id bits), symlink targets and hard-link groups are shown too.
    """
    secret_paths = tuple(secret_paths)
    left, right = _index(a), _index(b)
    files = []
    for path in sorted(left.keys() | right.keys()):
        change = _diff_item(path, left.get(path), right.get(path), secret_paths)
        if change is not None:
            files.append(change)
    return TreeDiff(tuple(files))


def _diff_item(path: str, old: _Item | None, new: _Item | None, secret_paths: tuple[str, ...]) -> FileDiff | None:
    if old is None or new is None:
        item = new or old
        assert item is not None
        status = "added" if old is None else "removed"
        return FileDiff(path, status, _describe_whole(path, item, status, secret_paths))
    a, b = old.node, new.node
    if a.kind != b.kind:
        return FileDiff(path, "changed", f"{path}: {a.kind} -> {b.kind}")
    notes = []
    if a.kind == "symlink":
        if a.target != b.target:
            notes.append(f"{path}: symlink {a.target} -> {b.target}")
        return FileDiff(path, "changed", "\n".join(notes)) if notes else None
    if a.mode != b.mode:
        notes.append(f"{path}: mode {a.mode:04o} -> {b.mode:04o}")
    if a.kind == "dir":
        return FileDiff(path, "changed", "\n".join(notes)) if notes else None
    if old.group - {path} != new.group - {path}:
        was = ", ".join(sorted(old.group - {path})) or "none"
        now = ", ".join(sorted(new.group - {path})) or "none"
        notes.append(f"{path}: hard links {was} -> {now}")
    before, after = old.full.read_bytes(), new.full.read_bytes()
    kind = secret_kind(path, a.mode, secret_paths) or secret_kind(path, b.mode, secret_paths)
    if kind == "whole":
        if before != after:
            notes.append(f"{path}: secret changed")
        elif notes:
            notes.append(f"{path}: secret unchanged")
    elif before != after:
        text_a, text_b = _text(before), _text(after)
        if text_a is None or text_b is None:
            notes.append(f"{path}: binary files differ")
        else:
            if kind == "lines":
                text_a, text_b = mask_secret_lines(text_a, text_b)
            notes.extend(_unified(path, path, text_a, text_b))
    return FileDiff(path, "changed", "\n".join(notes)) if notes else None


def _describe_whole(path: str, item: _Item, status: str, secret_paths: tuple[str, ...]) -> str:
    node = item.node
    if node.kind == "dir":
        return f"{path}/: directory {status}"
    if node.kind == "symlink":
        return f"{path}: symlink {status} ({node.target})"
    kind = secret_kind(path, node.mode, secret_paths)
    if kind == "whole":
        return f"{path}: secret file {status}"
    text = _text(item.full.read_bytes())
    if text is None:
        return f"{path}: binary file {status}"
    if kind == "lines":
        text = mask_secret_lines(text, text)[0]
    heading = f"{path}: file {status} (mode {node.mode:04o})"
    if status == "added":
        return "\n".join([heading, *_unified("/dev/null", path, "", text)])
    return "\n".join([heading, *_unified(path, "/dev/null", text, "")])


def _text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _unified(path_a: str, path_b: str, text_a: str, text_b: str) -> list[str]:
    name_a = path_a if path_a == "/dev/null" else f"a/{path_a}"
    name_b = path_b if path_b == "/dev/null" else f"b/{path_b}"
    return list(difflib.unified_diff(text_a.splitlines(), text_b.splitlines(), name_a, name_b, lineterm=""))


def mask_secret_lines(text_a: str, text_b: str) -> tuple[str, str]:
    """Replace secret values of key=value lines: <secret> in both texts, or <secret changed> in
    text_b where the n-th value of that key differs from the n-th in text_a."""
    values_a: dict[str, list[str]] = {}

    def mask_a(line: str) -> str:
        match = SECRET_KEY.match(line)
        if not match:
            return line
        values_a.setdefault(match["key"], []).append(match["value"])
        return f"{match['lead']}{match['key']}{match['eq']}{MASK}"

    masked_a = [mask_a(line) for line in text_a.splitlines()]
    seen: dict[str, int] = {}

    def mask_b(line: str) -> str:
        match = SECRET_KEY.match(line)
        if not match:
            return line
        n = seen.get(match["key"], 0)
        seen[match["key"]] = n + 1
        earlier = values_a.get(match["key"], [])
        changed = n < len(earlier) and earlier[n] != match["value"]
        return f"{match['lead']}{match['key']}{match['eq']}{MASK_CHANGED if changed else MASK}"

    masked_b = [mask_b(line) for line in text_b.splitlines()]
    return "\n".join(masked_a) + "\n", "\n".join(masked_b) + "\n"
