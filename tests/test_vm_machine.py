"""A real QEMU, started paused (no guest code runs, so it takes a second): QMP plumbing and clean-up."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from orphans import adopting, cmdline, living_descendants, wait_until_gone
from rich.console import Console

from imagegen.profile import load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.run import run
from imagegen.scenarios import runner
from imagegen.scenarios.catalog import Scenario
from imagegen.scenarios.session import LabSession
from imagegen.testing import Lab, Results
from imagegen.testing import Machine as ApiMachine
from imagegen.testing.calls import CallLog
from imagegen.testing.scripts import CALL_LOG, bind
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import GuestGone
from imagegen.vm.lab import LAB_NICS, WIRED_NIC, LabPlan, plan_lab
from imagegen.vm.machine import ImageFiles, Machine, QemuExited
from imagegen.vm.qemu import OVMF_CODE, OVMF_VARS

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not OVMF_CODE.exists() or not OVMF_VARS.exists(),
    reason="needs qemu-system-x86_64 and OVMF (imagegen setup installs them)")


@pytest.fixture
def image(tmp_path: Path) -> ImageFiles:
    raw = tmp_path / "image.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "16M"])
    return ImageFiles(raw, None, None)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_paused_vm_over_qmp_then_everything_removed(image: ImageFiles, tmp_path: Path) -> None:
    before = image.image.read_bytes()
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)
        assert m.pid is not None and m.running
        pid, run_dir = m.pid, m.run_dir
        assert m.qmp.status() == "prelaunch"
        assert {WIRED_NIC.id, "nic-uplink"} <= set(m.qmp.devices())
        m.qmp.set_link(WIRED_NIC.id, False)
        m.qmp.set_link(WIRED_NIC.id, True)
        assert m.sockets.qmp.exists() and (run_dir / "disk.qcow2").exists()
    assert gone(pid)
    assert not run_dir.exists()
    # The image is only ever a backing file.
    assert image.image.read_bytes() == before


def test_an_exception_inside_still_stops_qemu(image: ImageFiles) -> None:
    machine = Machine(image, accel="tcg", nics=LAB_NICS, uefi=True)
    with pytest.raises(RuntimeError, match="scenario blew up"), machine:
        machine.launch(paused=True)
        pid = machine.pid
        raise RuntimeError("scenario blew up")
    assert pid is not None and gone(pid)
    assert not machine.run_dir.exists()


def test_bad_command_line_is_a_clear_error_and_leaves_nothing(image: ImageFiles, tmp_path: Path) -> None:
    missing = ImageFiles(image.image, tmp_path / "no-such-kernel", None)
    machine = Machine(missing, accel="tcg", nics=LAB_NICS)
    with pytest.raises(Exception, match="no-such-kernel"):
        machine.launch()
    assert not machine.run_dir.exists()
    assert not any(p.name.startswith("imagegen-vm-") and p == machine.run_dir for p in Path("/tmp").iterdir())
    assert os.path.exists(image.image)


def test_a_qemu_that_cannot_start_says_why_with_its_status_and_stderr(image: ImageFiles, tmp_path: Path) -> None:
    machine = Machine(ImageFiles(image.image, tmp_path / "no-such-kernel", None), accel="tcg", nics=LAB_NICS)
    with pytest.raises(QemuExited) as e:
        machine.launch()
    assert e.value.status.returncode == 1
    assert str(e.value).startswith("QEMU exited with status 1 before QMP answered: qemu: could not open kernel file")
    assert "no-such-kernel" in e.value.status.stderr_tail


def test_a_qemu_killed_under_the_machine_is_reported_as_such(image: ImageFiles) -> None:
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)
        assert m.pid is not None and m.exit_status is None
        os.kill(m.pid, signal.SIGKILL)
        assert m.wait_exit(10)
        assert not m.running
        status = m.exit_status
        assert status is not None and status.describe() == "was killed by SIGKILL"


def test_sigkill_of_imagegen_ends_its_qemu(image: ImageFiles) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from imagegen.vm.lab import LAB_NICS
            from imagegen.vm.machine import ImageFiles, Machine
            m = Machine(ImageFiles(Path({str(image.image)!r}), None, None), accel="tcg", nics=LAB_NICS, uefi=True)
            m.launch(paused=True)
            print(m.pid, flush=True)
            time.sleep(300)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    with adopting():
        assert owner.stdout is not None
        qemu = int(owner.stdout.readline())
        assert "qemu-system" in cmdline(qemu)
        owner.kill()
        owner.wait()
        assert wait_until_gone([qemu], 10) == [], living_descendants()


def lab_plan() -> LabPlan:
    return plan_lab(load_profiles([REPO / "examples/laptop.toml"]).profile)


def test_a_guest_that_dies_booting_is_reported_with_qemus_status(image: ImageFiles) -> None:
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        lab = LabSession(m, lab_plan(), "dhcp6c")
        # No guest agent ever answers on this empty disk; QEMU dies under the wait as a panicking guest's does.
        killer = threading.Timer(2.0, lambda: m.pid and os.kill(m.pid, signal.SIGKILL))
        killer.start()
        try:
            with pytest.raises(GuestGone) as e:
                lab.boot(agent_timeout=60)
        finally:
            killer.cancel()
    assert re.match(r"QEMU was killed by SIGKILL \d+ s after start, before the guest agent answered: "
                    "no kernel panic on its console", str(e.value)), str(e.value)


def test_a_vm_that_dies_during_a_scenario_is_named_in_its_result(image: ImageFiles, tmp_path: Path) -> None:
    options = runner.TestOptions(artifacts=tmp_path / "evidence")
    run = runner.LabRun(lab_plan(), "dhcp6c", image, AccelChoice("tcg", "test"), options,
                        ConsoleReport(Console(file=io.StringIO())))
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)

        def dies(machine: ApiMachine, lab: Lab, results: Results) -> None:
            assert m.pid is not None
            os.kill(m.pid, signal.SIGKILL)
            m.wait_exit(10)
            m.qmp.status()

        session = LabSession(m, lab_plan(), "dhcp6c")
        session.artifacts = options.artifacts
        calls = CallLog(options.artifacts / CALL_LOG)
        api = bind(session, calls)
        run._run_one(Scenario("dies", "Dies", dies), session, api, calls)
        run._run_one(Scenario("after", "After", dies), session, api, calls)
    died, after = run.results["dies"], run.results["after"]
    assert not died.passed and died.error is not None
    assert died.error.startswith("ImagegenError: QMP query-status failed"), died.error
    assert "; QEMU was killed by SIGKILL" in died.error
    assert after.error is not None and after.error.startswith("QEMU was killed by SIGKILL before the scenario began")


def test_keep_holds_the_vm_until_ctrl_c_or_until_it_ends(image: ImageFiles, tmp_path: Path) -> None:
    options = runner.TestOptions(artifacts=tmp_path / "evidence", keep=True)
    run = runner.LabRun(lab_plan(), "dhcp6c", image, AccelChoice("tcg", "test"), options,
                        ConsoleReport(Console(file=io.StringIO())))
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)
        ctrl_c = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        ctrl_c.start()
        start = time.monotonic()
        run._hold(m)
        assert time.monotonic() - start >= 0.9 and m.running, "Ctrl-C ends the hold, not the run"
    assert not m.running
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)
        pid = m.pid
        assert pid is not None
        threading.Timer(1.0, lambda: os.kill(pid, signal.SIGKILL)).start()
        run._hold(m)
        assert not m.running


def test_the_kept_vm_s_paths_are_printed_literally(image: ImageFiles, tmp_path: Path) -> None:
    out = io.StringIO()
    run = runner.LabRun(lab_plan(), "dhcp6c", image, AccelChoice("tcg", "test"),
                        runner.TestOptions(artifacts=tmp_path / "evidence", keep=True),
                        ConsoleReport(Console(file=out, width=300)))
    # A run directory under a TMPDIR that rich would read as markup.
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True, run_dir=tmp_path / "[bold]x[/bold]") as m:
        m.launch(paused=True)
        pid = m.pid
        assert pid is not None
        threading.Timer(0.5, lambda: os.kill(pid, signal.SIGKILL)).start()
        run._hold(m)
    assert f"run dir {tmp_path}/[bold]x[/bold]" in out.getvalue()
