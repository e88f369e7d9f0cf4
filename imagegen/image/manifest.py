"""The build manifest: what went into an image and where its files are, as JSON beside the image."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
# The files of a built image, by kind, as they are named in its output directory (and store entry).
OUTPUTS = {"image": "image.raw", "kernel": "image.vmlinuz", "initrd": "image.initrd"}


def tree_hash(root: Path) -> str:
    """A digest of a directory tree: names, modes, file contents, link targets and which names share an inode.

    Two overlays with the same digest produce the same files in the image, hard links included.
    """
    digest = hashlib.sha256()
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            digest.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                first = inodes.setdefault((st.st_dev, st.st_ino), rel)
                if first != rel:
                    digest.update(f"hardlink:{first}".encode())
                else:
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
            digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class BuildManifest:
    distribution: str
    release: str
    variant: str
    mkosi_version: str
    profile_hash: str | None
    overlay_hash: str
    config_hash: str
    cache_reused: bool
    cache_reason: str
    duration_seconds: float
    outputs: dict[str, str]
    kernel_command_line: str
    packages: list[Package] = field(default_factory=list)
    # [step, seconds] for mkosi's steps of the first two levels, in order.
    stages: list[list[str | float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> BuildManifest:
        data: dict[str, Any] = json.loads(path.read_text())
        data["packages"] = [Package(**p) for p in data.get("packages", [])]
        return cls(**data)


def packages_from_mkosi_manifest(path: Path) -> list[Package]:
    """The installed packages recorded by mkosi (ManifestFormat=json)."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return sorted(
        (
            Package(name=p["name"], version=p.get("version", ""), architecture=p.get("architecture", ""))
            for p in data.get("packages", [])
        ),
        key=lambda p: p.name,
    )
