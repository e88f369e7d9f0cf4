"""The directory where a failing run leaves its evidence."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def default_artifacts_dir(hostname: str) -> Path:
    return Path("artifacts") / f"{hostname}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_file(src: Path, dest_dir: Path, name: str | None = None) -> Path | None:
    if not src.exists():
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or src.name)
    shutil.copyfile(src, dest)
    return dest
