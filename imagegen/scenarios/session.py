"""A booted lab VM as the scenarios see it: the bond, its units, its addresses, the probe.

Scenarios talk about the guest in the seed's terms (units, /proc/net/bonding, ip address) and drive
the lab hardware through QMP; nothing here knows QEMU's command line.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imagegen.report.model import Check, Figure
from imagegen.report.timeline import CLOCK_MARK
from imagegen.scenarios.bonding import BondStatus, Link, parse_bonding, parse_ip_json
from imagegen.scenarios.journal import parse_unit_states
from imagegen.scenarios.probe import ProbeResult, parse_ping
from imagegen.vm.agent import AgentError, GuestGone
from imagegen.vm.lab import AP_NETNS, LabPlan
from imagegen.vm.machine import Machine, panic_line

T = TypeVar("T")

PROBE_INTERVAL_MS = 20
PROBE_DIR = "/run/imagegen-lab"


class ScenarioFailed(Exception):
    """A required check failed; the scenario stops there."""


@dataclass
class Recorder:
    """Collects the checks and figures of one scenario as it runs."""

    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    on_check: Callable[[Check], None] | None = None

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        c = Check(name, bool(ok), detail)
        self.checks.append(c)
        if self.on_check is not None:
            self.on_check(c)
        return c.ok

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        if not self.check(name, ok, detail):
            raise ScenarioFailed(f"{name}: {detail}")

    def figure(self, key: str, value: Figure) -> None:
        self.figures[key] = value


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
    running = [f"supplicant@{plan.wireless}.service"]
    if plan.dhcp4:
        running.append(f"dhclient@{b}.service")
    if plan.dhcp6:
        running.append(f"{dhcp6_unit}@{b}.service")
    exited = [f"master@{b}.service", f"{plan.wired}@{b}.service", f"{plan.wireless}@{b}.service"]
    if plan.static4 or plan.static6:
        exited.append(f"static@{b}.service")
    return Expected(tuple(running), tuple(exited))


class LabSession:
    def __init__(self, machine: Machine, plan: LabPlan, dhcp6_unit: str) -> None:
        self.machine = machine
        self.plan = plan
        self.dhcp6_unit = dhcp6_unit
        self.expected = expected_units(plan, dhcp6_unit)
        self.agent = machine.agent
        self.qmp = machine.qmp
        # Timeouts are multiples of a budget measured on this host: boot to the guest agent, in seconds.
        self.boot_seconds: float = 60.0
        self.wired_mac = plan.wired_nic.mac
        # Where scenarios leave files a passing run keeps too (the failover timelines); None: nowhere.
        self.artifacts: Path | None = None
        # The wired NIC's link as QMP last set it: a scenario run alone (--scenario) finds the lab as the
        # boot left it, not as the scenario before it in a full run would have.
        self.wired_link_up = True

    @property
    def scale(self) -> float:
        return max(1.0, self.boot_seconds / 30.0)

    def timeout(self, base: float) -> float:
        return base * self.scale

    # Booting.

    def boot(self, *, wired_link: bool = True, agent_timeout: float = 900.0) -> float:
        """Start the VM (the wired link set before the CPUs run) and wait for the guest agent."""
        self.machine.launch(paused=True)
        if not wired_link:
            self.set_wired_link(False)
        self.machine.resume()
        start = time.monotonic()
        try:
            self.agent.wait_ready(agent_timeout, alive=lambda: self.machine.running)
        except GuestGone as e:
            # How QEMU ended is known from QEMU itself (its exit status and stderr), why from the console.
            ended = self.machine.exit_status
            how = f"QEMU {ended.describe()}" if ended else "QEMU exited"
            why = panic_line(self.machine.sockets.serial_log) or "no kernel panic on its console"
            said = f"; QEMU's stderr: {ended.last_words()}" if ended and ended.last_words() else ""
            raise GuestGone(f"{how} {time.monotonic() - start:.0f} s after start, before the guest agent "
                            f"answered: {why}{said}") from e
        return time.monotonic() - start

    def set_wired_link(self, up: bool) -> float:
        """QMP set_link on the wired NIC; the host time just before the command was sent."""
        sent = self.qmp.set_link(self.plan.wired_nic.id, up)
        self.wired_link_up = up
        return sent

    # Observing the guest.

    def sh(self, script: str, timeout: float = 60.0) -> str:
        return self.agent.sh(script, timeout=timeout).check().stdout

    def bond(self) -> BondStatus | None:
        r = self.agent.exec(["cat", f"/proc/net/bonding/{self.plan.bond}"], timeout=30)
        return parse_bonding(r.stdout) if r.ok else None

    def bond_options(self, *names: str) -> dict[str, str]:
        """The bond's options as the kernel holds them (/sys/class/net/<bond>/bonding/<name>)."""
        base = f"/sys/class/net/{self.plan.bond}/bonding"
        out = self.agent.exec(["cat", *(f"{base}/{n}" for n in names)], timeout=30).check().stdout
        return dict(zip(names, (line.strip() for line in out.splitlines()), strict=False))

    def links(self) -> dict[str, Link]:
        return parse_ip_json(self.agent.exec(["ip", "-j", "address", "show"], timeout=30).check().stdout)

    def bond_link(self) -> Link | None:
        return self.links().get(self.plan.bond)

    def unit_states(self, units: tuple[str, ...] | list[str]) -> dict[str, str]:
        """unit -> 'active/running', 'active/exited', 'inactive/dead', ... as list-units shows."""
        out = self.agent.exec(["systemctl", "show", "--property=Id,ActiveState,SubState", "--", *units],
                              timeout=30).check().stdout
        return parse_unit_states(out, units)

    def list_units(self) -> str:
        """The seed's check, verbatim, for the report."""
        return self.agent.exec(["systemctl", "list-units", "--all", "--no-pager", "*bond*", "*master*",
                                "*supplicant*", "*dhclient*", "*dhcp6c*", "*static*", "*@*"],
                               timeout=30).stdout

    def wait_for(self, what: Callable[[], T | None], timeout: float, interval: float = 0.5
                 ) -> tuple[T | None, float]:
        """Poll until what() returns something truthy; returns (value or None, seconds waited)."""
        start = time.monotonic()
        value: T | None = None
        while True:
            try:
                value = what()
            except AgentError:
                value = None
            if value:
                return value, time.monotonic() - start
            if time.monotonic() - start > timeout:
                return None, time.monotonic() - start
            time.sleep(interval)

    def wait_active(self, slave: str | None, timeout: float) -> tuple[BondStatus | None, float]:
        """Wait until the bond's active slave is `slave` (None: no active slave)."""
        def probe() -> BondStatus | None:
            b = self.bond()
            return b if b is not None and b.active == slave else None
        return self.wait_for(probe, timeout, interval=0.2)

    def wait_units(self, units: dict[str, str], timeout: float) -> tuple[dict[str, str], float]:
        """Wait until every unit is in the given state ('active/running', 'inactive'...)."""
        names = list(units)

        def probe() -> dict[str, str] | None:
            got = self.unit_states(names)
            ok = all(got[u] == want or got[u].split("/")[0] == want for u, want in units.items())
            return got if ok else None
        got, waited = self.wait_for(probe, timeout, interval=1.0)
        return (got if got is not None else self.unit_states(names)), waited

    def lease4(self) -> list[str]:
        link = self.bond_link()
        return [str(a) for a in link.with_family(4, dynamic=True)] if link else []

    def address6(self) -> list[str]:
        """Global IPv6 addresses beyond the static ones: WIDE dhcp6c adds its IA_NA address with
        infinite kernel lifetimes (it expires the lease itself), so "dynamic" does not tell them apart."""
        link = self.bond_link()
        static = {str(a.ip) for a in self.plan.static6}
        return [str(a) for a in link.with_family(6) if a.address not in static] if link else []

    def station_mac(self) -> str:
        """The radio's own (permanent) MAC: with fail_over_mac=none the bond rewrites the current one."""
        b = self.bond()
        slave = b.slave(self.plan.wireless) if b else None
        if slave is not None and slave.permanent_mac:
            return slave.permanent_mac
        return self.agent.exec(["cat", f"/sys/class/net/{self.plan.wireless}/address"],
                               timeout=30).check().stdout.strip().lower()

    def ap_ping(self, target: str, count: int = 3) -> bool:
        r = self.agent.exec(["ip", "netns", "exec", AP_NETNS, "ping", "-n", "-c", str(count), "-W", "2",
                             target], timeout=30)
        return r.ok

    def clock_offset(self) -> tuple[float, float]:
        """Guest wall clock minus host wall clock, from one guest-get-time between two host readings,
        and its uncertainty (half that round trip), both in seconds."""
        before = time.time()
        guest = self.agent.time()
        after = time.time()
        return guest - (before + after) / 2, (after - before) / 2

    # The outage probe.

    def probe_target6(self) -> str | None:
        """The bond's IPv6 address the AP pings: the static one, else the DHCPv6 one; None if it has none."""
        if self.plan.static6:
            return str(self.plan.static6[0].ip)
        dynamic = self.address6()
        return dynamic[0].split("/")[0] if dynamic else None

    def start_probe(self, name: str, seconds: int = 600, target: str | None = None) -> None:
        log = f"{PROBE_DIR}/probe-{name}.log"
        cmd = (f"ip netns exec {AP_NETNS} ping -D -n -O -i {PROBE_INTERVAL_MS / 1000} "
               f"-w {seconds} {shlex.quote(target or self.plan.probe_target())}")
        # Detached from guest-exec's pipes (it waits for them to close), pid kept for the stop.
        self.sh(f"mkdir -p {PROBE_DIR}; setsid sh -c 'echo $$ > {log}.pid; exec {cmd}' "
                f"</dev/null >{log} 2>&1 &")
        # Wait for the first replies so that the outage is measured against a running probe.
        self.wait_for(lambda: "bytes from" in self.agent.exec(["cat", log], timeout=30).stdout, 30)

    def stop_probe(self, name: str) -> ProbeResult:
        log = f"{PROBE_DIR}/probe-{name}.log"
        # SIGINT: ping prints its summary line on the way out.
        self.sh(f"kill -INT $(cat {log}.pid) 2>/dev/null; "
                f"while kill -0 $(cat {log}.pid) 2>/dev/null; do sleep 0.1; done; true", timeout=30)
        return parse_ping(self.agent.exec(["cat", log], timeout=30).stdout, PROBE_INTERVAL_MS)

    def bond_kernel_log(self) -> str:
        """The kernel's messages about the bond as `dmesg` prints them (printk stamps), and last a clock
        mark: the guest's wall-clock time written to /dev/kmsg, which the kernel stamps on the same clock."""
        # bash's $EPOCHREALTIME, not `date`: a forked date returns its time milliseconds before the write
        # under emulation, and every mark would be placed that much too early.
        mark = f"printf '{CLOCK_MARK} %s\\n' \"$EPOCHREALTIME\" >/dev/kmsg"
        grep = f"dmesg | grep -F -e {shlex.quote(self.plan.bond + ': ')} -e {CLOCK_MARK} || true"
        return self.agent.exec(["bash", "-c", f"LC_ALL=C; {mark}; {grep}"], timeout=60).check().stdout

    def probe_text(self, name: str) -> str:
        return self.agent.exec(["cat", f"{PROBE_DIR}/probe-{name}.log"], timeout=30).stdout

    # Evidence for the artifacts directory.

    def collect(self, out: Path) -> list[Path]:
        """Save what explains a failure: bond state, addresses, unit list, journals. Best effort."""
        out.mkdir(parents=True, exist_ok=True)
        units = [*self.expected.all, "imagegen-lab-ap.service", "imagegen-lab-hostapd.service",
                 "imagegen-lab-dnsmasq.service", "qemu-guest-agent.service"]
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
            "dnsmasq-leases.txt": f"cat {PROBE_DIR}/dnsmasq.leases",
            "probes.txt": f"for f in {PROBE_DIR}/probe-*.log; do echo \"== $f\"; cat \"$f\"; done",
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
