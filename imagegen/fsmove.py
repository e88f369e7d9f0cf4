"""Moving a finished file into place, whichever file system the destination is on.

A rename is atomic and costs nothing, but only within one file system. mkosi writes its outputs beside its
cache (the project's .cache/ by default) while the store may be anywhere: `--store /mnt/big`, IMAGEGEN_STORE,
a /tmp on tmpfs. Across file systems the file is copied to a temporary name beside the destination, synced,
and renamed there, so that the destination never holds a partial file; only then does the source go.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_CHUNK = 1 << 20


def move_file(source: Path, dest: Path) -> None:
    """Move the regular file `source` to `dest` (replacing it), atomically at `dest`."""
    try:
        os.rename(source, dest)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    tmp = dest.with_name(f".{dest.name}.moving-{os.getpid()}")
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(src_fd)
            dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(st.st_mode))
            try:
                _copy_sparse(src_fd, dst_fd, st.st_size)
                os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
                os.fsync(dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    source.unlink()


def _copy_sparse(src: int, dst: int, size: int) -> None:
    """Copy the data and leave the holes: a raw disk image is mostly holes, and stays so on the destination."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
            end = os.lseek(src, start, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break  # nothing but a hole up to the end
            if e.errno != errno.EINVAL:
                raise
            start, end = offset, size  # a file system that cannot tell: copy everything
        while start < end:
            chunk = os.pread(src, min(_CHUNK, end - start), start)
            if not chunk:
                raise OSError(errno.EIO, f"the file shrank while being copied (at byte {start})")
            view = memoryview(chunk)
            while view:
                written = os.pwrite(dst, view, start)
                view, start = view[written:], start + written
        offset = end
    os.ftruncate(dst, size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
