"""The lab's network as a test drives it: the wired NIC's link and its presence, the station's radio, the
access point, an outage probe, and a shell on the other side of the bond (the peer).

Thin, typed wrappers over the LabSession the built-in scenarios use: the same QMP commands and guest
commands, each logged as a call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from imagegen.errors import ImagegenError
from imagegen.scenarios.probe import ProbeResult
from imagegen.scenarios.session import LabSession
from imagegen.testing.calls import CallLog
from imagegen.testing.errors import TestFailure
from imagegen.testing.machine import Machine, Peer
from imagegen.vm.lab import AP_NETNS, HOSTAPD_UNIT, LabPlan


@dataclass(frozen=True)
class Outage:
    """What the probe saw around one event: the figures the failover scenarios report."""

    sent: int
    lost: int
    gap_ms: float  # the largest gap between replies that overlaps the event
    gap_from_event_ms: float | None  # where that gap begins, relative to the event (guest clock)
    largest_gap_ms: float  # the largest gap of the whole probe
    recovered: bool  # replies had come back before the probe stopped


class Probe:
    """A ping every 20 ms from the AP's namespace to the bond, until stop(); a context manager.

        with lab.probe() as probe:
            t = lab.wired(False)
            machine.wait_until_succeeds("grep -q 'Active Slave: wlp2s0' /proc/net/bonding/bond0", 30)
        assert probe.outage(t).gap_ms < 3000
    """

    def __init__(self, session: LabSession, calls: CallLog, name: str, target: str) -> None:
        self._session = session
        self._calls = calls
        self.name = name
        self.target = target
        self.result: ProbeResult | None = None
        with calls.call(f"lab.probe {target}") as c:
            session.start_probe(name, target=target)
            # Guest wall clock minus host wall clock: events are stamped on the host, replies in the guest.
            self.clock_offset, _ = session.clock_offset()
            c.detail = f"replies flowing (probe {name})"

    def stop(self) -> ProbeResult:
        """Stop pinging; returns every reply's time and the gaps (imagegen.scenarios.probe)."""
        if self.result is None:
            with self._calls.call(f"lab.probe {self.target} stop") as c:
                self.result = self._session.stop_probe(self.name)
                c.detail = f"{self.result.received}/{self.result.sent} replies, largest gap {self.result.gap_ms} ms"
        return self.result

    def outage(self, event: float, settle: float = 1.0) -> Outage:
        """The outage around an event at host wall-clock time `event` (what lab.wired() returns): the
        largest gap between replies within half a second before it and settle + 1 s after it."""
        result = self.stop()
        at = event + self.clock_offset
        gap, start = result.gap_around(at - 0.5, at + settle + 1.0)
        return Outage(sent=result.sent, lost=result.lost, gap_ms=gap,
                      gap_from_event_ms=round((start - at) * 1000, 1) if start is not None else None,
                      largest_gap_ms=result.gap_ms, recovered=result.recovered)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Lab:
    """The hardware and the network around the VM."""

    def __init__(self, session: LabSession, calls: CallLog) -> None:
        self._session = session
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
    def dhcp6_unit(self) -> str:
        """The image's DHCPv6 client template: "dhcp6c" (WIDE, the article's) or "dhclient6" (Arch)."""
        return self._session.dhcp6_unit

    def timeout(self, seconds: float) -> float:
        """seconds scaled to this host: multiplied by how much longer than 30 s the VM took to boot to
        its guest agent (at least 1). The built-in scenarios size their waits so."""
        return self._session.timeout(seconds)

    def wired(self, up: bool) -> float:
        """Set the wired NIC's link (QMP set_link), as a cable pulled or plugged; returns the host
        wall-clock time just before the command went out."""
        with self._calls.call(f"lab.wired({up})"):
            return self._session.set_wired_link(up)

    def unplug_wired(self, timeout: float = 60.0) -> None:
        """Hot-unplug the wired NIC (QMP device_del) and wait until the guest has let it go."""
        nic = self.plan.wired_nic
        with self._calls.call(f"lab.unplug_wired {nic.id}"):
            self._session.qmp.device_del(nic.id, timeout=timeout)

    def plug_wired(self) -> None:
        """Plug the wired NIC back in (QMP device_add); its link starts up."""
        nic = self.plan.wired_nic
        with self._calls.call(f"lab.plug_wired {nic.id}"):
            self._session.qmp.device_add(nic.device_args())
            self._session.wired_link_up = True

    def remove_radio(self) -> None:
        """Remove the station's wireless interface, as unplugging the card does to the network stack."""
        w = self.plan.wireless
        with self._calls.call(f"lab.remove_radio {w}"):
            self._phy = self._session.sh(f"cat /sys/class/net/{w}/phy80211/name").strip()
            self._session.sh(f"iw dev {w} del")

    def add_radio(self) -> None:
        """Add the station's wireless interface back on its radio (after remove_radio)."""
        w = self.plan.wireless
        with self._calls.call(f"lab.add_radio {w}"):
            if self._phy is None:
                raise TestFailure("add_radio: no radio was removed (call remove_radio first)")
            self._session.sh(f"iw phy {self._phy} interface add {w} type managed")

    def ap(self, up: bool) -> None:
        """Start or stop the access point (the lab's hostapd)."""
        with self._calls.call(f"lab.ap({up})"):
            self._session.sh(f"systemctl {'start' if up else 'stop'} {HOSTAPD_UNIT}")

    def probe(self, target: str | None = None, family: int = 4) -> Probe:
        """Start pinging target (default: the bond's static address of that family, else for IPv6 its
        DHCPv6 one) from the AP's side every 20 ms; returns the running Probe."""
        if family not in (4, 6):
            raise ValueError(f"family {family}: use 4 or 6")
        if target is None:
            target = self.plan.probe_target() if family == 4 else self._session.probe_target6()
            if target is None:
                raise TestFailure(f"{self.plan.bond} has no IPv6 address to probe")
        self._probes += 1
        return Probe(self._session, self._calls, f"user-{self._probes}-{int(time.time())}", target)


def bind(session: LabSession, calls: CallLog) -> tuple[Machine, Lab]:
    """The Machine and the Lab of a booted lab session, their calls logged to calls."""
    if session.artifacts is None:
        raise ImagegenError("the lab session has no artifacts directory")
    machine = Machine(session.agent, session.qmp, session.machine, calls,
                      serial_log=session.machine.sockets.serial_log, artifacts=session.artifacts)
    return machine, Lab(session, calls)
