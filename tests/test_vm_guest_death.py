from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from imagegen.profile import load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.scenarios import runner
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import AgentError, GuestAgent, GuestGone
from imagegen.vm.lab import plan_lab
from imagegen.vm.machine import ImageFiles, panic_line

# The console of a lab boot that died under TCG (trimmed).
CRASHED = """\
[    8.339876] sched_clock: Marking stable (8388176270, -50425995)->(8340912796, -3162521)
[    8.345264] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    8.346391] CPU: 1 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.118+deb13-amd64 #1  Debian 6.12.118-1
[    8.346874] RIP: 0010:sched_clock_cpu+0x9/0x1d0
[    8.351713] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI
[    8.352319] Kernel panic - not syncing: Fatal exception in interrupt
[   10.105798] Shutting down cpus with NMI
"""


def test_panic_line_names_the_oops_where_and_the_panic(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text(CRASHED)
    assert panic_line(log) == ("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI; RIP: 0010:sched_clock_cpu+0x9/0x1d0; "
                               "Kernel panic - not syncing: Fatal exception in interrupt")


def test_no_panic_line_without_a_panic(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("[    1.0] Run /init as init process\n")
    assert panic_line(log) is None
    assert panic_line(tmp_path / "missing.log") is None


def test_waiting_for_the_agent_of_a_vm_that_is_gone_ends_at_once(tmp_path: Path) -> None:
    agent = GuestAgent(tmp_path / "qga.sock")  # nobody listens: as after QEMU exited
    start = time.monotonic()
    with pytest.raises(GuestGone, match="QEMU exited"):
        agent.wait_ready(900, alive=lambda: False)
    assert time.monotonic() - start < 10


class _FakeMachine:
    """Stands in for a Machine whose guest kernel panics at boot: only its console log is real."""

    def __init__(self, files: object, **kwargs: object) -> None:
        self.sockets = type("Sockets", (), {"serial_log": _FakeMachine.log})()

    def __enter__(self) -> _FakeMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    log = Path()


class _DyingLab:
    boots = 0
    error: type[Exception] = GuestGone

    def __init__(self, machine: _FakeMachine, plan: object, dhcp6_unit: str) -> None:
        self.machine = machine
        self.artifacts: Path | None = None

    def boot(self, **kwargs: object) -> float:
        _DyingLab.boots += 1
        raise _DyingLab.error("QEMU exited 8 s after start, before the guest agent answered")


@pytest.mark.parametrize(("error", "boots"), [(GuestGone, 2), (AgentError, 1)])
def test_a_vm_that_dies_booting_is_booted_once_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    error: type[Exception], boots: int) -> None:
    _FakeMachine.log = tmp_path / "serial.log"
    _FakeMachine.log.write_text(CRASHED)
    _DyingLab.boots, _DyingLab.error = 0, error
    monkeypatch.setattr(runner, "Machine", _FakeMachine)
    monkeypatch.setattr(runner, "LabSession", _DyingLab)
    plan = plan_lab(load_profiles([Path(__file__).parents[1] / "examples/laptop.toml"]).profile)
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    options = runner.TestOptions(artifacts=tmp_path / "evidence", only=("failover",))
    result = runner.LabRun(plan, "dhcp6c", files, AccelChoice("tcg", "test"), options,
                           ConsoleReport(Console(file=io.StringIO()))).run("laptop.toml")

    assert _DyingLab.boots == boots, "only a guest that died is booted again, and only once"
    (failover,) = result.scenarios
    assert not failover.passed and failover.error and "did not boot" in failover.error
    if error is GuestGone:
        assert result.figures["main_vm_boot_retries"] == 1
        assert (tmp_path / "evidence/serial-main-boot1.log").is_file()
        assert (tmp_path / "evidence/serial-main-boot2.log").is_file()
    else:
        assert "main_vm_boot_retries" not in result.figures
