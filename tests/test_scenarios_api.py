"""The built-in scenarios run on the public test API against a simulated lab: a guest agent and a QMP monitor
that answer as the laptop's bond would (the wired link cut, the NIC unplugged, the radio removed, the AP
stopped, a unit stopped and started by hand, network.conf edited), so that every call the catalog makes is
exercised in seconds and every figure, check and timeline it records is named as the JSON's readers and
docs/benchmarks.md know them. The real lab runs the same functions in tests/test_vm_scenarios.py.
"""

from __future__ import annotations

import io
import json
import re
import time
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from imagegen.profile import load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.report.model import ScenarioResult
from imagegen.report.timeline import CLOCK_MARK
from imagegen.scenarios import catalog
from imagegen.scenarios.runner import LabRun
from imagegen.scenarios.runner import TestOptions as Options
from imagegen.scenarios.session import LabSession
from imagegen.testing.calls import CallLog
from imagegen.testing.scripts import CALL_LOG, bind
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import ExecResult
from imagegen.vm.lab import LAB_NICS, STATION_RADIO_MAC, WIRED_NIC, LabPlan, plan_lab
from imagegen.vm.machine import ImageFiles
from imagegen.vm.machine import Machine as Vm
from imagegen.vm.qmp import Event

REPO = Path(__file__).resolve().parents[1]
PLAN = plan_lab(load_profiles([REPO / "examples" / "laptop.toml"]).profile)
BOOT = time.time() - 100.0  # the simulated kernel's clock starts here


@dataclass
class Guest:
    """The laptop's bond as the kernel and systemd would show it, changed by what the lab does."""

    wired_link: bool = True
    wired_present: bool = True
    wireless_present: bool = True
    ap_up: bool = True
    blocked: bool = False  # the station radio's rfkill switch
    dhclient_bound_s: float = 41.4  # when dhclient logged its first lease, on the guest's clock
    switches: list[tuple[float, str]] = field(default_factory=list)
    probes: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    events: list[float] = field(default_factory=list)
    # The seed's units stopped by hand (systemctl stop), network.conf's ADDRS for the bond now, and the
    # addresses static@ applied when it last started.
    stopped: set[str] = field(default_factory=set)
    conf_addrs: list[str] = field(default_factory=lambda: ["192.168.0.2/24"])
    conf_backup: list[str] | None = None
    applied: list[str] = field(default_factory=lambda: ["192.168.0.2/24"])
    journal: list[str] = field(default_factory=list)
    dnsmasq: list[str] = field(default_factory=list)

    def on(self, unit: str) -> bool:
        return unit not in self.stopped

    def radio_up(self) -> bool:
        return (self.wireless_present and self.ap_up and not self.blocked
                and self.on(f"supplicant@{PLAN.wireless}.service"))

    def active(self) -> str | None:
        if not self.on(f"master@{PLAN.bond}.service"):
            return None
        if self.wired_link and self.wired_present:
            return PLAN.wired
        return PLAN.wireless if self.radio_up() else None

    def systemctl(self, verb: str, unit: str) -> None:
        """What systemd does to the seed's units: master@'s stop takes what requires it down first."""
        b = PLAN.bond
        bound = [f"dhclient@{b}.service", f"dhcp6c@{b}.service", f"static@{b}.service",
                 f"{PLAN.wired}@{b}.service", f"{PLAN.wireless}@{b}.service"]
        if verb in ("stop", "restart"):
            for u in ([*bound, unit] if unit == f"master@{b}.service" else [unit]):
                if self.on(u):
                    self.journal += [f"Stopping {u} - a unit...", f"Stopped {u} - a unit."]
                    if u.startswith("dhclient@"):
                        self.dnsmasq.append("DHCPRELEASE(br-ap) 192.168.0.77 52:54:00:12:34:01")
                    self.stopped.add(u)
            self.change()
        if verb in ("start", "restart"):
            for u in ([unit, *bound] if unit == f"master@{b}.service" else [unit]):
                self.stopped.discard(u)
                if u.startswith("static@"):
                    self.applied = list(self.conf_addrs)
            self.change()

    def change(self, **state: bool) -> None:
        before = self.active()
        for k, v in state.items():
            setattr(self, k, v)
        now = time.time()
        self.events.append(now)
        if self.active() != before and self.active() is not None:
            self.switches.append((now + 0.01, str(self.active())))

    def bonding(self) -> str:
        slaves = []
        if self.wired_present:
            slaves.append((PLAN.wired, "up" if self.wired_link else "down", WIRED_NIC.mac))
        if self.wireless_present:
            slaves.append((PLAN.wireless, "up" if self.radio_up() else "down", STATION_RADIO_MAC))
        text = (f"Bonding Mode: fault-tolerance (active-backup) (fail_over_mac {PLAN.fail_over_mac})\n"
                f"Primary Slave: {PLAN.primary} (primary_reselect always)\n"
                f"Currently Active Slave: {self.active() or 'None'}\nMII Status: up\nMII Polling Interval (ms): 100\n")
        for name, mii, mac in slaves:
            text += f"\nSlave Interface: {name}\nMII Status: {mii}\nLink Failure Count: 0\nPermanent HW addr: {mac}\n"
        return text

    def ip(self) -> str:
        mac = STATION_RADIO_MAC if self.active() == PLAN.wireless else WIRED_NIC.mac
        if not self.on(f"master@{PLAN.bond}.service"):
            return "[]"
        addrs: list[dict[str, Any]] = []
        if self.on(f"static@{PLAN.bond}.service"):
            addrs += [{"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1]),
                       "scope": "global"} for a in self.applied]
        if self.on(f"dhclient@{PLAN.bond}.service"):
            addrs.append({"family": "inet", "local": "192.168.0.77", "prefixlen": 24, "scope": "global",
                          "dynamic": True})
        if self.on(f"dhcp6c@{PLAN.bond}.service"):
            addrs.append({"family": "inet6", "local": "fd6c:6162:0:1::1d4", "prefixlen": 128, "scope": "global"})
        return json.dumps([{"ifname": PLAN.bond, "address": mac, "flags": ["UP"], "addr_info": addrs}])

    def unit(self, unit: str) -> str:
        if not self.on(unit):
            return "inactive/dead"
        if unit.startswith(f"{PLAN.wired}@"):
            return "active/exited" if self.wired_present else "inactive/dead"
        if unit.startswith(f"{PLAN.wireless}@"):
            return "active/exited" if self.wireless_present else "inactive/dead"
        if unit.startswith("supplicant@"):
            return "active/running" if self.wireless_present else "inactive/dead"
        return "active/running" if unit.startswith(("dhclient@", "dhcp6c@")) else "active/exited"

    def ping(self, name: str) -> str:
        """ping -D's lines: a reply every 20 ms, 100 ms without any after each change of the lab."""
        start, stop = self.probes[name]
        end = stop if stop is not None else time.time()
        lines, seq, t = [], 0, start
        while t < end:
            seq += 1
            if not any(e <= t < e + 0.1 for e in self.events):
                lines.append(f"[{t:.6f}] 64 bytes from 192.168.0.2: icmp_seq={seq} ttl=64 time=0.5 ms")
            t += 0.02
        if stop is not None:
            lines.append(f"{seq} packets transmitted, {len(lines)} received")
        return "\n".join(lines) + "\n"


class Agent:
    def __init__(self, guest: Guest) -> None:
        self.g = guest

    def time(self) -> float:
        return time.time()

    def read_file(self, path: str) -> bytes:
        raise AssertionError(path)

    def sh(self, script: str, timeout: float = 60.0) -> ExecResult:
        # Only the evidence of a failed scenario is collected so; the scenarios' commands come through exec.
        return ExecResult(("sh", "-c", script), 0, f"(evidence: {script})\n", "")

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        argv = tuple(argv)
        out = self._answer(argv)
        return ExecResult(argv, 0 if out is not None else 1, out or "", "" if out is not None else "no")

    def _answer(self, argv: tuple[str, ...]) -> str | None:
        g = self.g
        if argv == ("cat", f"/proc/net/bonding/{PLAN.bond}"):
            return g.bonding() if g.on(f"master@{PLAN.bond}.service") else None
        if argv == ("ip", "-j", "address", "show"):
            return g.ip()
        if argv[:2] == ("systemctl", "show"):
            units = argv[4:]
            return "\n\n".join(f"Id={u}\nActiveState={g.unit(u).split('/')[0]}\nSubState={g.unit(u).split('/')[1]}"
                               for u in units) + "\n"
        if argv[0] == "bash":
            now = time.time()
            lines = [f"[{t - BOOT:12.6f}] {PLAN.bond}: (slave {s}): making interface the new active one"
                     for t, s in g.switches]
            return "\n".join([*lines, f"[{now - BOOT:12.6f}] {CLOCK_MARK} {now:.6f}"]) + "\n"
        if argv[:4] == ("ip", "netns", "exec", "ap"):
            return "" if g.ap_up or g.active() == PLAN.wired else None  # ping from the AP's side
        assert argv[:2] == ("sh", "-c"), argv
        return self._shell(argv[2])

    def _shell(self, cmd: str) -> str | None:
        g = self.g
        if re.fullmatch(r"cat /sys/class/net/\S+/bonding/num_grat_arp \S+/peer_notif_delay", cmd):
            return f"{PLAN.num_grat_arp}\n{PLAN.peer_notif_delay}\n"
        if cmd.startswith("wpa_cli"):
            return "wpa_state=COMPLETED\n" if g.radio_up() else "wpa_state=SCANNING\n"
        if m := re.fullmatch(r"systemctl (stop|start|restart) ((?:dhclient|static|supplicant|master)@\S+)", cmd):
            g.systemctl(m[1], m[2])
            return ""
        if m := re.fullmatch(r'\. /etc/conf\.d/network\.conf && printf "%s" "\$bond0(ADDRS|ROUTES)"', cmd):
            return " ".join(g.conf_addrs) if m[1] == "ADDRS" else ""
        edit = r"""sed -i\.imagegen-lab "s\|\^bond0ADDRS=\.\*\|bond0ADDRS='([^']*)'\|" /etc/conf\.d/network\.conf"""
        if m := re.fullmatch(edit, cmd):
            g.conf_backup, g.conf_addrs = g.conf_addrs, m[1].split()
            return ""
        if cmd == "mv /etc/conf.d/network.conf.imagegen-lab /etc/conf.d/network.conf":
            assert g.conf_backup is not None
            g.conf_addrs, g.conf_backup = g.conf_backup, None
            return ""
        if cmd == (f"journalctl -b -u dhclient@{PLAN.bond}.service -o short-monotonic --no-pager --grep 'bound to' "
                   "| head -1"):
            bound = f"[{g.dhclient_bound_s:12.6f}] laptop dhclient[412]: bound to 192.168.0.77 -- renewal in 1717 s.\n"
            return bound if g.on(f"dhclient@{PLAN.bond}.service") else ""
        if cmd == "journalctl -b -u imagegen-lab-dnsmasq.service -o cat --no-pager":
            return "".join(f"{line}\n" for line in g.dnsmasq)
        if cmd == "journalctl -b -n 0 --show-cursor --no-pager":
            return f"-- cursor: s=1;i={len(g.journal)}\n"
        if m := re.fullmatch(r"journalctl -b -o cat --no-pager --after-cursor='s=1;i=(\d+)'", cmd):
            return "".join(f"{line}\n" for line in g.journal[int(m[1]):])
        if m := re.search(r"probe-(\S+)\.log\.pid; exec", cmd):
            g.probes[m[1]] = (time.time() - 2.0, None)
            return ""
        if m := re.fullmatch(r"cat /run/imagegen-lab/probe-(\S+)\.log", cmd):
            return g.ping(m[1])
        if m := re.search(r"kill -INT \$\(cat /run/imagegen-lab/probe-(\S+)\.log\.pid\)", cmd):
            g.probes[m[1]] = (g.probes[m[1]][0], time.time() + 1.0)
            return ""
        if cmd == f"cat /sys/class/net/{PLAN.wireless}/phy80211/name":
            return "phy0\n"
        switch = rf"/sys/class/net/{PLAN.wireless}/phy80211/rfkill\*/soft"
        if m := re.fullmatch(rf"for f in {switch}; do echo ([01]) > \$f; done", cmd):
            g.change(blocked=m[1] == "1")
            return ""
        if m := re.fullmatch(rf"grep -qx ([01]) {switch}", cmd):
            return "" if g.blocked == (m[1] == "1") else None
        if cmd == "ip netns add imagegen-card-shelf 2>/dev/null || [ -e /run/netns/imagegen-card-shelf ]":
            return ""
        if cmd in ("iw phy phy0 set netns name imagegen-card-shelf",
                   "ip netns exec imagegen-card-shelf iw phy phy0 set netns 1"):
            g.change(wireless_present=cmd.endswith(" 1"))
            return ""
        if cmd == f"iw dev {PLAN.wireless} del":
            g.change(wireless_present=False)
            return ""
        if cmd == f"iw phy phy0 interface add {PLAN.wireless} type managed":
            g.change(wireless_present=True)
            return ""
        if m := re.fullmatch(r"systemctl (stop|start) imagegen-lab-hostapd.service", cmd):
            g.change(ap_up=m[1] == "start")
            return ""
        raise AssertionError(f"the simulated guest does not know `{cmd}`")


class Qmp:
    def __init__(self, guest: Guest, power: Power) -> None:
        self.g = guest
        self.power = power

    def set_link(self, device: str, up: bool) -> float:
        sent = time.time()
        self.g.change(wired_link=up)
        return sent

    def device_del(self, device: str, timeout: float = 60.0) -> Event:
        self.g.change(wired_present=False)
        return Event("DEVICE_DELETED", time.time(), {"device": device})

    def device_add(self, props: dict[str, str]) -> float:
        self.g.change(wired_present=True, wired_link=True)
        return time.time()

    def devices(self) -> list[str]:
        return [n.id for n in LAB_NICS if n.id != WIRED_NIC.id or self.g.wired_present]

    def cmd(self, command: str, /, **args: Any) -> Any:
        assert command == "system_powerdown", command
        # systemd's stop order on the console, as the seed's units give it.
        b, w = PLAN.bond, PLAN.wireless
        lines = [f"Stopping dhclient@{b}.service", f"Stopped dhclient@{b}.service", f"Stopping dhcp6c@{b}.service",
                 f"Stopped dhcp6c@{b}.service", f"Stopped static@{b}.service", f"Stopping supplicant@{w}.service",
                 f"Stopping master@{b}.service", "reboot: Power down"]
        with self.power.serial_log.open("a") as f:
            f.write("".join(f"\x1b[0;1;39m[  OK  ] {line}\r\n" for line in lines))
        self.power.on = False
        return {}


class Power:
    """The QEMU process as the runner and the Machine see it."""

    exit_status = None

    def __init__(self, serial_log: Path) -> None:
        self.serial_log = serial_log
        self.sockets = types.SimpleNamespace(serial_log=serial_log)
        self.on = True
        self.launched_at = time.time() - 60.0

    @property
    def running(self) -> bool:
        return self.on

    def wait_exit(self, timeout: float | None) -> bool:
        return not self.on


def run_catalog(tmp_path: Path, names: tuple[str, ...], *, wired_link: bool = True, plan: LabPlan = PLAN,
                guest: Guest | None = None) -> dict[str, ScenarioResult]:
    guest = guest or Guest(wired_link=wired_link)
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    session = LabSession(Vm(files, accel="tcg", nics=LAB_NICS, run_dir=tmp_path / "run"), plan, "dhcp6c")
    session.artifacts = tmp_path / "artifacts"
    session.boot_seconds = 30.0
    session.wired_link_up = wired_link
    power = Power(tmp_path / "serial.log")
    power.serial_log.write_text("laptop login: \n")
    session.agent = Agent(guest)  # type: ignore[assignment]
    session.qmp = Qmp(guest, power)  # type: ignore[assignment]
    session.machine = power  # type: ignore[assignment]
    run = LabRun(PLAN, "dhcp6c", files, AccelChoice("tcg", "test"), Options(artifacts=session.artifacts),
                 ConsoleReport(Console(file=io.StringIO())))
    calls = CallLog(session.artifacts / CALL_LOG)
    machine, lab = bind(session, calls)
    for name in names:
        run._run_one(catalog.BY_NAME[name], session, (machine, lab), calls)
    return run.results


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenarios' settling pauses, skipped: the simulated lab settles at once."""
    monkeypatch.setattr(catalog, "time", types.SimpleNamespace(sleep=lambda s: None, time=time.time,
                                                               monotonic=time.monotonic))


MAIN = ("boot-wired-primary", "failover", "failback", "hotplug", "ap-lost", "rfkill", "dhclient-release", "static-edit",
        "supplicant-restart", "master-restart", "card-insert", "clean-shutdown")
# Every figure of a passing run of the laptop, by scenario (tests/test_vm_scenarios.py, docs/benchmarks.md
# and the JSON's readers know them by these names).
PROBE = ("probes_sent", "probes_lost", "gap_ms", "gap_from_qmp_ms", "largest_gap_ms")
FIGURES = {
    "boot-wired-primary": {"agent_ready_s", "active_slave_after_agent_s", "lease4_after_start_s"},
    "failover": {"backup_ready_wait_s", "clock_offset_uncertainty_ms", "switch_seen_after_qmp_s",
                 "failover_kernel_switch_from_qmp_ms", "failover_timeline",
                 *(f"failover_{f}" for f in PROBE), *(f"failover_v6_{f}" for f in PROBE)},
    "failback": {"clock_offset_uncertainty_ms", "switch_seen_after_qmp_s", "failback_kernel_switch_from_qmp_ms",
                 "failback_timeline", *(f"failback_{f}" for f in PROBE), *(f"failback_v6_{f}" for f in PROBE)},
    "hotplug": {"wired_replug_to_active_s", "radio_readd_to_associated_s"},
    "ap-lost": {"no_active_slave_after_s", "recovered_after_ap_restart_s"},
    "rfkill": {"backup_ready_wait_s", "no_active_slave_after_s", "unblock_to_active_s"},
    "card-insert": {"insert_to_associated_s"},
    "dhclient-release": {"static_probe_largest_gap_ms", "restart_to_lease_s"},
    "static-edit": set(),
    "supplicant-restart": {"backup_ready_wait_s", "start_to_associated_s"},
    "master-restart": {"teardown_s", "bring_up_s"},
    "clean-shutdown": {"powerdown_s"},
    "wifi-only-boot": {"agent_ready_s", "lease4_after_boot_s"},
}


def test_the_main_vm_s_scenarios_pass_on_a_lab_that_behaves(tmp_path: Path, no_sleep: None) -> None:
    results = run_catalog(tmp_path, MAIN)
    for name in MAIN:
        r = results[name]
        assert r.passed, (name, r.error, [c for c in r.checks if not c.ok])
        assert set(r.figures) == FIGURES[name], name
    failover = results["failover"]
    assert failover.figures["failover_timeline"] == "timeline-failover.svg"
    assert (tmp_path / "artifacts" / "timeline-failover.svg").is_file()
    assert (tmp_path / "artifacts" / "timeline-failback.svg").is_file()
    # The simulated switch is 10 ms after the QMP command; the outage is the 100 ms the lab gives it.
    assert 0 < failover.figures["failover_kernel_switch_from_qmp_ms"] < 100
    assert 90 <= failover.figures["failover_gap_ms"] <= 130
    names = [c.name for c in failover.checks]
    assert "set_link nic-wired off: active slave becomes wlp2s0" in names
    assert "IPv6 traffic to fd6c:6162:0:1::1d4 continues" in names
    log = (tmp_path / "artifacts" / CALL_LOG).read_text()
    assert "== failover: Failover (set_link wired off)" in log and "lab.wired(False)" in log


def test_the_wifi_only_boot_passes_and_a_scenario_run_alone_sets_up_what_it_needs(tmp_path: Path,
                                                                                   no_sleep: None) -> None:
    wifi = run_catalog(tmp_path / "wifi", ("wifi-only-boot",), wired_link=False)["wifi-only-boot"]
    assert wifi.passed, [c for c in wifi.checks if not c.ok]
    assert set(wifi.figures) == FIGURES["wifi-only-boot"]
    assert wifi.figures["lease4_after_boot_s"] == 41.4  # the guest's own clock, not when the scenario looked
    # A lease that came only long after the boot fails, however long after the scenario looks: its VM may
    # have booted beside the main VM's scenarios and be looked at only minutes later.
    late = run_catalog(tmp_path / "late", ("wifi-only-boot",), guest=Guest(wired_link=False, dhclient_bound_s=400.0))
    failed = [c for c in late["wifi-only-boot"].checks if not c.ok]
    assert [c.name for c in failed] == ["the lease came within the boot's time and 120 s (scaled)"]
    assert failed[0].detail == "dhclient@bond0.service bound 400.0 s after the kernel started (at most 150 s)"
    # failback alone first brings about the state a failover ends in (and waits for the backup).
    alone = run_catalog(tmp_path / "alone", ("failback",))["failback"]
    assert alone.passed, [c for c in alone.checks if not c.ok]
    assert set(alone.figures) == FIGURES["failback"] | {"backup_ready_wait_s"}


def test_the_operations_do_what_the_article_says_and_nothing_else(tmp_path: Path, no_sleep: None) -> None:
    ops = ("dhclient-release", "static-edit", "supplicant-restart", "master-restart")
    results = run_catalog(tmp_path, ops)
    names = {n: [c.name for c in results[n].checks] for n in ops}
    assert "the lab's DHCP server saw the release (DHCPRELEASE)" in names["dhclient-release"]
    assert "the same address for the same client" in names["dhclient-release"]
    # The spare fail-safe address: in the bond's /24, below the lab's DHCP range.
    assert "systemctl start static@bond0.service: the new address 192.168.0.127/24 is there" in names["static-edit"]
    assert "a failover afterwards: active slave becomes wlp2s0" in names["supplicant-restart"]
    assert "static@bond0.service stopped before master@bond0.service began to stop" in names["master-restart"]
    assert "supplicant@wlp2s0.service keeps running" in names["master-restart"]
    log = (tmp_path / "artifacts" / CALL_LOG).read_text()
    assert "machine.succeed `systemctl stop master@bond0.service`" in log and "lab.dhcp_log" in log


def test_a_static_unit_that_master_does_not_take_down_fails_the_teardown(tmp_path: Path, no_sleep: None) -> None:
    # An image whose static@ lacks master@'s RequiredBy=: stopping the master leaves it running.
    class Loose(Guest):
        def systemctl(self, verb: str, unit: str) -> None:
            super().systemctl(verb, unit)
            if verb == "stop" and unit.startswith("master@"):
                self.stopped.discard(f"static@{PLAN.bond}.service")
                self.journal = [line for line in self.journal if "static@" not in line]

    result = run_catalog(tmp_path, ("master-restart",), guest=Loose())["master-restart"]
    assert not result.passed
    failed = [c.name for c in result.checks if not c.ok]
    assert failed == ["systemctl stop master@bond0.service: static@bond0.service stopped",
                      "static@bond0.service stopped before master@bond0.service began to stop"], failed


def test_an_edit_that_fails_half_way_still_puts_network_conf_back(tmp_path: Path, no_sleep: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # static@ will not start on the edited file: the scenario fails there, and the file and the unit are
    # put back for the scenarios after it.
    real = Agent._shell
    tries: list[str] = []

    def refuses_once(self: Agent, cmd: str) -> str | None:
        if cmd == "systemctl start static@bond0.service" and not tries:
            tries.append(cmd)
            return None
        return real(self, cmd)
    monkeypatch.setattr(Agent, "_shell", refuses_once)
    guest = Guest()
    result = run_catalog(tmp_path, ("static-edit",), guest=guest)["static-edit"]
    assert not result.passed and tries
    assert result.checks[-1].name.startswith("machine: `systemctl start static@bond0.service` exited 1")
    assert guest.conf_addrs == ["192.168.0.2/24"] and guest.conf_backup is None
    assert guest.on("static@bond0.service") and guest.applied == ["192.168.0.2/24"]


def test_a_dhclient_that_does_not_release_fails_and_a_profile_without_dhcp_is_not_applicable(
        tmp_path: Path, no_sleep: None) -> None:
    class Silent(Guest):
        def systemctl(self, verb: str, unit: str) -> None:
            super().systemctl(verb, unit)
            self.dnsmasq.clear()  # stopped without `dhclient -r`: the server hears nothing

    silent = run_catalog(tmp_path / "silent", ("dhclient-release",), guest=Silent())["dhclient-release"]
    assert [c.name for c in silent.checks if not c.ok] == ["the lab's DHCP server saw the release (DHCPRELEASE)"]
    static_only = replace(PLAN, dhcp4=False, dhcp6=False)
    results = run_catalog(tmp_path / "static", ("dhclient-release", "static-edit"), plan=static_only)
    skipped = results["dhclient-release"]
    assert skipped.skipped and not skipped.passed and not skipped.checks
    assert skipped.error == "not applicable: bonds.bond0.dhcp4 is false: the bond has no DHCPv4 lease to release"
    assert results["static-edit"].passed, [c for c in results["static-edit"].checks if not c.ok]


def test_a_radio_that_stays_off_and_a_card_that_is_not_enslaved_fail(tmp_path: Path, no_sleep: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog.Machine, "poll", _quick_poll(catalog.Machine.poll))

    class Stuck(Guest):
        dead = False

        def radio_up(self) -> bool:
            return not self.dead and super().radio_up()

        def change(self, **state: bool) -> None:
            super().change(**state)
            if state.get("blocked") is False:
                self.dead = True  # unblocked, but the radio never comes back
            if state.get("wireless_present") is True:
                # The card is there again, but nothing wants its units: they stay stopped.
                self.dead = False
                self.stopped |= {f"supplicant@{PLAN.wireless}.service", f"{PLAN.wireless}@{PLAN.bond}.service"}

    results = run_catalog(tmp_path, ("rfkill", "card-insert"), guest=Stuck())
    assert [c.name for c in results["rfkill"].checks if not c.ok] == [
        "rfkill unblock: wlp2s0 active again without manual action"]
    failed = [c.name for c in results["card-insert"].checks if not c.ok]
    assert failed == ["card inserted: wlp2s0@bond0.service and supplicant@wlp2s0.service start by themselves",
                      "wlp2s0 is enslaved with its link up (associated)"], failed


def test_a_bond_that_does_not_switch_fails_the_failover_with_its_checks(tmp_path: Path, no_sleep: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A radio whose AP is gone: the wired link cut leaves the bond with no active slave.
    monkeypatch.setattr(Guest, "active", lambda self: PLAN.wired if self.wired_link else None)
    monkeypatch.setattr(catalog.Machine, "poll", _quick_poll(catalog.Machine.poll))
    result = run_catalog(tmp_path, ("failover",))["failover"]
    assert not result.passed and result.error is None
    failed = [c.name for c in result.checks if not c.ok]
    assert failed[0] == "set_link nic-wired off: active slave becomes wlp2s0"
    assert any("MAC follows fail_over_mac=active" in f for f in failed), failed


def _quick_poll(poll: Any) -> Any:
    """Polls bounded to a second, so that a condition that never holds fails fast."""
    def quick(self: Any, condition: Any, timeout: float, **kw: Any) -> Any:
        return poll(self, condition, min(timeout, 1.0), **kw)
    return quick


def test_a_call_that_fails_outside_a_check_is_the_scenario_s_failed_check(tmp_path: Path, no_sleep: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # hostapd will not stop: `systemctl stop` exits 1 under lab.ap(False).
    real = Agent._shell

    def stubborn(self: Agent, cmd: str) -> str | None:
        return None if cmd.startswith("systemctl stop imagegen-lab-hostapd") else real(self, cmd)
    monkeypatch.setattr(Agent, "_shell", stubborn)
    result = run_catalog(tmp_path, ("ap-lost",))["ap-lost"]
    assert not result.passed and result.error is None
    last = result.checks[-1]
    assert not last.ok and last.name.startswith("machine: `systemctl stop imagegen-lab-hostapd.service` exited 1")
    assert "stderr:" in last.detail
