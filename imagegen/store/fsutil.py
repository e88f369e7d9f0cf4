"""File-tree chores of the store: freezing read-only, removing, measuring, copying out."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def freeze(root: Path, *, private: bool = False) -> None:
    """Drop every write bit under root (root included), keeping read, execute and set-id bits.

    So a 0644 file becomes 0444, a 0755 one 0555, and a 0600 secret 0400: a secret stays
    unreadable by group and others. Symbolic links have no mode of their own on Linux.
    private (an output holding secrets, e.g. an image with the Wi-Fi key): root becomes 0500 and the
    files directly in it 0400, so nobody but the owner reaches anything inside. Modes deeper down are
    the tree's content (an overlay's 0644 unit file is 0644 in the image) and are kept.
    """
    for directory, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) & ~0o222
                if private and directory == os.fspath(root) and stat.S_ISREG(st.st_mode):
                    mode &= ~0o077
                os.chmod(path, mode)
    mode = stat.S_IMODE(os.lstat(root).st_mode) & ~0o222
    os.chmod(root, mode & ~0o077 if private else mode)


def remove_tree(path: Path) -> None:
    """Remove a file or tree, frozen or not; a missing path is not an error."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return
    # Without write permission on a directory its entries cannot be unlinked (unless root).
    os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
    for directory, dirs, _files in os.walk(path):
        for name in dirs:
            sub = os.path.join(directory, name)
            sub_st = os.lstat(sub)
            if stat.S_ISDIR(sub_st.st_mode):
                os.chmod(sub, stat.S_IMODE(sub_st.st_mode) | 0o700)
    shutil.rmtree(path)


def disk_usage(path: Path) -> int:
    """Bytes a file or tree occupies on disk, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    items = [st]
    if stat.S_ISDIR(st.st_mode):
        for directory, dirs, files in os.walk(path):
            items.extend(os.lstat(os.path.join(directory, name)) for name in dirs + files)
    for item in items:
        key = (item.st_dev, item.st_ino)
        if key not in seen:
            seen.add(key)
            total += item.st_blocks * 512
    return total


def copy_out(source: Path, dest: Path) -> None:
    """Copy a store tree to dest, writable again: owner-write restored, hard links and symlinks kept.

    For consumers that copy file modes onward (e.g. an overlay handed to mkosi), so the
    result carries 0644/0755/0600, not the store's 0444/0555/0400; dest itself is 0755.
    """
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(dest)
    linked: dict[tuple[int, int], Path] = {}
    dirs_to_chmod: list[tuple[Path, int]] = []
    dest.mkdir(parents=True)
    # The root's mode is the store's (0500 for a private entry), not the tree's: an overlay's root
    # becomes the image's /, which must stay 0755.
    dirs_to_chmod.append((dest, 0o755))
    for directory, dirs, files in os.walk(source):
        rel = Path(directory).relative_to(source)
        for name in sorted(dirs):
            src = Path(directory, name)
            st = src.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            (dest / rel / name).mkdir()
            dirs_to_chmod.append((dest / rel / name, stat.S_IMODE(st.st_mode) | 0o200))
        for name in sorted(files + [d for d in dirs if Path(directory, d).is_symlink()]):
            src = Path(directory, name)
            target = dest / rel / name
            st = src.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), target)
            elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in linked:
                os.link(linked[(st.st_dev, st.st_ino)], target)
            else:
                shutil.copyfile(src, target, follow_symlinks=False)
                os.chmod(target, stat.S_IMODE(st.st_mode) | 0o200)
                linked[(st.st_dev, st.st_ino)] = target
    # Directory modes last: a directory made 0555 first could not be filled.
    for path, mode in reversed(dirs_to_chmod):
        os.chmod(path, mode)
