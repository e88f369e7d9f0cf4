"""Write a planned overlay to disk atomically: a failed render leaves the previous tree intact."""

from __future__ import annotations

import os
from pathlib import Path

from imagegen.render.plan import File, HardLink, Plan, Symlink
from imagegen.safeoutput import replace_tree


def write_tree(plan: Plan, root: Path) -> None:
    """Create every entry of the plan below root, which must hold none of them (the store's overlay
    entries are written so, with nothing else in them)."""
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
    """Replace out with the planned tree; out is either the new tree or the old one, never a mix.

    out must be missing, an empty directory or a tree this function wrote before (it carries
    safeoutput.MARKER beside the plan's entries); anything else is refused with exit 2.
    """
    replace_tree(out, lambda root: write_tree(plan, root), kind="overlay", option="--out")
