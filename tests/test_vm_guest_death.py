from __future__ import annotations

import time
from pathlib import Path

import pytest

from imagegen.vm.agent import GuestAgent, GuestGone
from imagegen.vm.machine import panic_line

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
