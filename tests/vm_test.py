"""What every VM test module shares: its marks (slow, vm, root for mkosi, QEMU installed) and running the
imagegen command line as a person types it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.image.config import repo_root

MARKS = [
    pytest.mark.vm,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(os.geteuid() != 0, reason="mkosi image builds need root"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed"),
]


def imagegen(*args: str, cwd: Path, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """`imagegen ARGS` in cwd, with this checkout's package; stdout and stderr together."""
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    return subprocess.run([sys.executable, "-c", "from imagegen.cli import app; app()", *args], cwd=cwd,
                          env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
