"""User test files on the real lab VM: the laptop's own checks pass, a deliberately failing check fails the
verdict, naming its file, line, command and output, and the checks after it still run (vm: a few minutes
under TCG)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imagegen.build.config import repo_root

pytestmark = [
    pytest.mark.vm,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(os.geteuid() != 0, reason="mkosi image builds need root"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed"),
]

REPO = repo_root()
CHECKS = REPO / "examples" / "tests" / "laptop_checks.py"
FAILING = REPO / "tests" / "data" / "failing_checks.py"


def test_user_checks_pass_and_a_failing_one_names_file_line_command_and_output(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The example itself (not a copy): its host state, and so its lab image in the store, is reused.
    proc = subprocess.run(
        [sys.executable, "-c", "from imagegen.cli import app; app()", "test", "examples/laptop.toml",
         "--scenario", "boot-wired-primary", "--script", str(CHECKS), "--script", str(FAILING), "--rerun",
         "--json", str(tmp_path / "result.json"), "--junit", str(tmp_path / "result.xml"),
         "--artifacts", str(tmp_path / "artifacts")],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3000)
    assert (tmp_path / "result.json").exists(), proc.stdout[-5000:]
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"]}
    failing = "failing_checks.py::test_fails_on_purpose"
    assert verdicts.pop(failing) is False, proc.stdout[-5000:]
    laptop = [n for n in verdicts if n.startswith("laptop_checks.py::")]
    assert len(laptop) == 6 and "boot-wired-primary" in verdicts
    assert all(verdicts.values()), (verdicts, proc.stdout[-5000:])

    line = next(i for i, text in enumerate(FAILING.read_text().splitlines(), 1) if "exit 3" in text)
    case = ET.parse(tmp_path / "result.xml").getroot().find(f"testcase[@name='{failing}']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert f"{FAILING}:{line}: machine.succeed(" in message
    assert "exited 3" in message and "visible-stdout" in message and "visible-stderr" in message
    # Every call is in the artifacts' call log with its duration.
    log = (tmp_path / "artifacts" / "machine-calls.log").read_text()
    assert "machine.wait_for_unit master@bond0.service" in log and "peer.succeed" in log
