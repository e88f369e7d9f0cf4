"""An entry's tree as a zstd-compressed tar archive: the same bytes for the same tree on any machine.

Members come in the store's own walk order (by name at each level) with their normalised modes,
no times, no owners, and hard links as tar links to the first name, so two runners that built the
same entry upload byte-identical archives. Unpacking trusts nothing in the archive: every name is
relative, every parent a directory the archive itself made earlier (never a symlink), a hard link
points at a file it made, and more bytes than the signed size are refused. Runs of zeros are
written as holes, so a raw disk image stays sparse.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

from imagegen.store.hashing import walk_tree

# zstd's default level: fast enough that packing a 1 GiB image is not the slow part of a push, and
# decompression (what every runner pays) is about as fast at any level.
LEVEL = 3
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


class ArchiveError(Exception):
    """The archive is damaged or tries something no imagegen archive does."""


@dataclass(frozen=True)
class Packed:
    file_hash: str  # "sha256:<hex>" of the compressed file
    file_size: int
    size: int  # bytes of the uncompressed tar stream


class _Tally(io.RawIOBase):
    """A writable stream that passes bytes on while counting and hashing them."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.count = 0
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.count += view.nbytes
        self.sha256.update(view)
        if self.out is not None:
            self.out.write(view)
        return view.nbytes


def pack(root: Path, out: BinaryIO) -> Packed:
    """Write root's tree (not root itself) to out as tar in zstd."""
    compressed = _Tally(out)
    compressor = zstandard.ZstdCompressor(level=LEVEL, threads=-1, write_checksum=True)
    writer = compressor.stream_writer(compressed, closefd=False)  # type: ignore[arg-type]
    plain = _Tally(writer)  # type: ignore[arg-type]
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for node, full in walk_tree(root):
            info = tarfile.TarInfo(node.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = node.mode & 0o7777
            if node.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif node.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, node.target, 0o777
                tar.addfile(info)
            elif node.link:
                info.type, info.linkname = tarfile.LNKTYPE, node.link
                tar.addfile(info)
            else:
                with full.open("rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)
    writer.close()
    return Packed(f"sha256:{compressed.sha256.hexdigest()}", compressed.count, plain.count)


class _Limited(io.RawIOBase):
    """A readable stream that refuses to yield more than `limit` bytes."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(f"it unpacks to more than the {self.limit} bytes its metadata states")
        buffer[: len(data)] = data
        return len(data)


def unpack(compressed: BinaryIO, dest: Path, size: int) -> int:
    """Unpack a zstd tar stream into the empty directory dest; return the tar bytes read.

    size is the signed uncompressed size: a stream that would exceed it is refused."""
    reader = zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True)
    plain = _Limited(reader, size)  # type: ignore[arg-type]
    dirs: set[str] = {""}
    files: set[str] = set()
    seen: set[str] = set()
    dir_modes: list[tuple[Path, int]] = []
    try:
        with tarfile.open(fileobj=io.BufferedReader(plain, _CHUNK), mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = _check_name(member.name, seen, dirs)
                target = dest / name
                mode = member.mode & 0o7777
                if member.isdir():
                    os.mkdir(target, 0o700)
                    dirs.add(name)
                    dir_modes.append((target, mode | 0o700))
                elif member.issym():
                    os.symlink(member.linkname, target)
                elif member.islnk():
                    if member.linkname not in files:
                        raise ArchiveError(f"{name} is a hard link to {member.linkname}, not an earlier file")
                    os.link(dest / member.linkname, target)
                elif member.isreg():
                    source = tar.extractfile(member)
                    assert source is not None
                    _write_sparse(source, target, member.size)
                    os.chmod(target, mode | 0o200)
                    files.add(name)
                else:
                    raise ArchiveError(f"{name} is a device, FIFO or other special file")
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as e:
        raise ArchiveError(f"the archive is damaged ({e})") from e
    for path, mode in reversed(dir_modes):
        os.chmod(path, mode)
    return plain.count


def _check_name(name: str, seen: set[str], dirs: set[str]) -> str:
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ArchiveError(f"member {name!r} is not a plain relative path")
    if name in seen:
        raise ArchiveError(f"member {name!r} comes twice")
    seen.add(name)
    if "/".join(parts[:-1]) not in dirs:
        raise ArchiveError(f"member {name!r} is not inside a directory the archive made before it")
    return name


def _write_sparse(source: IO[bytes], target: Path, size: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        written = 0
        while chunk := source.read(_CHUNK):
            if len(chunk) == _CHUNK and chunk == _ZEROS:
                f.seek(len(chunk), os.SEEK_CUR)
            else:
                f.write(chunk)
            written += len(chunk)
        if written != size:
            raise ArchiveError(f"{target.name}: {written} of {size} bytes")
        f.truncate(size)
