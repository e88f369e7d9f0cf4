"""diff_packages: packages added, removed, upgraded and downgraded between two image manifests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.errors import UsageError


@dataclass(frozen=True)
class PackageChange:
    name: str
    old: str | None  # None: not in the first manifest
    new: str | None  # None: not in the second manifest


@dataclass(frozen=True)
class PackageDiff:
    added: tuple[PackageChange, ...]
    removed: tuple[PackageChange, ...]
    upgraded: tuple[PackageChange, ...]
    downgraded: tuple[PackageChange, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.upgraded or self.downgraded)

    def __str__(self) -> str:
        lines = [f"+ {c.name} {c.new}" for c in self.added]
        lines += [f"- {c.name} {c.old}" for c in self.removed]
        lines += [f"  {c.name}: {c.old} -> {c.new}" for c in self.upgraded]
        lines += [f"  {c.name}: {c.old} -> {c.new} (downgrade)" for c in self.downgraded]
        return "\n".join(lines)


def load_packages(manifest: Mapping[str, Any] | Path) -> dict[str, str]:
    """{package: version} from a mkosi JSON manifest or a plain {"packages": {name: version}}.

    mkosi writes {"packages": [{"type", "name", "version", "architecture", ...}, ...]}; a name
    present for two architectures is keyed as name:architecture.
    """
    source = str(manifest) if isinstance(manifest, Path) else "manifest"
    data = json.loads(manifest.read_text()) if isinstance(manifest, Path) else manifest
    packages = data.get("packages") if isinstance(data, Mapping) else None
    if isinstance(packages, Mapping):
        return {str(name): str(version) for name, version in packages.items()}
    if not isinstance(packages, list):
        raise UsageError(f"{source}: no 'packages' list or mapping", "pass a manifest written by mkosi (json)")
    rows = []
    for index, package in enumerate(packages):
        if not isinstance(package, Mapping) or "name" not in package or "version" not in package:
            raise UsageError(f"{source}: packages[{index}] has no name and version", "pass a mkosi manifest")
        rows.append((str(package["name"]), str(package.get("architecture") or ""), str(package["version"])))
    counts: dict[str, int] = {}
    for name, _, _ in rows:
        counts[name] = counts.get(name, 0) + 1
    return {(f"{name}:{arch}" if counts[name] > 1 and arch else name): version for name, arch, version in rows}


def diff_packages(manifest_a: Mapping[str, Any] | Path, manifest_b: Mapping[str, Any] | Path) -> PackageDiff:
    """Compare the package sets of two manifests (parsed JSON or a path to the JSON file).

    Versions are ordered by Debian's rules (epoch, upstream, revision, '~' before anything).
    """
    a, b = load_packages(manifest_a), load_packages(manifest_b)
    added = tuple(PackageChange(n, None, b[n]) for n in sorted(b.keys() - a.keys()))
    removed = tuple(PackageChange(n, a[n], None) for n in sorted(a.keys() - b.keys()))
    upgraded, downgraded = [], []
    for name in sorted(a.keys() & b.keys()):
        order = compare_versions(a[name], b[name])
        if order < 0:
            upgraded.append(PackageChange(name, a[name], b[name]))
        elif order > 0:
            downgraded.append(PackageChange(name, a[name], b[name]))
        elif a[name] != b[name]:
            # Equal by Debian's rules but spelled differently (e.g. "1.0" and "1.0-0").
            upgraded.append(PackageChange(name, a[name], b[name]))
    return PackageDiff(added, removed, tuple(upgraded), tuple(downgraded))


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as Debian version a sorts before, with or after b."""
    epoch_a, upstream_a, revision_a = _split(a)
    epoch_b, upstream_b, revision_b = _split(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


def _split(version: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in version:
        head, version = version.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    upstream, dash, revision = version.rpartition("-")
    return (epoch, upstream, revision) if dash else (epoch, version, "")


def _weight(text: str, i: int) -> int:
    # Debian's order for non-digit characters: '~' sorts before the end of the string, which
    # sorts before letters, which sort before everything else.
    if i >= len(text) or text[i].isdigit():
        return 0
    c = text[i]
    if c == "~":
        return -1
    if c.isascii() and c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            wa, wb = _weight(a, i), _weight(b, j)
            if wa != wb:
                return wa - wb
            i, j = i + 1, j + 1
        start_i = i
        while i < len(a) and a[i].isdigit():
            i += 1
        start_j = j
        while j < len(b) and b[j].isdigit():
            j += 1
        number_a = int(a[start_i:i] or "0")
        number_b = int(b[start_j:j] or "0")
        if number_a != number_b:
            return -1 if number_a < number_b else 1
    return 0
