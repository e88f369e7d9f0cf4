"""User test files on the real lab VM: the laptop's own checks pass, a deliberately failing check fails the
verdict, naming its file, line, command and output, and the checks after it still run (vm: a few minutes
under TCG)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from vm_test import MARKS

from imagegen.image.config import repo_root

pytestmark = MARKS

REPO = repo_root()
CHECKS = REPO / "examples" / "tests" / "laptop_checks.py"
FAILING = REPO / "tests" / "data" / "failing_checks.py"
REBOOT = REPO / "tests" / "data" / "reboot_checks.py"
UNBOUND = REPO / "tests" / "data" / "unbound_static_checks.py"


def test_user_checks_pass_and_a_failing_one_names_file_line_command_and_output(tmp_path: Path) -> None:
    """One boot proves the user checks, --debug's prompt at the failure, the screen and a reboot."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The example itself (not a copy): its host state, and so its lab image in the store, is reused.
    # --debug: the failing check opens the prompt (driven through a pty, as a person would); after it the
    # run goes on, the reboot check last.
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imagegen.cli import app; app()", "test", "examples/laptop.toml",
         "--scenario", "boot-wired-primary", "--script", str(CHECKS), "--script", str(FAILING),
         "--script", str(UNBOUND), "--script", str(REBOOT), "--debug",
         "--json-file", str(tmp_path / "result.json"), "--junit", str(tmp_path / "result.xml"),
         "--artifacts", str(tmp_path / "artifacts")],
        cwd=REPO, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    term = Terminal(controller, proc)
    try:
        term.read_until(b">>> ", 2400)
        assert b"--debug" in term.seen and b"test_still_runs_after_the_failure" not in term.seen, term.tail()
        os.write(controller, b'print("debug:", machine.succeed("echo $((6 * 7))").strip())\n')
        term.read_until(b"debug: 42", 120)
        term.read_until(b">>> ", 60, after=term.seen.index(b"debug: 42"))  # see ctrl_d_at_a_prompt
        os.write(controller, b"\x04")  # Ctrl-D: the prompt ends, the run goes on
        assert term.wait(1800) == 1, term.tail()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    out = term.seen.decode(errors="replace")
    assert out.count(">>> ") == 2, "one prompt, at the first failure only"
    assert term.seen.index(b"test_still_runs_after_the_failure") > term.seen.index(b"debug: 42"), \
        "the checks after the failure ran after the prompt"
    assert (tmp_path / "result.json").exists(), out[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"]}
    failing = "failing_checks.py::test_fails_on_purpose"
    assert verdicts.pop(failing) is False, out[-5000:]
    # master@'s teardown without static@'s RequiredBy=: static@ goes only when the bond does (BindsTo=),
    # after master@ began to stop, and the scenario's order check says so.
    unbound = next(s for s in result["scenarios"] if s["name"].startswith("unbound_static_checks.py::"))
    assert verdicts.pop(unbound["name"]) is False, out[-5000:]
    failed = [c["name"] for c in unbound["checks"] if not c["ok"]]
    assert "static@bond0.service stopped before master@bond0.service began to stop" in failed, unbound["checks"]
    assert not [f for f in failed if "dhclient@" in f or "dhcp6c@" in f or "enp3s0@" in f], failed
    laptop = [n for n in verdicts if n.startswith("laptop_checks.py::")]
    assert len(laptop) == CHECKS.read_text().count("\ndef test_") and "boot-wired-primary" in verdicts
    assert "reboot_checks.py::test_a_reboot_brings_the_same_vm_back" in verdicts
    assert all(verdicts.values()), (verdicts, out[-5000:])

    line = next(i for i, text in enumerate(FAILING.read_text().splitlines(), 1) if "exit 3" in text)
    case = ET.parse(tmp_path / "result.xml").getroot().find(f"testcase[@name='{failing}']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert f"{FAILING}:{line}: machine.succeed(" in message
    assert "exited 3" in message and "visible-stdout" in message and "visible-stderr" in message
    # Every call is in the artifacts' call log with its duration, the prompt's too.
    artifacts = tmp_path / "artifacts"
    log = (artifacts / "machine-calls.log").read_text()
    assert "machine.wait_for_unit master@bond0.service" in log and "peer.succeed" in log
    assert "machine.succeed `echo $((6 * 7))`" in log and "machine.reboot" in log
    # The screen: the check's own screenshot and the run's last one, both real PNGs of the console.
    for name in ("login-prompt.png", "screen-main.png"):
        assert (artifacts / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "machine.wait_for_text 'laptop login:'" in log


class Terminal:
    """The controlling end of a pty a command runs on: what it printed so far, read with deadlines."""

    def __init__(self, controller: int, proc: subprocess.Popen[bytes]) -> None:
        self.controller = controller
        self.proc = proc
        self.seen = b""

    def tail(self) -> str:
        return self.seen[-3000:].decode(errors="replace")

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.controller], [], [], wait)
        if ready:
            try:
                self.seen += os.read(self.controller, 65536)
            except OSError:  # EIO: every end of the terminal closed, the command has exited
                return False
        return True

    def read_until(self, marker: bytes, timeout: float, after: int = 0) -> None:
        """Until marker shows up in what the command printed from offset after on."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen[after:]:
            assert time.monotonic() < deadline, self.tail()
            if not self._read(1.0):
                raise AssertionError(f"the command exited {self.proc.wait()}:\n{self.tail()}")

    def wait(self, timeout: float) -> int:
        """Read everything the command prints (a full pty would stop it) until it exits; its status."""
        deadline = time.monotonic() + timeout
        while self._read(1.0):
            if self.proc.poll() is not None:
                while self._read(0.2) and select.select([self.controller], [], [], 0)[0]:
                    pass
                break
            assert time.monotonic() < deadline, self.tail()
        return self.proc.wait(timeout=60)


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

    def read_until(marker: bytes, timeout: float, after: int = 0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen[after:]:
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
        # ctrl_d_at_a_prompt: the next prompt first. A Ctrl-D that reaches the terminal while it is still
        # in cooked mode, between two reads of the prompt, is lost when readline switches it to raw mode.
        read_until(b">>> ", 60, after=seen.index(b"answer: laptop"))
        os.write(controller, b"\x04")  # Ctrl-D: the prompt ends, the VM stops
        try:
            status = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            read_until(b"\0never\0", 1)  # what the terminal showed since, into the failure's message
            raise
        assert status == 0, seen[-3000:].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    assert _lab_qemus() == before, "the prompt's QEMU outlived imagegen vm"
