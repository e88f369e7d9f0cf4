"""The lab's network as a test drives it: the wired NIC's link and its presence, the station's radio, the
access point, an outage probe and its timeline, and a shell on the other side of the bond (the peer).

The hardware is driven through QMP (the lab session's plumbing), the guest through the Machine's own
calls, so that every step is in the call log.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imagegen.report.timeline import KernelMark, Timeline, plot_timeline
from imagegen.scenarios.probe import ProbeResult, parse_ping
from imagegen.scenarios.session import Expected, LabSession
from imagegen.testing.calls import CallLog
from imagegen.testing.errors import TestFailure
from imagegen.testing.machine import ClockOffset, Machine, Peer
from imagegen.vm.lab import AP_NETNS, AUTHENTICATOR_CTRL, DNSMASQ_UNIT, HOSTAPD_UNIT, LAB_RUN, UPLINK_IFNAME, LabPlan

PROBE_INTERVAL_MS = 20
# Where a removed wireless card waits (Lab.remove_card): a network namespace of the lab's own.
CARD_SHELF = "imagegen-card-shelf"


@dataclass(frozen=True)
class Outage:
    """What the probe saw around one event: the figures the failover scenarios report."""

    sent: int
    lost: int
    gap_ms: float  # the largest gap between replies that overlaps the event
    gap_from_event_ms: float | None  # where that gap begins, relative to the event (guest clock)
    largest_gap_ms: float  # the largest gap of the whole probe
    recovered: bool  # replies had come back before the probe stopped
    received: int = 0


class Probe:
    """A ping every 20 ms from the AP's namespace to the bond, until stop(); a context manager.

        with lab.probe() as probe:
            t = lab.wired(False)
            machine.wait_until_succeeds("grep -q 'Active Slave: wlp2s0' /proc/net/bonding/bond0", 30)
        assert probe.outage(t).gap_ms < 3000
    """

    def __init__(self, machine: Machine, calls: CallLog, name: str, target: str, seconds: int = 600) -> None:
        self._machine = machine
        self._calls = calls
        self.name = name
        self.target = target
        self.result: ProbeResult | None = None
        self._log = f"{LAB_RUN}/probe-{name}.log"
        with calls.call(f"lab.probe {target} ({name})") as c:
            ping = (f"ip netns exec {AP_NETNS} ping -D -n -O -i {PROBE_INTERVAL_MS / 1000} -w {seconds} "
                    f"{shlex.quote(target)}")
            # Detached from guest-exec's pipes (it waits for them to close), its pid kept for the stop.
            machine.succeed(f"mkdir -p {LAB_RUN}; setsid sh -c 'echo $$ > {self._log}.pid; exec {ping}' "
                            f"</dev/null >{self._log} 2>&1 &", timeout=60)
            # The first replies, so that an outage is measured against a running probe.
            flowing = machine.poll(lambda: "bytes from" in self.text(), 30, what=f"replies to probe {name}")
            # Events are stamped on the host, replies in the guest.
            self.clock: ClockOffset = machine.clock_offset()
            c.detail = "replies flowing" if flowing else f"no reply after {flowing.seconds:.0f} s"

    @property
    def clock_offset(self) -> float:
        """The guest's wall clock minus the host's when the probe started, in seconds (clock.seconds)."""
        return self.clock.seconds

    def text(self) -> str:
        """The probe's output so far: ping -D's lines."""
        return self._machine.execute(f"cat {self._log}", timeout=30)[1]

    def stop(self) -> ProbeResult:
        """Stop pinging; returns every reply's time and the gaps (imagegen.scenarios.probe.ProbeResult).
        Later calls return the same result."""
        if self.result is None:
            with self._calls.call(f"lab.probe {self.target} ({self.name}) stop") as c:
                pid = f"$(cat {self._log}.pid)"
                # SIGINT: ping prints its summary line on the way out.
                self._machine.succeed(f"kill -INT {pid} 2>/dev/null; while kill -0 {pid} 2>/dev/null; "
                                      "do sleep 0.1; done; true", timeout=30)
                self.result = parse_ping(self.text(), PROBE_INTERVAL_MS)
                c.detail = f"{self.result.received}/{self.result.sent} replies, largest gap {self.result.gap_ms} ms"
        return self.result

    def outage(self, event: float, settle: float = 1.0, *, clock: ClockOffset | None = None) -> Outage:
        """The outage around an event at host wall-clock time `event` (what lab.wired() returns): the
        largest gap between replies within half a second before it and settle + 1 s after it. The event
        is put on the guest's clock with `clock` (default: the offset measured when the probe started);
        measure it just before the event for the smallest error."""
        result = self.stop()
        at = (clock or self.clock).guest(event)
        gap, start = result.gap_around(at - 0.5, at + settle + 1.0)
        return Outage(sent=result.sent, lost=result.lost, gap_ms=gap,
                      gap_from_event_ms=round((start - at) * 1000, 1) if start is not None else None,
                      largest_gap_ms=result.gap_ms, recovered=result.recovered, received=result.received)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Lab:
    """The hardware and the network around the VM."""

    def __init__(self, session: LabSession, machine: Machine, calls: CallLog) -> None:
        self._session = session
        self._machine = machine
        self._calls = calls
        self._phy: str | None = None
        self._probes = 0
        self.peer = Peer(session.agent, calls, name="peer", prefix=("ip", "netns", "exec", AP_NETNS),
                         alive=lambda: session.machine.running)

    @property
    def plan(self) -> LabPlan:
        """Who plays what: the bond's and the members' names, addresses, the AP."""
        return self._session.plan

    @property
    def expected(self) -> Expected:
        """The units the profile implies (supplicant, DHCP clients, the bond's master, slave and static
        units), as `systemctl list-units` names them: .running, .exited and .all."""
        return self._session.expected

    @property
    def boot_seconds(self) -> float:
        """Seconds from the VM's start until its guest agent answered."""
        return self._session.boot_seconds

    def timeout(self, seconds: float) -> float:
        """seconds, scaled to how fast this host runs the lab: boots slower than 30 s (an emulated guest)
        scale every bound by boot time / 30 s."""
        return self._session.timeout(seconds)

    # The wired NIC.

    @property
    def wired_link_up(self) -> bool:
        """Whether the wired NIC's link is up, as the lab last set it (a replugged NIC's starts up)."""
        return self._session.wired_link_up

    def wired(self, up: bool) -> float:
        """Set the wired NIC's link (QMP set_link), as a cable pulled or plugged; returns the host
        wall-clock time just before the command went out."""
        with self._calls.call(f"lab.wired({up})"):
            return self._session.set_wired_link(up)

    def member_link(self, name: str, up: bool) -> float:
        """Set the link of the NIC that plays interface `name` (QMP set_link): the wired NIC (as wired()
        does) or a member of the profile's second bond. Returns the host wall-clock time just before the
        command went out."""
        p = self.plan
        if name == p.wired:
            return self.wired(up)
        nics = p.second.nics if p.second else {}
        if name not in nics:
            raise TestFailure(f"lab.member_link: no lab NIC plays {name}; the lab's NICs play "
                              f"{', '.join([p.wired, *nics])}")
        with self._calls.call(f"lab.member_link({name}, {up})"):
            return self._session.qmp.set_link(nics[name].id, up)

    def unplug_wired(self, timeout: float = 60.0) -> float:
        """Hot-unplug the wired NIC (QMP device_del) and wait until the guest has let it go
        (DEVICE_DELETED); returns that event's host time."""
        nic = self.plan.wired_nic
        with self._calls.call(f"lab.unplug_wired {nic.id}") as c:
            event = self._session.qmp.device_del(nic.id, timeout=timeout)
            c.detail = f"DEVICE_DELETED at {event.time:.3f}"
            return event.time

    def plug_wired(self) -> float:
        """Plug the wired NIC back in (QMP device_add); its link starts up. Returns the host time after
        the command."""
        nic = self.plan.wired_nic
        with self._calls.call(f"lab.plug_wired {nic.id}"):
            added = self._session.qmp.device_add(nic.device_args())
            self._session.wired_link_up = True
            return added

    def devices(self) -> list[str]:
        """The ids of the devices plugged into the VM now (QOM), e.g. whether the wired NIC is there."""
        with self._calls.call("lab.devices") as c:
            ids = self._session.qmp.devices()
            c.detail = ", ".join(ids)
            return ids

    # The station's radio and the access point.

    def remove_radio(self) -> None:
        """Remove the station's wireless interface, as unplugging the card does to the network stack."""
        w = self.plan.radio
        with self._calls.call(f"lab.remove_radio {w}"):
            self._phy = self._machine.succeed(f"cat /sys/class/net/{w}/phy80211/name").strip()
            self._machine.succeed(f"iw dev {w} del")

    def add_radio(self) -> None:
        """Add the station's wireless interface back on its radio (after remove_radio)."""
        w = self.plan.radio
        with self._calls.call(f"lab.add_radio {w}"):
            if self._phy is None:
                raise TestFailure("add_radio: no radio was removed (call remove_radio first)")
            self._machine.succeed(f"iw phy {self._phy} interface add {w} type managed")

    def rfkill(self, block: bool) -> None:
        """Block or unblock the station's radio (its rfkill switch, soft), as `rfkill block` does."""
        w = self.plan.radio
        with self._calls.call(f"lab.rfkill({'block' if block else 'unblock'}) {w}"):
            self._machine.succeed(f"for f in /sys/class/net/{w}/phy80211/rfkill*/soft; do echo {int(block)} > $f; done",
                                  f"grep -qx {int(block)} /sys/class/net/{w}/phy80211/rfkill*/soft")

    def remove_card(self) -> None:
        """Take the station's wireless card out: its radio (the wiphy) and its interface leave the machine,
        moved into a network namespace of the lab's own, where the guest's systemd does not see them."""
        w = self.plan.radio
        with self._calls.call(f"lab.remove_card {w}"):
            self._phy = self._machine.succeed(f"cat /sys/class/net/{w}/phy80211/name").strip()
            self._machine.succeed(f"ip netns add {CARD_SHELF} 2>/dev/null || [ -e /run/netns/{CARD_SHELF} ]",
                                  f"iw phy {self._phy} set netns name {CARD_SHELF}")

    def insert_card(self) -> None:
        """Put the wireless card back in (after remove_card): a radio and its interface appear, as when a
        configured card is inserted."""
        w = self.plan.radio
        with self._calls.call(f"lab.insert_card {w}"):
            if self._phy is None:
                raise TestFailure("insert_card: no card was removed (call remove_card first)")
            self._machine.succeed(f"ip netns exec {CARD_SHELF} iw phy {self._phy} set netns 1")

    def ap(self, up: bool) -> None:
        """Start or stop the access point (the lab's hostapd)."""
        with self._calls.call(f"lab.ap({up})"):
            self._machine.succeed(f"systemctl {'start' if up else 'stop'} {HOSTAPD_UNIT}")

    def switch_port(self, mac: str) -> dict[str, str]:
        """What the lab's 802.1X switch port (hostapd's wired driver on the wired NIC's cable, for a wired
        member with a supplicant) knows of station `mac`, as `hostapd_cli sta` prints it: e.g.
        {"flags": "[AUTHORIZED]", "dot1xAuthSessionUserName": "alice", "dot1xAuthBackendAuthFails": "0"}.
        Empty: the port has not seen the station (or the lab has no such port)."""
        with self._calls.call(f"lab.switch_port({mac})") as c:
            status, out = self._machine.execute(
                f"hostapd_cli -p {AUTHENTICATOR_CTRL} -i {UPLINK_IFNAME} sta {shlex.quote(mac)}", timeout=30)
            found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if status == 0 else {}
            c.detail = f"flags {found.get('flags', '?')}" if found else "station not known"
            return found

    def dhcp_log(self) -> str:
        """The lab's DHCP server's log of this boot (dnsmasq in netns ap, log-dhcp): one line per
        message it saw, e.g. "DHCPRELEASE(br-ap) 192.168.0.177 52:54:00:12:34:01"."""
        with self._calls.call("lab.dhcp_log") as c:
            text = self._machine.succeed(f"journalctl -b -u {DNSMASQ_UNIT} -o cat --no-pager", timeout=60)
            c.detail = f"{len(text.splitlines())} lines"
            return text

    # The bond's addresses, the probe and its timeline.

    def leases(self, family: int = 4) -> list[str]:
        """The bond's addresses of that family that DHCP gave ("ADDRESS/PREFIX"): for IPv4 the dynamic
        ones; for IPv6 the global ones that are not static (WIDE dhcp6c adds its address with infinite
        kernel lifetimes and expires the lease itself, so "dynamic" does not tell them apart)."""
        if family not in (4, 6):
            raise ValueError(f"family {family}: use 4 or 6")
        with self._calls.call(f"lab.leases({family})") as c:
            link = self._machine.link(self.plan.bond)
            if link is None:
                found = []
            elif family == 4:
                found = [str(a) for a in link.with_family(4, dynamic=True)]
            else:
                static = {str(a.ip) for a in self.plan.static6}
                found = [str(a) for a in link.with_family(6) if a.address not in static]
            c.detail = ", ".join(found) or "none"
            return found

    def probe_target(self, family: int = 4) -> str | None:
        """The bond's address the probe pings by default: its static address of that family, else for
        IPv6 its DHCPv6 one; None if it has none."""
        if family == 4:
            return str(self.plan.static4[0].ip) if self.plan.static4 else None
        if family != 6:
            raise ValueError(f"family {family}: use 4 or 6")
        if self.plan.static6:
            return str(self.plan.static6[0].ip)
        dynamic = self.leases(6)
        return dynamic[0].split("/")[0] if dynamic else None

    def probe(self, target: str | None = None, family: int = 4, *, name: str | None = None) -> Probe:
        """Start pinging target (default: probe_target(family)) from the AP's side every 20 ms; returns
        the running Probe once replies flow. name names its log in the guest (default: a unique one)."""
        if family not in (4, 6):
            raise ValueError(f"family {family}: use 4 or 6")
        if target is None:
            target = self.probe_target(family)
            if target is None:
                raise TestFailure(f"{self.plan.bond} has no IPv{family} address to probe")
        self._probes += 1
        return Probe(self._machine, self._calls, name or f"user-{self._probes}-{int(time.time())}", target)

    def timeline(self, name: str, probe: Probe, event: float, *, clock: ClockOffset | None = None,
                 marks: tuple[KernelMark, ...] = ()) -> Path:
        """Draw the probe's replies and gaps around the event at host time `event`, with the kernel's
        marks (machine.kernel_marks), into artifacts/timeline-NAME.svg; returns the file."""
        with self._calls.call(f"lab.timeline {name}") as c:
            result = probe.stop()
            at = (clock or probe.clock).guest(event)
            title = f"{name}: {self.plan.bond}, probe from netns {AP_NETNS} to {probe.target}"
            path = plot_timeline(Timeline(title, result.interval_ms, result.reply_times, at, marks,
                                          unanswered_until=result.unanswered_until),
                                 self._machine.artifacts / f"timeline-{name}.svg")
            c.detail = path.name
            return path
