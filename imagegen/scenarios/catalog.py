"""The seventeen scenarios of the lab, written on the public test API (imagegen.testing, docs/testing-api.md)
as a user's check would be: each is a function of the booted `machine`, the `lab` around it and the
`results` it records its named checks and figures in. They read like the seed's "check the results":
list the units, cat /proc/net/bonding, look at ip address.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagegen.scenarios.bonding import BondStatus
from imagegen.testing import (
    AgentError,
    ClockOffset,
    Lab,
    LabPlan,
    Machine,
    NotApplicable,
    Outage,
    Polled,
    Probe,
    Results,
    TestFailure,
)

ScenarioFn = Callable[[Machine, Lab, Results], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: ScenarioFn
    # Each top-level Machine and Lab call also recorded as a passed check (a user's test function, whose
    # result would otherwise list nothing it did).
    calls_as_checks: bool = False
    # The lab shapes (LabPlan.kind) the scenario proves something of: most need the seed's bond with its
    # radio; a profile of another shape reports them not applicable without booting for them.
    shapes: tuple[str, ...] = ("bond",)
    # Only for a profile with a second master beside the one the lab plays (LabPlan.second).
    needs_second: bool = False
    # Only for a profile whose wired member runs a supplicant (LabPlan.wired_auth).
    needs_wired_auth: bool = False

    def applies(self, plan: LabPlan) -> bool:
        return (plan.kind in self.shapes and (plan.second is not None or not self.needs_second)
                and (plan.wired_auth is not None or not self.needs_wired_auth))


# What the scenarios say about the bond, in its own words.

def _active(b: BondStatus | None) -> str:
    if b is None:
        return "no bond"
    return f"active slave {b.active or 'none'}"


def _now_active(machine: Machine, lab: Lab) -> str:
    return _active(machine.bond(lab.plan.bond))


def _members(machine: Machine, lab: Lab) -> str:
    """The master and its members as the kernel has them, in words: a bond's active and other slaves, a
    bridge's ports with their state."""
    p = lab.plan
    if p.kind != "bridge":
        b = machine.bond(p.bond)
        return f"{_active(b)}, slaves {', '.join(s.name for s in b.slaves) or 'none'}" if b else "no bond"
    status, out = machine.execute(
        f"cd /sys/class/net/{p.bond}/brif && for port in *; do [ -e \"$port\" ] || continue; "
        "echo \"$port $(cat \"$port/state\")\"; done", timeout=30)
    if status != 0:
        return f"no bridge {p.bond}"
    states = {"0": "disabled", "1": "listening", "2": "learning", "3": "forwarding", "4": "blocking"}
    ports = [f"{name} {states.get(state, state)}" for name, _, state in
             (line.partition(" ") for line in out.splitlines() if line.strip())]
    return f"bridge {p.bond}, ports {', '.join(ports) or 'none'}"


def _bridge_port(machine: Machine, lab: Lab, timeout: float) -> Polled[str]:
    """Wait until the wired NIC is a port of the bridge, forwarding (state 3: no STP holds it back)."""
    p = lab.plan
    def forwarding() -> str | None:
        status, out = machine.execute(f"cat /sys/class/net/{p.bond}/brif/{p.wired}/state", timeout=30)
        return out.strip() if status == 0 and out.strip() == "3" else None
    return machine.poll(forwarding, timeout, interval=0.2, what=f"{p.wired} forwarding in {p.bond}")


def _on_slave(machine: Machine, lab: Lab, slave: str | None, timeout: float) -> Polled[BondStatus]:
    """Wait until the bond's active slave is `slave` (None: no active slave)."""
    def active_is() -> BondStatus | None:
        b = machine.bond(lab.plan.bond)
        return b if b is not None and b.active == slave else None
    return machine.poll(active_is, timeout, interval=0.2, what=f"active slave {slave or 'none'}")


def _units_reach(machine: Machine, wants: dict[str, str], timeout: float) -> tuple[dict[str, str], float]:
    """Wait until every unit is in its state ('active/running', or only the first half: 'inactive');
    the states last seen and the seconds waited."""
    def reached() -> dict[str, str] | None:
        got = machine.unit_states(*wants)
        ok = all(got[u] == want or got[u].split("/")[0] == want for u, want in wants.items())
        return got if ok else None
    polled = machine.poll(reached, timeout, interval=1.0, what="unit states")
    return (polled.value if polled.value is not None else machine.unit_states(*wants)), polled.seconds


def _first_logged_s(machine: Machine, unit: str, pattern: str) -> float | None:
    """When unit first logged a line matching pattern in this boot, in seconds of the guest's monotonic
    clock (from its kernel's start): a time the guest kept, whenever the scenario came to ask."""
    line = machine.succeed(f"journalctl -b -u {shlex.quote(unit)} -o short-monotonic --no-pager "
                           f"--grep {shlex.quote(pattern)} | head -1", timeout=30)
    found = re.match(r"\[\s*([0-9.]+)\]", line.strip())
    return float(found.group(1)) if found else None


def _addresses4(machine: Machine, lab: Lab) -> set[str]:
    link = machine.link(lab.plan.bond)
    return {str(a) for a in link.with_family(4)} if link else set()


def _station_mac(machine: Machine, lab: Lab) -> str:
    """The radio's own (permanent) MAC: with fail_over_mac=none the bond rewrites the current one."""
    p = lab.plan
    b = machine.bond(p.bond)
    slave = b.slave(p.radio) if b else None
    if slave is not None and slave.permanent_mac:
        return slave.permanent_mac
    return machine.succeed(f"cat /sys/class/net/{p.radio}/address", timeout=30).strip().lower()


def _peer_reaches(lab: Lab, target: str, count: int = 3) -> bool:
    status, _ = lab.peer.execute(f"ping -n -c {count} -W 2 {target}", timeout=30)
    return status == 0


def _wpa_completed(machine: Machine, ifname: str) -> bool:
    status, out = machine.execute(f"wpa_cli -i {ifname} status", timeout=30)
    return status == 0 and "wpa_state=COMPLETED" in out


def _wlan_link(machine: Machine, lab: Lab, mii: str) -> BondStatus | None:
    """The bond when the radio is its slave with MII status mii ("up": associated), else None."""
    b = machine.bond(lab.plan.bond)
    s = b.slave(lab.plan.radio) if b else None
    return b if s is not None and s.mii_status == mii else None


def _reached(machine: Machine, lab: Lab, target: str) -> Polled[bool]:
    """Wait until the AP reaches target (one ping at a time)."""
    return machine.poll(lambda: _peer_reaches(lab, target, count=1), lab.timeout(30), what=f"the AP reaching {target}")


def _peer_reaches_again(machine: Machine, lab: Lab, results: Results, name: str) -> None:
    results.check(name, bool(_reached(machine, lab, lab.plan.probe_target())), "ping")


# The probe's figures, named as the benchmarks and the JSON's readers know them.

def _outage_figures(results: Results, prefix: str, outage: Outage) -> None:
    results.figure(f"{prefix}_probes_sent", outage.sent)
    results.figure(f"{prefix}_probes_lost", outage.lost)
    results.figure(f"{prefix}_gap_ms", outage.gap_ms)
    if outage.gap_from_event_ms is not None:
        # Where that gap begins relative to the QMP command, on the guest's clock.
        results.figure(f"{prefix}_gap_from_qmp_ms", outage.gap_from_event_ms)
    results.figure(f"{prefix}_largest_gap_ms", outage.largest_gap_ms)


def _traffic_detail(outage: Outage) -> str:
    tail = "" if outage.recovered else ", not over when the probe stopped"
    return f"{outage.received}/{outage.sent} replies, {outage.lost} lost, outage {outage.gap_ms} ms{tail}"


def _probe6(lab: Lab, results: Results, prefix: str) -> Probe | None:
    """Probe the bond's IPv6 address too, beside the IPv4 one: after a switch the peer must also learn
    the new MAC for it (unsolicited neighbour advertisements)."""
    target = lab.probe_target(6)
    if target is None:
        results.figure(f"{prefix}_v6_probe", "none: the bond has no global IPv6 address")
        return None
    return lab.probe(target, 6, name=f"{prefix}-v6")


def _check_probe6(results: Results, prefix: str, probe: Probe | None, event: float, switch_s: float,
                  clock: ClockOffset) -> None:
    if probe is None:
        return
    outage = probe.outage(event, switch_s, clock=clock)
    _outage_figures(results, f"{prefix}_v6", outage)
    results.check(f"IPv6 traffic to {probe.target} continues",
                  probe.stop().replies_after(clock.guest(event) + switch_s), _traffic_detail(outage))


def _timeline(machine: Machine, lab: Lab, results: Results, prefix: str, probe: Probe, event: float,
              clock: ClockOffset) -> None:
    """Draw the event's timeline into the artifacts directory, with the kernel's switch marks."""
    try:
        marks = machine.kernel_marks(lab.plan.bond)
    except (TestFailure, AgentError):
        marks = ()  # the picture without the kernel's marks still shows the outage
    at = clock.guest(event)
    switches = [m for m in marks if m.kind == "active" and m.time >= at - 0.5]
    if switches:
        results.figure(f"{prefix}_kernel_switch_from_qmp_ms", round((switches[0].time - at) * 1000, 1))
    path = lab.timeline(prefix, probe, event, clock=clock, marks=marks)
    results.figure(f"{prefix}_timeline", path.name)


# 1. Boot, wired primary.

def boot_wired_primary(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    results.figure("agent_ready_s", round(lab.boot_seconds, 1))
    want = p.primary or p.wired
    on = _on_slave(machine, lab, want, lab.timeout(120))
    results.require(f"{p.bond} exists with active slave {want}", bool(on),
                    f"after {on.seconds:.0f} s: {_now_active(machine, lab)}")
    bond = on.value
    assert bond is not None
    results.figure("active_slave_after_agent_s", round(on.seconds, 1))
    results.check("bonding mode is active-backup", bond.mode == "active-backup", bond.mode)
    results.check(f"fail_over_mac is {p.fail_over_mac}", bond.fail_over_mac == p.fail_over_mac, bond.fail_over_mac)
    results.check(f"primary slave is {p.primary}", bond.primary == p.primary, str(bond.primary))
    sysfs = f"/sys/class/net/{p.bond}/bonding"
    out = machine.succeed(f"cat {sysfs}/num_grat_arp {sysfs}/peer_notif_delay", timeout=30)
    held = dict(zip(("num_grat_arp", "peer_notif_delay"), (line.strip() for line in out.splitlines()), strict=False))
    results.check(f"peer notifications after a switch: {p.num_grat_arp}, {p.peer_notif_delay} ms apart",
                  held == {"num_grat_arp": str(p.num_grat_arp), "peer_notif_delay": str(p.peer_notif_delay)},
                  f"kernel: num_grat_arp {held.get('num_grat_arp')}, peer_notif_delay {held.get('peer_notif_delay')}")
    # The active slave can be there before the other one: each member's slave unit waits for its own
    # device, and the radio's comes later than the wired NIC's.
    def both_enslaved() -> BondStatus | None:
        b = machine.bond(p.bond)
        return b if b is not None and b.slave(p.wired) and b.slave(p.radio) else None

    both = machine.poll(both_enslaved, lab.timeout(60), what="both members enslaved")
    seen = both.value or machine.bond(p.bond)
    results.check(f"both {p.wired} and {p.radio} are slaves", bool(both),
                  (", ".join(f"{s.name} MII {s.mii_status}" for s in seen.slaves) if seen else "no bond")
                  + f" (after {both.seconds:.1f} s)")

    _up_as_declared(machine, lab, results)


def _up_as_declared(machine: Machine, lab: Lab, results: Results) -> None:
    """After boot: every unit the profile implies in its state, the declared addresses on the master, the
    master wearing the wired MAC, the AP reaching the fail-safe address."""
    p = lab.plan
    wants = {u: "active/running" for u in lab.expected.running} | {u: "active/exited" for u in lab.expected.exited}
    states, _ = _units_reach(machine, wants, lab.timeout(60))
    for unit, want_state in wants.items():
        results.check(f"{unit} {want_state}", states[unit] == want_state, states[unit])

    if p.dhcp4:
        lease = machine.poll(lambda: lab.leases(4), lab.timeout(90), what="a DHCPv4 lease")
        results.check(f"DHCPv4 lease on the {p.kind}", bool(lease),
                      ", ".join(lease.value or []) or f"none after {lease.seconds:.0f} s")
        if lease and machine.launched_at:
            results.figure("lease4_after_start_s", round(time.time() - machine.launched_at, 1))
    if p.dhcp6:
        addr6 = machine.poll(lambda: lab.leases(6), lab.timeout(60), what="a DHCPv6 address")
        results.check(f"DHCPv6 address on the {p.kind}", bool(addr6),
                      ", ".join(addr6.value or []) or f"none after {addr6.seconds:.0f} s")
    present = _addresses4(machine, lab)
    for a in p.static4:
        results.check(f"static fail-safe address {a}", str(a) in present, ", ".join(sorted(present)) or "none")
    if p.kind == "bond":
        # A bridge wears a MAC of its own: udev's MACAddressPolicy=persistent (systemd's 99-default.link)
        # gives it one made from the machine id and its name, not its port's.
        link = machine.link(p.bond)
        wired_mac = p.wired_nic.mac
        results.check(f"{p.bond} MAC is the wired MAC {wired_mac}", link is not None and link.mac == wired_mac,
                      link.mac if link else "no bond")
    results.check(f"the AP reaches {p.probe_target()}", _peer_reaches(lab, p.probe_target()), "ping from netns ap")


# 2. Failover.

def _on_wired(machine: Machine, lab: Lab, results: Results) -> None:
    """Require the state the wired-side scenarios start from: the wired link on, the bond on the wired
    NIC, the declared DHCP addresses in place. After the scenario before it in a full run that holds at
    once; a scenario run alone (--scenario) finds the lab as the boot, or another scenario, left it."""
    p = lab.plan
    if not lab.wired_link_up:
        lab.wired(True)
    if p.kind == "bridge":
        port = _bridge_port(machine, lab, lab.timeout(120))
        results.require(f"starts with {p.wired} a port of {p.bond}", bool(port),
                        f"after {port.seconds:.0f} s: {_members(machine, lab)}")
    else:
        on = _on_slave(machine, lab, p.wired, lab.timeout(120))
        results.require(f"starts on {p.wired}", bool(on), f"after {on.seconds:.0f} s: {_now_active(machine, lab)}")
    if p.dhcp4:
        lease = machine.poll(lambda: lab.leases(4), lab.timeout(90), what="a DHCPv4 lease")
        results.require(f"the {p.kind} has its DHCPv4 lease", bool(lease), f"none after {lease.seconds:.0f} s")
    if p.dhcp6:
        addr6 = machine.poll(lambda: lab.leases(6), lab.timeout(60), what="a DHCPv6 address")
        results.require(f"the {p.kind} has its DHCPv6 address", bool(addr6), f"none after {addr6.seconds:.0f} s")


def _backup_ready(machine: Machine, lab: Lab, results: Results) -> None:
    # A backup that has not finished its WPA handshake is no backup: under a slow boot the supplicant
    # can still be associating when the wire is cut, and the bond then switches to a port that
    # carries nothing yet.
    w = lab.plan.radio
    ready = machine.poll(lambda: _wpa_completed(machine, w), lab.timeout(30), what=f"{w} WPA handshake")
    results.figure("backup_ready_wait_s", round(ready.seconds, 2))
    results.require(f"{w} has completed its WPA handshake before the wire is cut", bool(ready),
                    f"{'after' if ready else 'not after'} {ready.seconds:.1f} s")


def failover(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    _on_wired(machine, lab, results)
    _backup_ready(machine, lab, results)
    addrs_before = _addresses4(machine, lab)
    station = _station_mac(machine, lab)
    probe = lab.probe(name="failover")
    probe6 = _probe6(lab, results, "failover")
    time.sleep(1.0)
    clock = machine.clock_offset()
    results.figure("clock_offset_uncertainty_ms", round(clock.uncertainty * 1000, 1))
    cut = lab.wired(False)
    on = _on_slave(machine, lab, p.radio, lab.timeout(15))
    results.figure("switch_seen_after_qmp_s", round(on.seconds, 2))
    results.check(f"set_link {p.wired_nic.id} off: active slave becomes {p.radio}", bool(on),
                  f"after {on.seconds:.1f} s" if on else _now_active(machine, lab))
    time.sleep(3.0)
    replies = probe.stop()
    if probe6 is not None:
        probe6.stop()
    link = machine.link(p.bond)
    want_mac = station if p.fail_over_mac == "active" else p.wired_nic.mac
    results.check(f"{p.bond} MAC follows fail_over_mac={p.fail_over_mac} ({want_mac})",
                  link is not None and link.mac == want_mac, link.mac if link else "no bond")
    after = _addresses4(machine, lab)
    results.check("IPv4 addresses unchanged", after == addrs_before,
                  f"before {sorted(addrs_before)}, after {sorted(after)}")
    outage = probe.outage(cut, on.seconds, clock=clock)
    _outage_figures(results, "failover", outage)
    _timeline(machine, lab, results, "failover", probe, cut, clock)
    results.check("traffic continues over the wlan", replies.replies_after(clock.guest(cut) + on.seconds),
                  _traffic_detail(outage))
    results.check("no gap over 3 s in the whole probe", replies.gap_ms < 3000, f"largest {replies.gap_ms} ms")
    _check_probe6(results, "failover", probe6, cut, on.seconds, clock)


# 3. Failback.

def failback(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    if lab.wired_link_up:
        # Run without the failover before it: first bring about the state a failover ends in.
        _on_wired(machine, lab, results)
        _backup_ready(machine, lab, results)
        lab.wired(False)
    before = _on_slave(machine, lab, p.radio, lab.timeout(15))
    results.require(f"starts on {p.radio} with the wired link off", bool(before), _now_active(machine, lab))
    probe = lab.probe(name="failback")
    probe6 = _probe6(lab, results, "failback")
    time.sleep(1.0)
    clock = machine.clock_offset()
    results.figure("clock_offset_uncertainty_ms", round(clock.uncertainty * 1000, 1))
    plugged = lab.wired(True)
    # With a primary and primary_reselect always/better, the bond returns to the wired primary.
    want = p.wired if (p.primary == p.wired) else p.radio
    on = _on_slave(machine, lab, want, lab.timeout(15))
    results.figure("switch_seen_after_qmp_s", round(on.seconds, 2))
    results.check(f"set_link {p.wired_nic.id} on: active slave returns to {want}", bool(on),
                  f"after {on.seconds:.1f} s" if on else _now_active(machine, lab))
    time.sleep(3.0)
    replies = probe.stop()
    if probe6 is not None:
        probe6.stop()
    link = machine.link(p.bond)
    results.check(f"{p.bond} MAC is the wired MAC again", link is not None and link.mac == p.wired_nic.mac,
                  link.mac if link else "no bond")
    outage = probe.outage(plugged, on.seconds, clock=clock)
    _outage_figures(results, "failback", outage)
    _timeline(machine, lab, results, "failback", probe, plugged, clock)
    results.check("traffic continues", replies.replies_after(clock.guest(plugged) + on.seconds),
                  _traffic_detail(outage))
    results.check("no gap over 3 s in the whole probe", replies.gap_ms < 3000, f"largest {replies.gap_ms} ms")
    _check_probe6(results, "failback", probe6, plugged, on.seconds, clock)


# 4. Wifi-only boot: the seed's dhclient MAC trap.

def wifi_only_boot(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    results.figure("agent_ready_s", round(lab.boot_seconds, 1))
    on = _on_slave(machine, lab, p.radio, lab.timeout(120))
    results.require(f"booted with {p.wired} link off: active slave is {p.radio}", bool(on),
                    f"after {on.seconds:.0f} s: {_now_active(machine, lab)}")
    if p.dhcp4:
        lease = machine.poll(lambda: lab.leases(4), lab.timeout(120), what="a DHCPv4 lease")
        results.check("dhclient still gets a DHCPv4 lease", bool(lease),
                      ", ".join(lease.value or []) or f"none after {lease.seconds:.0f} s")
        if lease:
            # When it came, by the guest's clock: this VM may have booted beside the main VM's scenarios
            # and be looked at long after, so when the lease is seen says nothing. The bound is the one a
            # look right after the agent answered has.
            client = _unit(lab, "dhclient@") or f"dhclient@{p.bond}.service"
            bound = _first_logged_s(machine, client, "bound to")
            budget = lab.boot_seconds + lab.timeout(120)
            results.check("the lease came within the boot's time and 120 s (scaled)",
                          bound is not None and bound <= budget,
                          f"{client} bound {bound:.1f} s after the kernel started (at most {budget:.0f} s)"
                          if bound is not None else f"no 'bound to' in {client}'s journal")
            if bound is not None:
                results.figure("lease4_after_boot_s", round(bound, 1))
    link = machine.link(p.bond)
    if p.fail_over_mac == "active":
        station = _station_mac(machine, lab)
        results.check(f"{p.bond} MAC is the wlan MAC {station}", link is not None and link.mac == station,
                      link.mac if link else "no bond")
    for unit, state in machine.unit_states(*lab.expected.running).items():
        results.check(f"{unit} active/running", state == "active/running", state)
    results.check(f"the AP reaches {p.probe_target()} over the wlan", _peer_reaches(lab, p.probe_target()), "ping")


# 5. Hot-unplug and replug of the wired NIC and of the station radio.

def hotplug(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    nic = p.wired_nic
    slave_unit = f"{p.wired}@{p.bond}.service"
    _on_wired(machine, lab, results)

    deleted = lab.unplug_wired(timeout=lab.timeout(30))
    results.check(f"device_del {nic.id}: DEVICE_DELETED, gone from QEMU", nic.id not in lab.devices(),
                  f"event at {deleted:.3f}")
    states, _ = _units_reach(machine, {slave_unit: "inactive"}, lab.timeout(30))
    results.check(f"{slave_unit} stops", states[slave_unit].startswith("inactive"), states[slave_unit])
    on = _on_slave(machine, lab, p.radio, lab.timeout(15))
    results.check(f"bond stays up on {p.radio}", on.value is not None and on.value.slave(p.wired) is None,
                  _now_active(machine, lab))

    plugged = lab.plug_wired()
    states, waited = _units_reach(machine, {slave_unit: "active/exited"}, lab.timeout(60))
    results.check(f"device_add {nic.id}: {slave_unit} starts by itself", states[slave_unit] == "active/exited",
                  f"{states[slave_unit]} after {waited:.1f} s")
    want = p.wired if p.primary == p.wired else p.radio
    on = _on_slave(machine, lab, want, lab.timeout(30))
    results.figure("wired_replug_to_active_s", round(time.time() - plugged, 1))
    results.check(f"{p.wired} re-enslaved and active again",
                  on.value is not None and on.value.slave(p.wired) is not None, _now_active(machine, lab))

    # The radio: removing the station's interface is what unplugging a wireless card does to the
    # network stack (the device, its slave and supplicant units go); adding it back is the replug.
    sup = f"supplicant@{p.radio}.service"
    wslave = f"{p.radio}@{p.bond}.service"
    lab.remove_radio()
    states, _ = _units_reach(machine, {sup: "inactive", wslave: "inactive"}, lab.timeout(30))
    results.check(f"{p.radio} removed: {sup} and {wslave} stop",
                  all(s.startswith("inactive") for s in states.values()), str(states))
    b = machine.bond(p.bond)
    results.check(f"bond keeps {p.wired} active", b is not None and b.active == p.wired and
                  b.slave(p.radio) is None, _active(b))
    added = time.time()
    lab.add_radio()
    states, _ = _units_reach(machine, {sup: "active/running", wslave: "active/exited"}, lab.timeout(60))
    results.check(f"{p.radio} added: {sup} and {wslave} start again",
                  states[sup] == "active/running" and states[wslave] == "active/exited", str(states))
    ok = machine.poll(lambda: _wlan_link(machine, lab, "up"), lab.timeout(60), what=f"{p.radio} associated")
    results.figure("radio_readd_to_associated_s", round(time.time() - added, 1))
    results.check(f"{p.radio} is a slave again with its link up (associated)", bool(ok),
                  f"after {ok.seconds:.0f} s")


# 6. Access point lost.

def _wlan_lost_and_back(machine: Machine, lab: Lab, results: Results, *, lose: Callable[[], object],
                        lost: str, restore: Callable[[], object], back_again: str, back_figure: str) -> None:
    """On the wlan with the wire cut, lose() takes the wlan's link away: no active slave, the static
    address kept; restore() gives it back and the bond recovers by itself. The wire is plugged again after."""
    p = lab.plan
    lab.wired(False)
    on = _on_slave(machine, lab, p.radio, lab.timeout(15))
    results.require(f"on {p.radio} with the wired link off", bool(on), _now_active(machine, lab))
    lose()
    t0 = time.monotonic()
    none = _on_slave(machine, lab, None, lab.timeout(30))
    results.figure("no_active_slave_after_s", round(none.seconds, 1))
    results.check(f"{lost}: the bond has no active slave", bool(none), _now_active(machine, lab))
    present = _addresses4(machine, lab)
    for a in p.static4:
        results.check(f"static fail-safe address {a} stays", str(a) in present, ", ".join(sorted(present)))
    restore()
    t1 = time.monotonic()
    back = _on_slave(machine, lab, p.radio, lab.timeout(90))
    results.figure(back_figure, round(time.monotonic() - t1, 1))
    results.check(f"{back_again}: {p.radio} active again without manual action", bool(back),
                  f"after {back.seconds:.0f} s (down {t1 - t0:.0f} s)")
    _peer_reaches_again(machine, lab, results, f"the AP reaches {p.probe_target()} again")
    lab.wired(True)
    _on_slave(machine, lab, p.primary or p.wired, lab.timeout(15))


def ap_lost(machine: Machine, lab: Lab, results: Results) -> None:
    _wlan_lost_and_back(machine, lab, results, lose=lambda: lab.ap(False), lost="hostapd stopped",
                        restore=lambda: lab.ap(True), back_again="hostapd back",
                        back_figure="recovered_after_ap_restart_s")


# 7. The radio switched off (rfkill).

def rfkill(machine: Machine, lab: Lab, results: Results) -> None:
    """The article's "a hardware switch or rfkill can be used to actually disable the radio": blocked
    while the bond is on the wlan with the wire cut, no active slave and the static address kept;
    unblocked, the radio is back by itself."""
    p = lab.plan
    _on_wired(machine, lab, results)
    _backup_ready(machine, lab, results)
    _wlan_lost_and_back(machine, lab, results, lose=lambda: lab.rfkill(True), lost=f"rfkill block {p.radio}",
                        restore=lambda: lab.rfkill(False), back_again="rfkill unblock",
                        back_figure="unblock_to_active_s")


# 8.-11. Operating the units (the article's paragraphs after "check the results"): each unit stopped and started
# by hand does what it says and nothing else ("the various service units are quite independent except for
# the ordering dependencies that have been explicitly configured").

NETWORK_CONF = "/etc/conf.d/network.conf"


def _unit(lab: Lab, prefix: str) -> str | None:
    """The expected unit whose name starts with prefix ("dhclient@", "static@"), None if the profile has none."""
    return next((u for u in lab.expected.all if u.startswith(prefix)), None)


def _declared(machine: Machine, lab: Lab, what: str) -> list[str]:
    """What network.conf declares for the bond (what="ADDRS" or "ROUTES"), read as static@'s shell reads it:
    the addresses, or each route's words ("to 10.30.0.0/16 via 10.20.0.1")."""
    out = machine.succeed(f'. {NETWORK_CONF} && printf "%s" "${lab.plan.bond}{what}"', timeout=30)
    return shlex.split(out) if what == "ROUTES" else out.split()


def _route_present(machine: Machine, lab: Lab, route: str) -> bool:
    """Whether the kernel has the route network.conf declares: its prefix and gateway as `ip route show`
    selects them (a metric or other attribute is not a selector)."""
    words = route.split()
    keep = [w for i, w in enumerate(words) if w in ("to", "via") or i and words[i - 1] in ("to", "via")]
    if words and words[0] not in ("to", "via"):
        keep = ["to", words[0], *keep]
    family = "-6 " if ":" in route else ""
    status, out = machine.execute(f"ip {family}route show {' '.join(keep)} dev {lab.plan.bond}", timeout=30)
    return status == 0 and bool(out.strip())


def _journal_cursor(machine: Machine) -> str:
    out = machine.succeed("journalctl -b -n 0 --show-cursor --no-pager", timeout=30)
    return out.strip().rpartition("cursor: ")[2]


def _journal_since(machine: Machine, cursor: str) -> str:
    return machine.succeed(f"journalctl -b -o cat --no-pager --after-cursor={shlex.quote(cursor)}", timeout=60)


def _spare_address4(lab: Lab) -> str:
    """A fail-safe address to add by hand: in the bond's subnet, below the lab's DHCP range (its upper half)
    and taken by no one."""
    p = lab.plan
    taken = {a.ip for a in p.static4} | {p.ap_addr4.ip}
    top = min(p.subnet4.num_addresses // 2 - 1, 250)
    spare = next(p.subnet4.network_address + k for k in range(top, 1, -1)
                 if p.subnet4.network_address + k not in taken)
    return f"{spare}/{p.subnet4.prefixlen}"


def _unchanged(results: Results, what: str, before: object, after: object) -> None:
    results.check(f"{what} untouched", before == after, f"before {before}, after {after}")


def dhclient_release(machine: Machine, lab: Lab, results: Results) -> None:
    """`systemctl stop dhclient@bond0`: the lease released and its address removed, nothing else touched;
    `systemctl restart`: a lease again."""
    p = lab.plan
    unit = _unit(lab, "dhclient@")
    if unit is None:
        results.not_applicable(f"{p.section}.{p.bond}.dhcp4 is false: the {p.kind} has no DHCPv4 lease to release")
    assert unit is not None
    _on_wired(machine, lab, results)
    lease = lab.leases(4)
    results.require(f"the {p.kind} has one DHCPv4 lease", len(lease) == 1, ", ".join(lease) or "none")
    others = [u for u in lab.expected.all if u != unit]
    states_before = machine.unit_states(*others)
    v6_before = sorted(lab.leases(6))
    members_before = _members(machine, lab)
    releases = lab.dhcp_log().count("DHCPRELEASE")
    probe = lab.probe(name="dhclient-stop")
    machine.succeed(f"systemctl stop {unit}", timeout=lab.timeout(60))
    gone = machine.poll(lambda: not lab.leases(4), lab.timeout(15), what="the lease removed")
    time.sleep(1.0)
    replies = probe.stop()
    results.check(f"systemctl stop {unit}: the lease's address is removed", bool(gone),
                  f"still {', '.join(lab.leases(4))}" if not gone else f"{lease[0]} gone")
    seen = lab.dhcp_log().count("DHCPRELEASE")
    results.check("the lab's DHCP server saw the release (DHCPRELEASE)", seen > releases,
                  f"{seen - releases} new DHCPRELEASE in dnsmasq's log")
    present = _addresses4(machine, lab)
    results.check("the static fail-safe addresses stay", all(str(a) in present for a in p.static4),
                  ", ".join(sorted(present)) or "none")
    if p.dhcp6:
        _unchanged(results, "the DHCPv6 address", v6_before, sorted(lab.leases(6)))
    for route in _declared(machine, lab, "ROUTES"):
        results.check(f"static@'s route {route} stays", _route_present(machine, lab, route), "ip route show")
    _unchanged(results, "the other units", states_before, machine.unit_states(*others))
    _unchanged(results, f"{p.bond} and its members", members_before, _members(machine, lab))
    results.figure("static_probe_largest_gap_ms", replies.gap_ms)
    results.check("traffic to the static address goes on without a gap (none over 1 s)",
                  replies.received > 0 and replies.gap_ms < 1000,
                  f"{replies.received}/{replies.sent} replies, largest gap {replies.gap_ms} ms")

    started = time.monotonic()
    machine.succeed(f"systemctl restart {unit}", timeout=lab.timeout(60))
    again = machine.poll(lambda: lab.leases(4), lab.timeout(90), what="a DHCPv4 lease again")
    results.figure("restart_to_lease_s", round(time.monotonic() - started, 1))
    results.check(f"systemctl restart {unit}: a lease again", bool(again),
                  ", ".join(again.value or []) or f"none after {again.seconds:.0f} s")
    results.check("the same address for the same client", (again.value or []) == lease,
                  f"before {lease}, after {again.value}")


def static_edit(machine: Machine, lab: Lab, results: Results) -> None:
    """`systemctl stop static@bond0`, network.conf edited, `systemctl start static@bond0`: the static
    addresses and routes go and come back as the file now says; the DHCP addresses stay."""
    p = lab.plan
    unit = _unit(lab, "static@")
    if unit is None or not p.static4:
        results.not_applicable(f"{p.section}.{p.bond}.addresses has no IPv4 address: no static@ configuration "
                               "to edit")
    assert unit is not None
    _on_wired(machine, lab, results)
    addrs = _declared(machine, lab, "ADDRS")
    routes = _declared(machine, lab, "ROUTES")
    leases = {4: lab.leases(4), 6: lab.leases(6)}

    def has(addr: str) -> bool:
        link = machine.link(p.bond)
        return link is not None and ipaddress.ip_interface(addr) in {ipaddress.ip_interface(str(a))
                                                                     for a in link.addresses}

    machine.succeed(f"systemctl stop {unit}", timeout=lab.timeout(60))
    for a in addrs:
        results.check(f"systemctl stop {unit}: {a} is removed", not has(a), "ip address")
    for route in routes:
        results.check(f"route {route} is removed", not _route_present(machine, lab, route), "ip route show")
    for family, held in leases.items():
        if held:
            _unchanged(results, f"the DHCPv{family} address", held, lab.leases(family))

    extra = _spare_address4(lab)
    edited = " ".join([*addrs, extra])
    # As a person would: the bond's ADDRS line changed in place, the file kept as it was to put back.
    machine.succeed(f"sed -i.imagegen-lab \"s|^{p.bond}ADDRS=.*|{p.bond}ADDRS='{edited}'|\" {NETWORK_CONF}")
    try:
        results.check(f"{NETWORK_CONF} now declares {extra} too",
                      _declared(machine, lab, "ADDRS") == [*addrs, extra], " ".join(_declared(machine, lab, "ADDRS")))
        machine.succeed(f"systemctl start {unit}", timeout=lab.timeout(60))
        results.check(f"systemctl start {unit}: the new address {extra} is there", has(extra), "ip address")
        for a in addrs:
            results.check(f"{a} is back", has(a), "ip address")
        for route in routes:
            results.check(f"route {route} is back", _route_present(machine, lab, route), "ip route show")
        results.check("the peer reaches the new address", _peer_reaches(lab, extra.split("/")[0]),
                      "ping from netns ap")
    finally:
        # The file as the image has it, and static@ restarted from it (the added address goes again), also
        # when a step above failed: the scenarios after this one find the network as built.
        machine.succeed(f"systemctl stop {unit}", f"mv {NETWORK_CONF}.imagegen-lab {NETWORK_CONF}",
                        f"systemctl start {unit}", timeout=lab.timeout(60))
    results.check(f"{NETWORK_CONF} put back and {unit} restarted: {extra} is gone, {', '.join(addrs)} there",
                  not has(extra) and all(has(a) for a in addrs), "ip address")


def supplicant_restart(machine: Machine, lab: Lab, results: Results) -> None:
    """`systemctl stop supplicant@wlan` while on the wire: the bond stays up on it, the radio's slave loses
    its link; started again, the radio re-associates and is a working backup."""
    p = lab.plan
    unit = f"supplicant@{p.radio}.service"
    _on_wired(machine, lab, results)
    _backup_ready(machine, lab, results)
    machine.succeed(f"systemctl stop {unit}", timeout=lab.timeout(60))
    states = machine.unit_states(unit, f"{p.radio}@{p.bond}.service")
    results.check(f"systemctl stop {unit}: it is stopped", states[unit].startswith("inactive"), states[unit])

    down = machine.poll(lambda: _wlan_link(machine, lab, "down"), lab.timeout(30), what=f"{p.radio}'s link down")
    results.check(f"{p.radio} stays a slave and loses its link", bool(down), _now_active(machine, lab))
    b = machine.bond(p.bond)
    results.check(f"the bond stays up on {p.wired}", b is not None and b.active == p.wired, _active(b))
    results.check(f"the AP reaches {p.probe_target()} over the wire", _peer_reaches(lab, p.probe_target()), "ping")

    started = time.monotonic()
    machine.succeed(f"systemctl start {unit}", timeout=lab.timeout(60))
    ready = machine.poll(lambda: _wpa_completed(machine, p.radio), lab.timeout(60), what="WPA handshake")
    results.figure("start_to_associated_s", round(time.monotonic() - started, 1))
    results.check(f"systemctl start {unit}: {p.radio} re-associates", bool(ready), f"after {ready.seconds:.0f} s")

    up = machine.poll(lambda: _wlan_link(machine, lab, "up"), lab.timeout(30), what=f"{p.radio}'s link up")
    results.require(f"{p.radio}'s slave link is up again", bool(up), _now_active(machine, lab))
    lab.wired(False)
    on = _on_slave(machine, lab, p.radio, lab.timeout(15))
    results.check(f"a failover afterwards: active slave becomes {p.radio}", bool(on),
                  f"after {on.seconds:.1f} s" if on else _now_active(machine, lab))
    _peer_reaches_again(machine, lab, results, f"the AP reaches {p.probe_target()} over the wlan")
    lab.wired(True)
    _on_slave(machine, lab, p.primary or p.wired, lab.timeout(15))


def master_restart(machine: Machine, lab: Lab, results: Results) -> None:
    """`systemctl stop master@bond0` tears down the master, slave, DHCP and DHCPv6 units and deletes the
    bond, the supplicants left running; `systemctl start master@bond0` brings everything back by itself."""
    p = lab.plan
    master = f"master@{p.bond}.service"
    _on_wired(machine, lab, results)
    lease = lab.leases(4)
    bound = [u for u in lab.expected.all if not u.startswith("supplicant@")]
    supplicants = [u for u in lab.expected.all if u.startswith("supplicant@")]
    cursor = _journal_cursor(machine)
    started = time.monotonic()
    machine.succeed(f"systemctl stop {master}", timeout=lab.timeout(120))
    results.figure("teardown_s", round(time.monotonic() - started, 1))
    states = machine.unit_states(*bound, *supplicants)
    for unit in bound:
        results.check(f"systemctl stop {master}: {unit} stopped", states[unit].startswith("inactive"), states[unit])
    for unit in supplicants:
        results.check(f"{unit} keeps running", states[unit] == "active/running", states[unit])
    results.check(f"{p.bond} is deleted", machine.link(p.bond) is None, "ip address")
    _stopped_before(results, _journal_since(machine, cursor), [u for u in bound if u != master], master)

    started = time.monotonic()
    machine.succeed(f"systemctl start {master}", timeout=lab.timeout(120))
    wants = {u: "active/running" for u in lab.expected.running} | {u: "active/exited" for u in lab.expected.exited}
    states, _ = _units_reach(machine, wants, lab.timeout(90))
    for unit, want in wants.items():
        results.check(f"systemctl start {master}: {unit} {want} by itself", states[unit] == want, states[unit])
    if p.kind == "bridge":
        port = _bridge_port(machine, lab, lab.timeout(60))
        results.check(f"{p.bond} is back with {p.wired} a forwarding port", bool(port), _members(machine, lab))
    else:
        on = _on_slave(machine, lab, p.primary or p.wired, lab.timeout(60))
        results.check(f"{p.bond} is back with active slave {p.primary or p.wired}", bool(on),
                      _now_active(machine, lab))
    if p.dhcp4:
        again = machine.poll(lambda: lab.leases(4), lab.timeout(90), what="a DHCPv4 lease")
        results.check("a DHCPv4 lease, as after boot: the same address", (again.value or []) == lease,
                      f"before {lease}, after {', '.join(again.value or []) or 'none'}")
    results.figure("bring_up_s", round(time.monotonic() - started, 1))
    present = _addresses4(machine, lab)
    for a in p.static4:
        results.check(f"static fail-safe address {a} is back", str(a) in present, ", ".join(sorted(present)))
    if p.dhcp6:
        addr6 = machine.poll(lambda: lab.leases(6), lab.timeout(60), what="a DHCPv6 address")
        results.check("a DHCPv6 address again", bool(addr6), ", ".join(addr6.value or []) or "none")
    results.check(f"the AP reaches {p.probe_target()}", _peer_reaches(lab, p.probe_target()), "ping")


# 12. A wireless card removed and inserted.

def card_insert(machine: Machine, lab: Lab, results: Results) -> None:
    """The article's last paragraph: a configured wireless card inserted into a machine running on the wire
    alone is added to the bond and wpa_supplicant started; removed again, its slave unit and wpa_supplicant
    stop."""
    p = lab.plan
    sup = f"supplicant@{p.radio}.service"
    wslave = f"{p.radio}@{p.bond}.service"
    _on_wired(machine, lab, results)
    lab.remove_card()
    states, _ = _units_reach(machine, {sup: "inactive", wslave: "inactive"}, lab.timeout(30))
    results.check(f"card removed: {sup} and {wslave} stop", all(s.startswith("inactive") for s in states.values()),
                  str(states))
    b = machine.bond(p.bond)
    results.check(f"the bond runs on {p.wired} alone", b is not None and b.active == p.wired
                  and [s.name for s in b.slaves] == [p.wired], _active(b))
    inserted = time.monotonic()
    lab.insert_card()
    states, waited = _units_reach(machine, {sup: "active/running", wslave: "active/exited"}, lab.timeout(60))
    results.check(f"card inserted: {wslave} and {sup} start by themselves",
                  states[sup] == "active/running" and states[wslave] == "active/exited",
                  f"{states} after {waited:.1f} s")
    ok = machine.poll(lambda: _wlan_link(machine, lab, "up"), lab.timeout(60), what=f"{p.radio} associated")
    results.figure("insert_to_associated_s", round(time.monotonic() - inserted, 1))
    results.check(f"{p.radio} is enslaved with its link up (associated)", bool(ok), f"after {ok.seconds:.0f} s")
    b = machine.bond(p.bond)
    results.check(f"the bond stays on {p.wired}", b is not None and b.active == p.wired, _active(b))


# The article's other kind of master: a bridge over the wired NIC.

def _bridge_options(machine: Machine, lab: Lab) -> dict[str, str]:
    """The bridge options network.conf gives master@ (`stp_state 0`): the words after `type bridge`."""
    words = _declared(machine, lab, "OPTIONS")
    return dict(zip(words[::2], words[1::2], strict=False))


def bridge_boot(machine: Machine, lab: Lab, results: Results) -> None:
    """The article's master@ for a master declared a bridge: `ip link add br0 type bridge` with the declared
    options, the wired NIC its forwarding port, the DHCP and static addresses on the bridge."""
    p = lab.plan
    results.figure("agent_ready_s", round(lab.boot_seconds, 1))
    port = _bridge_port(machine, lab, lab.timeout(120))
    results.require(f"{p.bond} exists with {p.wired} a forwarding port", bool(port),
                    f"after {port.seconds:.0f} s: {_members(machine, lab)}")
    results.figure("port_forwarding_after_agent_s", round(port.seconds, 1))
    status, _ = machine.execute(f"test -d /sys/class/net/{p.bond}/bridge && test ! -e /sys/class/net/{p.bond}/bonding",
                                timeout=30)
    results.check(f"{p.bond} is a bridge, not a bond", status == 0, _members(machine, lab))
    for key, want in _bridge_options(machine, lab).items():
        status, held = machine.execute(f"cat /sys/class/net/{p.bond}/bridge/{shlex.quote(key)}", timeout=30)
        results.check(f"the declared option {key} {want} holds", status == 0 and held.strip() == want,
                      f"kernel: {held.strip() or 'no such attribute'}")
    link = machine.link(p.wired)
    own = [*link.with_family(4), *link.with_family(6)] if link else []
    results.check(f"{p.wired} carries no address of its own (slave@ flushed it)", link is not None and not own,
                  ", ".join(str(a) for a in own) or "no global address")
    _up_as_declared(machine, lab, results)


def bridge_unplug(machine: Machine, lab: Lab, results: Results) -> None:
    """The bridge's member: the cable out and in (carrier), then the NIC hot-unplugged and plugged back.
    The bridge and its addresses outlive both; the member's unit stops with its device and starts again by
    itself when it comes back, and the AP reaches the bridge again."""
    p = lab.plan
    target = p.probe_target()
    slave_unit = f"{p.wired}@{p.bond}.service"
    _on_wired(machine, lab, results)
    static = _addresses4(machine, lab)

    lab.wired(False)
    cut = time.monotonic()
    results.check(f"cable out: the AP no longer reaches {target}", not _peer_reaches(lab, target, count=2),
                  "ping from netns ap")
    member = machine.link(p.wired)
    results.check(f"{p.bond} keeps its addresses and {p.wired} its port",
                  _addresses4(machine, lab) == static and member is not None and member.master == p.bond,
                  _members(machine, lab))
    lab.wired(True)
    back = _reached(machine, lab, target)
    results.figure("cable_in_to_reached_s", round(back.seconds, 1))
    results.check(f"cable in: the AP reaches {target} again", bool(back),
                  f"after {back.seconds:.1f} s ({time.monotonic() - cut:.0f} s after the cut)")

    nic = p.wired_nic
    deleted = lab.unplug_wired(timeout=lab.timeout(30))
    results.check(f"device_del {nic.id}: DEVICE_DELETED, gone from QEMU", nic.id not in lab.devices(),
                  f"event at {deleted:.3f}")
    states, _ = _units_reach(machine, {slave_unit: "inactive"}, lab.timeout(30))
    results.check(f"{slave_unit} stops with its device", states[slave_unit].startswith("inactive"),
                  states[slave_unit])
    master = f"master@{p.bond}.service"
    kept = machine.unit_states(master)[master]
    results.check(f"{p.bond} stays, with its addresses and no port",
                  kept == "active/exited" and _addresses4(machine, lab) == static, f"{master} {kept}; "
                  + _members(machine, lab))

    plugged = time.monotonic()
    lab.plug_wired()
    states, waited = _units_reach(machine, {slave_unit: "active/exited"}, lab.timeout(60))
    results.check(f"device_add {nic.id}: {slave_unit} starts by itself", states[slave_unit] == "active/exited",
                  f"{states[slave_unit]} after {waited:.1f} s")
    port = _bridge_port(machine, lab, lab.timeout(30))
    results.check(f"{p.wired} is a forwarding port of {p.bond} again", bool(port), _members(machine, lab))
    reached = _reached(machine, lab, target)
    results.figure("replug_to_reached_s", round(time.monotonic() - plugged, 1))
    results.check(f"the AP reaches {target} over the replugged NIC", bool(reached), "ping from netns ap")
    if p.dhcp4:
        lease = machine.poll(lambda: lab.leases(4), lab.timeout(30), what="a DHCPv4 lease")
        results.check("the DHCPv4 lease is still on the bridge", bool(lease), ", ".join(lease.value or []) or "none")


# Two masters: a second bond of two ethernet NICs beside the article's, each with its own options.

def _options(b: BondStatus | None) -> str:
    """The options a bond runs with, as the kernel says."""
    if b is None:
        return "no bond"
    return (f"mode {b.mode}, miimon {b.miimon_ms}, fail_over_mac {b.fail_over_mac}, primary {b.primary}, "
            f"primary_reselect {b.primary_reselect}")


def two_masters(machine: Machine, lab: Lab, results: Results) -> None:
    """Two bonds in one profile: each created with its own options and its own members, each failing over
    on its own while the other carries on as it was."""
    p = lab.plan
    second = p.second
    if second is None:
        results.not_applicable("the profile declares no second bond of two ethernet NICs")
    assert second is not None
    one, two = second.members
    target = str(second.static4.ip)
    _on_wired(machine, lab, results)

    def on(slave: str) -> Polled[BondStatus]:
        def active_is() -> BondStatus | None:
            b = machine.bond(second.name)
            return b if b is not None and b.active == slave and all(b.slave(m) for m in second.members) else None
        return machine.poll(active_is, lab.timeout(60), interval=0.2, what=f"{second.name} active on {slave}")

    first = second.primary or one
    up = on(first)
    results.require(f"{second.name} exists with {one} and {two}, active slave {first}", bool(up),
                    _active(machine.bond(second.name)))
    units = {f"master@{second.name}.service": "active/exited", f"static@{second.name}.service": "active/exited",
             **{f"{m}@{second.name}.service": "active/exited" for m in second.members}}
    states, _ = _units_reach(machine, units, lab.timeout(60))
    for unit, want in units.items():
        results.check(f"{unit} {want}", states[unit] == want, states[unit])
    b = machine.bond(second.name)
    results.check(f"{second.name} runs with its own options (miimon {second.miimon}, fail_over_mac "
                  f"{second.fail_over_mac}, primary_reselect {second.primary_reselect})",
                  b is not None and (b.mode, b.miimon_ms, b.fail_over_mac, b.primary, b.primary_reselect)
                  == ("active-backup", second.miimon, second.fail_over_mac, second.primary, second.primary_reselect),
                  _options(b))
    b = machine.bond(p.bond)
    results.check(f"{p.bond} keeps its own (miimon {p.miimon}, fail_over_mac {p.fail_over_mac})",
                  b is not None and (b.miimon_ms, b.fail_over_mac) == (p.miimon, p.fail_over_mac), _options(b))
    link = machine.link(second.name)
    results.check(f"{second.name} has its static address {second.static4}",
                  link is not None and str(second.static4) in {str(a) for a in link.with_family(4)},
                  ", ".join(str(a) for a in link.with_family(4)) if link else "no bond")
    results.check(f"the AP reaches {target} on {second.name}", _peer_reaches(lab, target), "ping from netns ap")

    # The second bond fails over; the first does not move.
    other = two if first == one else one
    cut = time.monotonic()
    lab.member_link(first, False)
    moved = on(other)
    results.figure("second_failover_s", round(time.monotonic() - cut, 1))
    results.check(f"{first}'s link cut: {second.name} fails over to {other}", bool(moved),
                  _active(machine.bond(second.name)))
    b = machine.bond(p.bond)
    results.check(f"{p.bond} stays on {p.wired}", b is not None and b.active == p.wired, _active(b))
    reached = _reached(machine, lab, target)
    results.check(f"the AP reaches {target} over {other}", bool(reached), f"ping, after {reached.seconds:.1f} s")
    results.check(f"the AP still reaches {p.probe_target()} on {p.bond}", _peer_reaches(lab, p.probe_target()),
                  "ping")
    lab.member_link(first, True)
    if second.primary_reselect == "always" and second.primary == first:
        back = on(first)
        results.check(f"{first}'s link back: {second.name} returns to its primary (primary_reselect always)",
                      bool(back), _active(machine.bond(second.name)))
    else:
        # primary_reselect "better" with NICs of one speed, or "failure": the primary does not take over again
        # while the other slave works.
        time.sleep(max(1.0, 3 * second.miimon / 1000))
        b2 = machine.bond(second.name)
        results.check(f"{first}'s link back: {second.name} stays on {other} "
                      f"(primary_reselect {second.primary_reselect})",
                      b2 is not None and b2.active == other, _active(b2))
        lab.member_link(other, False)
        back = on(first)
        results.check(f"{other}'s link cut: {second.name} fails over to {first}", bool(back),
                      _active(machine.bond(second.name)))
        lab.member_link(other, True)

    # The first bond fails over; the second does not move.
    _backup_ready(machine, lab, results)
    before = _active(machine.bond(second.name))
    lab.wired(False)
    moved = _on_slave(machine, lab, p.radio, lab.timeout(30))
    results.check(f"the wire cut: {p.bond} fails over to {p.radio}", bool(moved), _now_active(machine, lab))
    results.check(f"{second.name} does not move", _active(machine.bond(second.name)) == before,
                  f"before {before}, now {_active(machine.bond(second.name))}")
    results.check(f"the AP still reaches {target} on {second.name}", _peer_reaches(lab, target), "ping")
    lab.wired(True)
    _on_slave(machine, lab, p.primary or p.wired, lab.timeout(30))


# 14. Wired 802.1X: the supplicant on the wired member, against the lab's switch port.

# What the scenario puts in the place of the password for a while: no profile's secret.
WRONG_PASSWORD = "imagegen-lab-wrong-password"
# The supplicant's own words on how an exchange went, as its journal has them.
EAP_WORDS = re.compile(r"CTRL-EVENT-EAP-(SUCCESS|FAILURE)|EAP-MSCHAPV2: failure|TLS-CERT-ERROR|"
                       r"EAP-PEER-CERT depth=0|Authentication failed")


def _eap_status(machine: Machine, port: str) -> dict[str, str]:
    """`wpa_cli -i PORT status` as its key=value pairs; empty when no supplicant answers."""
    status, out = machine.execute(f"wpa_cli -i {shlex.quote(port)} status", timeout=30)
    if status != 0:
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _eap_state(s: dict[str, str]) -> str:
    if not s:
        return "no supplicant answers on its control socket"
    words = (f"Supplicant PAE state {s.get('Supplicant PAE state', '?')}, suppPortStatus "
             f"{s.get('suppPortStatus', '?')}, EAP state {s.get('EAP state', '?')}")
    return words + (f", {s['selectedMethod']}" if "selectedMethod" in s else "")


def _eap_journal(machine: Machine, port: str, cursor: str | None) -> tuple[list[str], str | None]:
    """The supplicant's lines on its EAP exchanges since cursor (None: this boot), and the journal's cursor."""
    after = f" --after-cursor={shlex.quote(cursor)}" if cursor else ""
    out = machine.succeed(f"journalctl -b -u supplicant@{port}.service -o cat --show-cursor --no-pager{after}",
                          timeout=30)
    lines = out.splitlines()
    mark = next((ln.removeprefix("-- cursor: ") for ln in reversed(lines) if ln.startswith("-- cursor: ")), cursor)
    return [ln for ln in lines if EAP_WORDS.search(ln)], mark


EapOutcome = tuple[dict[str, str], list[str]]  # wpa_cli status, and the journal's lines on the exchange


def _eap_settled(machine: Machine, port: str, cursor: str | None, timeout: float) -> Polled[EapOutcome]:
    """Wait for the outcome of an EAP exchange that began after cursor: the port authorized after an EAP
    success, or held after a failure. (Without one, wpa_supplicant's wired port also ends up "Authorized":
    802.1X lets a supplicant that no authenticator answers assume an open port, so the state alone is no proof.)"""
    def settled() -> EapOutcome | None:
        lines, _ = _eap_journal(machine, port, cursor)
        if not any("CTRL-EVENT-EAP-" in ln for ln in lines):
            return None
        s = _eap_status(machine, port)
        pair = (s.get("Supplicant PAE state"), s.get("EAP state"))
        return (s, lines) if pair in {("AUTHENTICATED", "SUCCESS"), ("HELD", "FAILURE")} else None
    return machine.poll(settled, timeout, interval=0.5, what=f"the EAP exchange on {port}")


def _authorized(polled: Polled[EapOutcome]) -> bool:
    return polled.value is not None and polled.value[0].get("suppPortStatus") == "Authorized" \
        and polled.value[0].get("EAP state") == "SUCCESS"


def _eap_detail(machine: Machine, port: str, polled: Polled[EapOutcome]) -> str:
    if polled.value is None:
        return f"no EAP outcome within {polled.seconds:.0f} s: {_eap_state(_eap_status(machine, port))}"
    status, lines = polled.value
    said = [ln for ln in lines if "CTRL-EVENT-EAP-SUCCESS" not in ln and "PEER-CERT" not in ln][-2:]
    return f"{_eap_state(status)} after {polled.seconds:.1f} s" + (f"; {'; '.join(said)}" if said else "")


def _reload_with_password(machine: Machine, lab: Lab, password: str | None) -> None:
    """`systemctl reload supplicant@PORT` (the article's wpa_cli reconfigure and reassociate) after the
    network's password in the port's file is set to `password`, or put back as the image has it (None)."""
    auth = lab.plan.wired_auth
    assert auth is not None
    if password is None:
        machine.succeed(f"mv {auth.conf}.imagegen-lab {auth.conf}")
    else:
        # sed -i.SUFFIX renames the file it reads: the image's own, mode 0600, waits there.
        machine.succeed(f"sed -i.imagegen-lab 's/^\\([[:space:]]*password=\\).*/\\1\"{password}\"/' {auth.conf}")
    port = auth.port
    machine.succeed(f"systemctl reload supplicant@{port}.service")


def wired_8021x(machine: Machine, lab: Lab, results: Results) -> None:
    """The article starts wpa_supplicant on every interface, wired ones too: a wired member with
    `supplicant = true` authenticates its port (with the wired driver alone and a file of its own networks,
    see supplicant@.service.d/wired.conf). The lab's switch side is hostapd's wired driver
    with its own EAP server, which knows the profile's credentials; the port must be authorized at boot by
    itself, refused with a wrong password, and authorized again with the image's one, by `systemctl reload`."""
    p = lab.plan
    auth = p.wired_auth
    if auth is None:
        raise NotApplicable(f"{p.wired} runs no supplicant: the profile declares no wired 802.1X")
    port = auth.port
    unit = f"supplicant@{port}.service"
    states, _ = _units_reach(machine, {unit: "active/running"}, lab.timeout(60))
    results.require(f"{unit} runs", states[unit] == "active/running", states[unit])
    mac = machine.succeed(f"cat /sys/class/net/{port}/address", timeout=30).strip().lower()
    # At boot: wpa_supplicant sends EAPOL-Start every 30 s until an authenticator answers.
    boot = _eap_settled(machine, port, None, lab.timeout(90))
    results.require(f"{port} authorized at boot by EAP-{auth.method} with the profile's credentials",
                    _authorized(boot), _eap_detail(machine, port, boot))
    if (authorized := _first_logged_s(machine, unit, "CTRL-EVENT-EAP-SUCCESS")) is not None:
        results.figure("authorized_after_boot_s", round(authorized, 1))
    status = boot.value[0] if boot.value else {}
    results.check(f"the supplicant ran EAP-{auth.method}", f"EAP-{auth.method}" in status.get("selectedMethod", ""),
                  status.get("selectedMethod", "no method"))
    if auth.ca_cert is not None:
        lines = boot.value[1] if boot.value else []
        peer = next((ln for ln in lines if "PEER-CERT depth=0" in ln), "")
        results.check(f"it checked the server's certificate against ca_cert ({auth.ca_cert}, the lab's CA)",
                      "CN=imagegen-lab-authenticator" in peer, peer or "no server certificate seen")
    side = lab.switch_port(mac)
    results.check(f"the switch port has {mac} authorized as {auth.identity}",
                  "[AUTHORIZED]" in side.get("flags", "") and side.get("dot1xAuthSessionUserName") == auth.identity,
                  f"flags {side.get('flags', '?')}, user {side.get('dot1xAuthSessionUserName', '?')}" if side
                  else "the switch port does not know the station")

    # A wrong password, changed at run time: refused, and the port is not authorized on either side.
    _, cursor = _eap_journal(machine, port, None)
    start = time.monotonic()
    try:
        _reload_with_password(machine, lab, WRONG_PASSWORD)
        wrong = _eap_settled(machine, port, cursor, lab.timeout(60))
        results.figure("wrong_password_refused_s", round(time.monotonic() - start, 1))
        refused = wrong.value is not None and wrong.value[0].get("EAP state") == "FAILURE" \
            and wrong.value[0].get("suppPortStatus") == "Unauthorized"
        results.check("with a wrong password (systemctl reload): EAP fails and the port stays unauthorized",
                      refused, _eap_detail(machine, port, wrong))
        side = lab.switch_port(mac)
        results.check("the switch port does not authorize it", "[AUTHORIZED]" not in side.get("flags", ""),
                      f"flags {side.get('flags', '?')}, failures {side.get('dot1xAuthBackendAuthFails', '?')}")
    finally:
        _, cursor = _eap_journal(machine, port, cursor)
        start = time.monotonic()
        _reload_with_password(machine, lab, None)
    again = _eap_settled(machine, port, cursor, lab.timeout(90))
    results.figure("reauthorized_s", round(time.monotonic() - start, 1))
    results.check("the image's password back (systemctl reload): authorized again", _authorized(again),
                  _eap_detail(machine, port, again))
    b = machine.bond(p.bond) if p.kind == "bond" else None
    if b is not None:
        results.check(f"{p.bond} stays on {p.wired} throughout", b.active == p.wired, _active(b))


# 15. Clean shutdown.

def stop_positions(console: str, unit: str) -> tuple[int | None, int | None]:
    """Offsets of systemd's 'Stopping <unit>' and 'Stopped <unit>' console lines (None: not seen).

    The console shows, e.g.:  "         Stopping dhclient@bond0.service - ISC dhclient on interface bond0..."
                              "[  OK  ] Stopped dhclient@bond0.service - ISC dhclient on interface bond0."
    """
    name = re.escape(unit)
    stopping = re.search(rf"Stopping {name}\b", console)
    stopped = re.search(rf"Stopped {name}\b", console)
    return (stopping.start() if stopping else None, stopped.start() if stopped else None)


def _stopped_before(results: Results, text: str, units: list[str], later: str) -> None:
    """Check that each unit's "Stopped" line comes before the "Stopping" line of `later` in text."""
    later_stopping, _ = stop_positions(text, later)
    for unit in units:
        _, stopped = stop_positions(text, unit)
        ok = stopped is not None and later_stopping is not None and stopped < later_stopping
        results.check(f"{unit} stopped before {later} began to stop", ok,
                      "in that order" if ok else f"stopped at {stopped}, {later} stopping at {later_stopping}")


def clean_shutdown(machine: Machine, lab: Lab, results: Results) -> None:
    p = lab.plan
    mark = len(machine.console_text())
    bound = lab.timeout(60)
    start = time.monotonic()
    try:
        machine.shutdown(bound)
        exited = True
    except TestFailure:
        exited = False
    results.figure("powerdown_s", round(time.monotonic() - start, 1))
    results.require(f"system_powerdown: the VM stops within {bound:.0f} s", exited,
                    f"{time.monotonic() - start:.0f} s")
    text = machine.console_text()[mark:]  # without systemd's colours
    dhcp = [u for u in lab.expected.running if not u.startswith("supplicant@")]
    if p.wireless is not None:
        sup = f"supplicant@{p.radio}.service"
        sup_stopping, _ = stop_positions(text, sup)
        results.check(f"{sup} stopped", sup_stopping is not None,
                      "seen on the console" if sup_stopping else "not seen")
        _stopped_before(results, text, dhcp, sup)
    _stopped_before(results, text, [*dhcp, *(u for u in lab.expected.exited if u.startswith("static@"))],
                    f"master@{p.bond}.service")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("boot-wired-primary", "Boot, wired primary", boot_wired_primary),
    Scenario("bridge-boot", "Boot, a bridge over the wired NIC", bridge_boot, shapes=("bridge",)),
    Scenario("bridge-unplug", "Bridge member: cable out and in, NIC unplugged and replugged", bridge_unplug,
             shapes=("bridge",)),
    Scenario("wired-8021x", "Wired 802.1X: authorized at boot, refused with a wrong password, authorized again",
             wired_8021x, shapes=("bond", "bridge"), needs_wired_auth=True),
    Scenario("failover", "Failover (set_link wired off)", failover),
    Scenario("failback", "Failback (set_link wired on)", failback),
    Scenario("wifi-only-boot", "Wifi-only boot (dhclient MAC trap)", wifi_only_boot),
    Scenario("hotplug", "Hot-unplug and replug (wired NIC, radio)", hotplug),
    Scenario("ap-lost", "Access point lost and back", ap_lost),
    Scenario("rfkill", "Radio blocked and unblocked (rfkill)", rfkill),
    Scenario("dhclient-release", "Stop and restart dhclient@ (release, nothing else touched)", dhclient_release,
             shapes=("bond", "bridge")),
    Scenario("static-edit", "Stop static@, edit network.conf, start static@", static_edit, shapes=("bond", "bridge")),
    Scenario("supplicant-restart", "Stop and start supplicant@ on the wire", supplicant_restart),
    Scenario("master-restart", "Stop and start master@ (teardown order, bring-up)", master_restart,
             shapes=("bond", "bridge")),
    Scenario("card-insert", "Wireless card removed and inserted", card_insert),
    Scenario("two-masters", "Two bonds, each with its own options, each failing over on its own", two_masters,
             needs_second=True),
    Scenario("clean-shutdown", "Clean shutdown (stop ordering)", clean_shutdown, shapes=("bond", "bridge")),
)
BY_NAME = {s.name: s for s in SCENARIOS}
