"""Write a planned overlay to disk atomically: a failed render leaves the previous tree intact."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from imagegen.render.plan import File, HardLink, Plan, Symlink


def write_tree(plan: Plan, root: Path) -> None:
    """Create every entry of the plan below root, which must be empty."""
    for entry in plan.entries:
        dest = root / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if isinstance(entry, File):
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, entry.mode)
            with os.fdopen(fd, "wb") as f:
                f.write(entry.content)
            # The umask must not decide the mode of a file that lands in an image.
            os.chmod(dest, entry.mode)
    for entry in plan.entries:
        dest = root / entry.path
        if isinstance(entry, HardLink):
            os.link(root / entry.source, dest)
        elif isinstance(entry, Symlink):
            os.symlink(entry.target, dest)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


def write_overlay(plan: Plan, out: Path) -> None:
    """Replace out with the planned tree; out is either the new tree or the old one, never a mix."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        write_tree(plan, tmp)
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "tree")
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
