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

from imagegen.image.config import repo_root

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
         "--json-file", str(tmp_path / "result.json"), "--junit", str(tmp_path / "result.xml"),
         "--artifacts", str(tmp_path / "artifacts")],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3000)
    assert (tmp_path / "result.json").exists(), proc.stdout[-5000:]
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"]}
    failing = "failing_checks.py::test_fails_on_purpose"
    assert verdicts.pop(failing) is False, proc.stdout[-5000:]
    laptop = [n for n in verdicts if n.startswith("laptop_checks.py::")]
    assert len(laptop) == 11 and "boot-wired-primary" in verdicts
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


def _lab_qemus() -> set[int]:
    """QEMU processes of imagegen's lab (run under the heavy lock, no one else's run at the same time)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[0].endswith(b"qemu-system-x86_64") and b"imagegen-lab" in cmdline:
                found.add(int(proc.name))
    return found


def test_the_interactive_prompt_drives_the_lab_and_leaves_no_qemu(tmp_path: Path) -> None:
    import pty
    import select
    import time

    before = _lab_qemus()
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imagegen.cli import app; app()", "vm", "examples/laptop.toml",
         "--interactive", "--artifacts", str(tmp_path / "artifacts")],
        cwd=REPO, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen[-3000:].decode(errors="replace")
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(controller, 65536)
                except OSError:  # EIO: every end of the terminal closed, imagegen has exited
                    raise AssertionError(f"imagegen vm exited {proc.wait()}:\n"
                                         + seen[-3000:].decode(errors="replace")) from None

    try:
        read_until(b">>> ", 1800)
        os.write(controller, b'print("answer:", machine.succeed("hostname").strip())\n')
        read_until(b"answer: laptop", 120)
        os.write(controller, b"\x04")  # Ctrl-D: the prompt ends, the VM stops
        assert proc.wait(timeout=120) == 0, seen[-3000:].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    assert _lab_qemus() == before, "the prompt's QEMU outlived imagegen vm"
