"""The lab's plumbing under the test API: the booted VM, its QMP monitor and guest agent, the wired
link's state, the timeouts scaled to this host, and the evidence a failed scenario leaves.

The scenarios and the user's checks do not use this: they drive imagegen.testing's Machine and Lab,
which are built on it. Nothing here knows QEMU's command line.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import ImagegenError
from imagegen.vm.agent import AgentError, GuestAgent, GuestGone
from imagegen.vm.lab import AP_NETNS, AP_UNIT, AUTHENTICATOR_UNIT, DNSMASQ_UNIT, HOSTAPD_UNIT, LAB_RUN, LabPlan
from imagegen.vm.machine import Machine, panic_line


@dataclass(frozen=True)
class Expected:
    """The units of the seed that the profile implies, as `systemctl list-units` shows them."""

    running: tuple[str, ...]
    exited: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.running + self.exited


def expected_units(plan: LabPlan, dhcp6_unit: str) -> Expected:
    b = plan.bond
    # A bridge over the wired NIC alone has no radio: no supplicant and no wireless member's unit.
    running = [f"supplicant@{plan.wireless}.service"] if plan.wireless else []
    # A wired member that runs one (802.1X) has its own.
    if plan.wired_auth:
        running.append(f"supplicant@{plan.wired}.service")
    if plan.dhcp4:
        running.append(f"dhclient@{b}.service")
    if plan.dhcp6:
        running.append(f"{dhcp6_unit}@{b}.service")
    exited = [f"master@{b}.service", f"{plan.wired}@{b}.service"]
    if plan.wireless:
        exited.append(f"{plan.wireless}@{b}.service")
    if plan.static4 or plan.static6:
        exited.append(f"static@{b}.service")
    return Expected(tuple(running), tuple(exited))


class LabSession:
    """One booted lab VM and the state of its hardware that QEMU does not report."""

    def __init__(self, machine: Machine, plan: LabPlan, dhcp6_unit: str) -> None:
        self.machine = machine
        self.plan = plan
        self.expected = expected_units(plan, dhcp6_unit)
        self.agent = machine.agent
        self.qmp = machine.qmp
        # Timeouts are multiples of a budget measured on this host: boot to the guest agent, in seconds.
        self.boot_seconds: float = 60.0
        # Where scenarios leave files a passing run keeps too (the failover timelines); None: nowhere.
        self.artifacts: Path | None = None
        # The wired NIC's link as QMP last set it: a scenario run alone (--scenario) finds the lab as the
        # boot left it, not as the scenario before it in a full run would have.
        self.wired_link_up = True
        # When start() ran the CPUs (monotonic); None before.
        self.started: float | None = None

    @property
    def scale(self) -> float:
        return max(1.0, self.boot_seconds / 30.0)

    def timeout(self, base: float) -> float:
        return base * self.scale

    # Booting.

    def boot(self, *, wired_link: bool = True, agent_timeout: float = 900.0) -> float:
        """Start the VM and wait for its guest agent; the seconds from the CPUs' start to its answer."""
        self.start(wired_link=wired_link)
        return self.wait_booted(agent_timeout)

    def start(self, *, wired_link: bool = True) -> None:
        """Start QEMU, set the wired link before the CPUs run, then run them; the guest boots on its own.
        Call it on the thread that owns the run: QEMU's parent-death signal follows the thread that
        started it."""
        self.machine.launch(paused=True)
        try:
            if not wired_link:
                self.set_wired_link(False)
            self.machine.resume()
        except BaseException:
            self.machine.shutdown()
            raise
        self.started = time.monotonic()

    def wait_booted(self, agent_timeout: float = 900.0, agent: GuestAgent | None = None,
                    alive: Callable[[], bool] | None = None) -> float:
        """Wait for the guest agent of a started VM; the seconds from its start to the answer. On another
        thread, pass that thread's own agent connection (qemu.qmp binds one to the event loop of the
        thread that opened it) and close it there. alive (default: QEMU runs) false ends the wait."""
        if self.started is None:
            raise ImagegenError("the VM was not started")
        try:
            (agent or self.agent).wait_ready(agent_timeout, alive=alive or (lambda: self.machine.running))
        except GuestGone as e:
            # How QEMU ended is known from QEMU itself (its exit status and stderr), why from the console.
            ended = self.machine.exit_status
            how = f"QEMU {ended.describe()}" if ended else "QEMU exited"
            why = panic_line(self.machine.sockets.serial_log) or "no kernel panic on its console"
            said = f"; QEMU's stderr: {ended.last_words()}" if ended and ended.last_words() else ""
            raise GuestGone(f"{how} {time.monotonic() - self.started:.0f} s after start, before the guest "
                            f"agent answered: {why}{said}") from e
        return time.monotonic() - self.started

    def set_wired_link(self, up: bool) -> float:
        """QMP set_link on the wired NIC; the host time just before the command was sent."""
        sent = self.qmp.set_link(self.plan.wired_nic.id, up)
        self.wired_link_up = up
        return sent

    # Evidence for the artifacts directory.

    def collect(self, out: Path) -> list[Path]:
        """Save what explains a failure: bond state, addresses, unit list, journals. Best effort."""
        out.mkdir(parents=True, exist_ok=True)
        units = [*self.expected.all, AP_UNIT, HOSTAPD_UNIT, DNSMASQ_UNIT, AUTHENTICATOR_UNIT,
                 "qemu-guest-agent.service"]
        jobs = {
            "bonding.txt": "for f in /proc/net/bonding/*; do echo \"== $f\"; cat \"$f\"; done",
            "ip-address.txt": "ip address; echo; ip route; echo; ip -6 route; "
                              f"echo '== netns {AP_NETNS}'; ip -n {AP_NETNS} address",
            # Which MAC the AP side sends the bond's addresses to, and which bridge port it learnt it on:
            # a stale entry here is an outage no bond state shows.
            "neighbours.txt": f"ip -n {AP_NETNS} neigh; echo; bridge -n {AP_NETNS} fdb show dynamic",
            "units.txt": "systemctl list-units --all --no-pager '*@*' 'imagegen-lab*'; systemctl --failed",
            "journal-units.txt": "journalctl -b --no-pager -o short-monotonic "
                                 + " ".join(f"-u {shlex.quote(u)}" for u in units),
            "journal.txt": "journalctl -b --no-pager -o short-monotonic",
            "dnsmasq-leases.txt": f"cat {LAB_RUN}/dnsmasq.leases",
            "probes.txt": f"for f in {LAB_RUN}/probe-*.log; do echo \"== $f\"; cat \"$f\"; done",
        }
        written = []
        for name, script in jobs.items():
            try:
                r = self.agent.sh(script, timeout=60)
                text = r.stdout + (("\n" + r.stderr) if r.stderr.strip() else "")
            except (AgentError, OSError) as e:
                text = f"(could not collect: {e})\n"
            (out / name).write_text(text)
            written.append(out / name)
        return written
