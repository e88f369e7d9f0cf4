"""tests/conftest.py on CI: a skipped check fails the run, except the skips a run with mkosi hidden makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SUITE = '''
import pytest

def test_runs():
    pass

def test_needs_a_tool():
    pytest.skip("frobnicate is not installed")

@pytest.mark.skipif(True, reason="mkosi is not importable (run `imagegen setup`)")
def test_needs_mkosi():
    pass
'''


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    for name in ("conftest.py", "seed.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    shutil.copytree(TESTS / "no_mkosi", tmp_path / "no_mkosi")
    (tmp_path / "test_suite.py").write_text(SUITE)
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "IMAGEGEN_TEST_NO_MKOSI")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(tmp_path)],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_off_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    proc = run_suite(tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 2 skipped" in proc.stdout


@pytest.mark.parametrize("value", ["true", "1"])
def test_on_ci_every_skip_fails(tmp_path: Path, value: str) -> None:
    proc = run_suite(tmp_path, CI=value)
    assert proc.returncode == 1, proc.stdout
    assert "skipped on CI, where every check the README promises must run: frobnicate is not installed" in proc.stdout
    # A skip in the call is a failure, a skipif mark (decided at set-up) an error: both fail the run.
    assert "1 failed, 1 passed, 1 error" in proc.stdout, proc.stdout


def test_on_ci_with_mkosi_hidden_only_the_mkosi_skip_is_allowed(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, CI="true", IMAGEGEN_TEST_NO_MKOSI="1")
    assert proc.returncode == 1, proc.stdout
    assert "frobnicate is not installed" in proc.stdout
    assert "1 failed, 1 passed, 1 skipped" in proc.stdout, proc.stdout
    assert "SKIPPED [1] test_suite.py:10: mkosi is not importable" in proc.stdout
