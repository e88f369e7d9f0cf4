"""Write a command's outputs without destroying anything imagegen did not write.

A path a person names (--out, --artifacts, --junit, --json) may already hold something. imagegen replaces
it only when it is provably its own: a directory that carries the marker file MARKER (or is empty), a
file whose content is one of imagegen's reports, or nothing at all. Everything else is refused with exit 2.

Replacement is atomic: a file is written beside its destination and renamed over it; a directory tree
is built beside its destination and exchanged with it by renameat2(RENAME_EXCHANGE), so the path always
names a whole tree, the old one or the new one.

For commands: replace_tree (a directory), claim_tree/release_tree (a directory filled bit by bit, such
as a test run's evidence), safe_replace (a file), and check_tree/check_file/check_link to refuse a path
before any work is done.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from imagegen import __version__
from imagegen.errors import UsageError

MARKER = ".imagegen-tree"
MARKER_LIMIT = 4096

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def marker_text(kind: str) -> str:
    """The marker's content: which command's tree this is. No pid or time, so a tree renders the same."""
    return json.dumps({"written_by": "imagegen", "kind": kind, "version": __version__}) + "\n"


def read_marker(tree: Path) -> dict[str, Any] | None:
    """The marker of tree, or None when tree has none that imagegen wrote (a link is not a marker)."""
    try:
        fd = os.open(tree / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MARKER_LIMIT)
    finally:
        os.close(fd)
    try:
        marker = json.loads(data)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == "imagegen" else None


def _refuse(option: str, path: Path, what: str) -> UsageError:
    return UsageError(f"{option} {path}: {what}; imagegen replaces only what it wrote",
                      f"choose an empty or new directory, or remove {path} yourself")


def check_tree(path: Path, option: str) -> None:
    """Raise UsageError unless path is missing, an empty directory or a tree with imagegen's marker."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise _refuse(option, path, "a parent of it is not a directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(option, path, "is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(option, path, "is a file, not a directory")
    if read_marker(path) is None and any(os.scandir(path)):
        raise _refuse(option, path, f"is a directory with files that imagegen did not write (no {MARKER})")


def claim_tree(path: Path, kind: str, option: str) -> bool:
    """Make path a directory of imagegen's (created if missing, marked if empty); refuse anything else.

    Returns whether this call created or marked it, i.e. whether release_tree may remove it again.
    """
    check_tree(path, option)
    if read_marker(path) is not None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    _write_marker(path, kind)
    return True


def release_tree(path: Path) -> None:
    """Remove a tree claim_tree made when nothing but its marker is in it (a run that kept no evidence)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    if names == [MARKER] and read_marker(path) is not None:
        os.unlink(path / MARKER)
        os.rmdir(path)


def _write_marker(tree: Path, kind: str) -> None:
    fd = os.open(tree / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(marker_text(kind))


@cache
def _renameat2() -> Callable[..., int] | None:
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)  # glibc >= 2.28
    if func is None:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(src, dst, flags); False when the C library or the file system lacks the flag."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False when this system cannot (then nothing moved)."""
    return _rename2(a, b, _RENAME_EXCHANGE)


def rename_new(src: Path, dst: Path) -> None:
    """Rename src to dst, which must not exist: rename(2) alone would replace an empty directory."""
    if not _rename2(src, dst, _RENAME_NOREPLACE):
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)


def _temporary_name(dest: Path, kind: str) -> Path:
    # The pid says whose it is: clean_stale removes those whose writer has gone.
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(dest: Path) -> list[Path]:
    """Remove the temporaries of dest (.NAME.new-PID-*, .NAME.old-PID-*) that a killed imagegen left:
    only those whose process is gone and that carry imagegen's marker or are empty."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(new|old|tmp)-(\d+)-[0-9a-f]+")
    removed = []
    try:
        candidates = list(os.scandir(dest.parent))
    except OSError:
        return []
    for item in candidates:
        m = pattern.fullmatch(item.name)
        if m is None or int(m[2]) == os.getpid() or _alive(int(m[2])):
            continue
        path = Path(item.path)
        if m[1] != "tmp" and item.is_dir(follow_symlinks=False):
            if read_marker(path) is None and any(os.scandir(path)):
                continue
            remove_our_tree(path)
            removed.append(path)
        elif m[1] == "tmp" and item.is_file(follow_symlinks=False):
            path.unlink()
            removed.append(path)
    return removed


def remove_our_tree(tree: Path) -> None:
    """Remove a tree of imagegen's, its marker last: a removal cut short still says whose the rest is."""
    for item in os.scandir(tree):
        if item.name == MARKER:
            continue
        if item.is_dir(follow_symlinks=False):
            shutil.rmtree(item.path)
        else:
            os.unlink(item.path)
    if (tree / MARKER).exists():
        os.unlink(tree / MARKER)
    os.rmdir(tree)


def replace_tree(dest: Path, fill: Callable[[Path], None], *, kind: str, option: str) -> None:
    """Make dest the tree fill(root) writes, atomically; dest must be missing, empty or ours.

    On a file system without RENAME_EXCHANGE the old tree is first renamed aside and the new one put in
    its place: two renames, between which dest does not exist (never a mix of both trees).
    """
    check_tree(dest, option)  # named as the person named it
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest)
    new = _temporary_name(dest, "new")
    new.mkdir(mode=0o755)
    try:
        # The marker first: a render killed half-way leaves a temporary that says it is ours.
        _write_marker(new, kind)
        fill(new)
        os.chmod(new, 0o755)
        check_tree(dest, option)  # again, just before the swap: it may have changed meanwhile
        if not (dest.exists() or dest.is_symlink()):
            rename_new(new, dest)
            return
        if exchange(new, dest):
            old = new
        else:
            old = _temporary_name(dest, "old")
            os.rename(dest, old)
            try:
                rename_new(new, dest)
            except BaseException:
                os.rename(old, dest)  # put the old tree back rather than leave dest missing
                raise
    except BaseException:
        if new.is_dir() and not new.is_symlink():
            remove_our_tree(new)
        raise
    # The old tree: ours (marked) or the empty directory checked above, unless someone filled it in the
    # moment between that check and the swap: then it is left where it is, and said so.
    if read_marker(old) is None and any(os.scandir(old)):
        raise UsageError(f"{option} {dest}: replaced, but what was there changed meanwhile; it is kept at {old}",
                         f"look at {old}, then remove it yourself")
    remove_our_tree(old)


def check_link(path: Path, option: str, store_root: Path) -> None:
    """Raise UsageError unless path is missing or a symbolic link into store_root (an older result link)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise _refuse_file(option, path, "a parent of it is not a directory") from None
    if not stat.S_ISLNK(st.st_mode):
        raise _refuse_file(option, path, "exists and is not a symbolic link")
    target = Path(os.path.abspath(path.parent / os.readlink(path)))
    # The directory the link names, not what it names in it: a link to an entry gc removed still counts.
    if Path(os.path.realpath(target.parent)) != Path(os.path.realpath(store_root)):
        raise _refuse_file(option, path, f"is a symbolic link to {target}, not into the store {store_root}")


def check_file(path: Path, option: str, ours: Callable[[bytes], bool], *, limit: int = 64 << 20) -> None:
    """Raise UsageError unless path is missing or a regular file whose content ours() recognises."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise _refuse_file(option, path, "a parent of it is not a directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse_file(option, path, "is a symbolic link")
    if stat.S_ISDIR(st.st_mode):
        raise _refuse_file(option, path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse_file(option, path, "is not a regular file")
    if st.st_size > limit:
        raise _refuse_file(option, path, "is not a file imagegen wrote")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        content = f.read(limit + 1)
    if not ours(content):
        raise _refuse_file(option, path, "is not a file imagegen wrote")


def _refuse_file(option: str, path: Path, what: str) -> UsageError:
    return UsageError(f"{option} {path}: {what}; imagegen replaces only what it wrote",
                      f"choose a new file name, or remove {path} yourself")


def safe_replace(path: Path, data: bytes, *, option: str, ours: Callable[[bytes], bool],
                 mode: int = 0o644) -> None:
    """Write data to path atomically (a temporary beside it, fsynced, renamed over it), but only where
    path is missing or holds a file ours() recognises as imagegen's; else UsageError, nothing written."""
    check_file(path, option, ours)
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = _temporary_name(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        check_file(path, option, ours)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_object_with(*keys: str) -> Callable[[bytes], bool]:
    """A recogniser for safe_replace: a JSON object that has all these keys (one of imagegen's reports)."""
    def ours(content: bytes) -> bool:
        try:
            data = json.loads(content)
        except ValueError:
            return False
        return isinstance(data, dict) and all(k in data for k in keys)
    return ours
