"""Look inside a built disk image without booting it: find a GPT partition, mount it read-only."""

from __future__ import annotations

import contextlib
import struct
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import ImagegenError
from imagegen.run import run

SECTOR = 512


@dataclass(frozen=True)
class Partition:
    label: str
    type_uuid: str
    offset: int
    size: int


def gpt_partitions(image: Path) -> list[Partition]:
    """The partitions of a GPT disk image, read from its primary header (LBA 1)."""
    with image.open("rb") as f:
        f.seek(SECTOR)
        header = f.read(92)
        if header[:8] != b"EFI PART":
            raise ImagegenError(f"{image} has no GPT partition table", hint="was it built with Format=disk?")
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        f.seek(entries_lba * SECTOR)
        table = f.read(count * entry_size)
    partitions = []
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        type_uuid = uuid.UUID(bytes_le=entry[:16])
        if type_uuid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        label = entry[56:128].decode("utf-16-le").rstrip("\0")
        partitions.append(Partition(label, str(type_uuid), first * SECTOR, (last - first + 1) * SECTOR))
    return partitions


def find_partition(image: Path, label: str) -> Partition:
    for p in gpt_partitions(image):
        if p.label == label:
            return p
    raise ImagegenError(f"{image} has no partition labelled {label}")


@contextlib.contextmanager
def mounted_partition(image: Path, label: str) -> Iterator[Path]:
    """Mount one partition of the image read-only through a loop device; always undone."""
    part = find_partition(image, label)
    loop = run([
        "losetup", "--find", "--show", "--read-only",
        "--offset", str(part.offset), "--sizelimit", str(part.size), image,
    ]).stdout.strip()  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="imagegen-inspect-") as mnt:
            run(["mount", "-o", "ro", loop, mnt])
            try:
                yield Path(mnt)
            finally:
                run(["umount", mnt])
    finally:
        run(["losetup", "--detach", loop], check=False)
