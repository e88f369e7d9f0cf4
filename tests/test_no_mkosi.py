"""Without mkosi (never installed, or hidden by IMAGEGEN_TEST_NO_MKOSI=1): what needs no image still works.

Each test runs a fresh Python with tests/no_mkosi first on PYTHONPATH, as tests/conftest.py sets up a whole
run with IMAGEGEN_TEST_NO_MKOSI=1; mkosi may well be installed on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from example_copy import copy_laptop

REPO = Path(__file__).resolve().parents[1]
HIDER = Path(__file__).resolve().parent / "no_mkosi"


def without_mkosi(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEGEN_TEST_NO_MKOSI": "1",
           "PYTHONPATH": os.pathsep.join([str(HIDER), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_hider_leaves_no_mkosi_to_import_or_run(tmp_path: Path) -> None:
    proc = without_mkosi("-c", "import importlib.util, shutil; "
                               "print(importlib.util.find_spec('mkosi'), shutil.which('mkosi'))", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["None", "None"], proc.stdout + proc.stderr
    proc = without_mkosi("-m", "mkosi", "--version", cwd=tmp_path)
    assert proc.returncode != 0 and "No module named mkosi" in proc.stderr


def test_diff_of_two_profiles_compares_their_overlays_without_mkosi(tmp_path: Path) -> None:
    copy_laptop(tmp_path)
    (tmp_path / "moved.toml").write_text((tmp_path / "laptop.toml").read_text()
                                         .replace('"192.168.0.2/24"', '"192.168.0.3/24"'))
    proc = subprocess.run(
        [sys.executable, "-c", "from imagegen.cli import app; app()", "diff", "laptop.toml", "moved.toml"],
        cwd=tmp_path,
        env={**os.environ, "IMAGEGEN_TEST_NO_MKOSI": "1", "IMAGEGEN_STORE": str(tmp_path / "store"),
             "PYTHONPATH": os.pathsep.join([str(HIDER), str(REPO)])},
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+bond0ADDRS='192.168.0.3/24'" in proc.stdout
    assert "not compared" in proc.stdout.split("== packages")[1]
