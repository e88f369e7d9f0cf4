"""Moving a built file into a store on another file system: copied sparse, synced, renamed, source gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagegen.fsmove import move_file

MIB = 1 << 20


def sparse_image(path: Path) -> bytes:
    """64 MiB, of which two 1 MiB extents hold data (like a raw disk image: a partition table, a file system)."""
    head, tail = os.urandom(MIB), os.urandom(MIB)
    with path.open("wb") as f:
        f.write(head)
        f.seek(40 * MIB)
        f.write(tail)
        f.truncate(64 * MIB)
    path.chmod(0o640)
    return head + b"\0" * (39 * MIB) + tail + b"\0" * (23 * MIB)


def test_move_within_a_file_system_is_a_rename(tmp_path: Path) -> None:
    source, dest = tmp_path / "image.raw", tmp_path / "entry-image.raw"
    sparse_image(source)
    inode = source.stat().st_ino
    move_file(source, dest)
    assert dest.stat().st_ino == inode and not source.exists()


def test_move_across_file_systems_copies_sparse_and_removes_the_source(tmp_path: Path, tmpfs: Path) -> None:
    source, dest = tmp_path / "image.raw", tmpfs / "image.raw"
    assert source.parent.stat().st_dev != dest.parent.stat().st_dev
    expected = sparse_image(source)
    mtime = source.stat().st_mtime_ns
    dest.write_bytes(b"an older image")  # replaced, as a rename would

    move_file(source, dest)

    assert not source.exists()
    assert dest.read_bytes() == expected
    st = dest.stat()
    assert st.st_mode & 0o777 == 0o640 and st.st_mtime_ns == mtime
    assert st.st_blocks * 512 < 8 * MIB, "the holes were written out as zeros"
    assert sorted(p.name for p in tmpfs.iterdir()) == ["image.raw"], "a temporary file was left behind"


def test_a_failed_copy_leaves_the_destination_and_the_source_as_they_were(tmp_path: Path, tmpfs: Path) -> None:
    source = tmp_path / "image.raw"
    sparse_image(source)
    dest = tmpfs / "missing-dir" / "image.raw"
    with pytest.raises(FileNotFoundError):
        move_file(source, dest)
    assert source.stat().st_size == 64 * MIB and list(tmpfs.iterdir()) == []
