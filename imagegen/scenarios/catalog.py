"""The scenarios of the lab, in the order they run. The first seven are functions of a booted LabSession
and a Recorder, and read like the seed's "check the results": list the units, cat /proc/net/bonding,
look at ip address. The article's operations (imagegen.scenarios.operations) are written on the public
Machine and Lab API.
"""

from __future__ import annotations

import re
import time

from imagegen.report.timeline import Timeline, parse_kernel_marks, plot_timeline
from imagegen.scenarios import operations as ops
from imagegen.scenarios.bonding import BondStatus
from imagegen.scenarios.probe import ProbeResult
from imagegen.scenarios.scenario import Scenario, ScenarioFn, on_public_api
from imagegen.scenarios.session import LabSession, Recorder
from imagegen.vm.agent import AgentError
from imagegen.vm.lab import HOSTAPD_UNIT

__all__ = ["BY_NAME", "SCENARIOS", "Scenario", "ScenarioFn", "stop_positions"]
# systemd colours unit names on the console.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _probe_figures(rec: Recorder, prefix: str, probe: ProbeResult, qmp_guest_time: float,
                   switch_s: float) -> float:
    """Record the probe's figures; returns the outage (ms) around the QMP command."""
    gap, start = probe.gap_around(qmp_guest_time - 0.5, qmp_guest_time + switch_s + 1.0)
    rec.figure(f"{prefix}_probes_sent", probe.sent)
    rec.figure(f"{prefix}_probes_lost", probe.lost)
    rec.figure(f"{prefix}_gap_ms", gap)
    if start is not None:
        # Where that gap begins relative to the QMP command, on the guest's clock.
        rec.figure(f"{prefix}_gap_from_qmp_ms", round((start - qmp_guest_time) * 1000, 1))
    rec.figure(f"{prefix}_largest_gap_ms", probe.gap_ms)
    return gap


def _start_probe6(lab: LabSession, rec: Recorder, prefix: str) -> str | None:
    """Probe the bond's IPv6 address too, beside the IPv4 one: after a switch the peer must also learn
    the new MAC for it (unsolicited neighbour advertisements)."""
    target = lab.probe_target6()
    if target is None:
        rec.figure(f"{prefix}_v6_probe", "none: the bond has no global IPv6 address")
        return None
    lab.start_probe(f"{prefix}-v6", target=target)
    return target


def _check_probe6(rec: Recorder, prefix: str, probe: ProbeResult | None, target: str | None,
                  qmp_guest_time: float, switch_s: float) -> None:
    if probe is None or target is None:
        return
    gap = _probe_figures(rec, f"{prefix}_v6", probe, qmp_guest_time, switch_s)
    rec.check(f"IPv6 traffic to {target} continues", probe.replies_after(qmp_guest_time + switch_s),
              _traffic_detail(probe, gap))


def _traffic_detail(probe: ProbeResult, gap: float) -> str:
    tail = "" if probe.recovered else ", not over when the probe stopped"
    return f"{probe.received}/{probe.sent} replies, {probe.lost} lost, outage {gap} ms{tail}"


def _timeline(lab: LabSession, rec: Recorder, prefix: str, probe: ProbeResult, qmp_guest_time: float) -> None:
    """Draw the event's timeline into the artifacts directory, with the kernel's switch marks."""
    try:
        marks = parse_kernel_marks(lab.bond_kernel_log(), lab.plan.bond)
    except AgentError:
        marks = ()  # the picture without the kernel's marks still shows the outage
    switches = [m for m in marks if m.kind == "active" and m.time >= qmp_guest_time - 0.5]
    if switches:
        rec.figure(f"{prefix}_kernel_switch_from_qmp_ms", round((switches[0].time - qmp_guest_time) * 1000, 1))
    if lab.artifacts is None:
        return
    title = f"{prefix}: {lab.plan.bond}, probe from netns ap to {lab.plan.probe_target()}"
    path = plot_timeline(Timeline(title, probe.interval_ms, probe.reply_times, qmp_guest_time, marks,
                                  unanswered_until=probe.unanswered_until),
                         lab.artifacts / f"timeline-{prefix}.svg")
    rec.figure(f"{prefix}_timeline", path.name)


def _active(b: BondStatus | None) -> str:
    if b is None:
        return "no bond"
    return f"active slave {b.active or 'none'}"


def _addresses4(lab: LabSession) -> set[str]:
    link = lab.bond_link()
    return {str(a) for a in link.with_family(4)} if link else set()


# 1. Boot, wired primary.

def boot_wired_primary(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    rec.figure("agent_ready_s", round(lab.boot_seconds, 1))
    want = p.primary or p.wired
    bond, waited = lab.wait_active(want, lab.timeout(120))
    rec.require(f"{p.bond} exists with active slave {want}", bond is not None,
                f"after {waited:.0f} s: {_active(lab.bond())}")
    assert bond is not None
    rec.figure("active_slave_after_agent_s", round(waited, 1))
    rec.check("bonding mode is active-backup", bond.mode == "active-backup", bond.mode)
    rec.check(f"fail_over_mac is {p.fail_over_mac}", bond.fail_over_mac == p.fail_over_mac, bond.fail_over_mac)
    rec.check(f"primary slave is {p.primary}", bond.primary == p.primary, str(bond.primary))
    held = lab.bond_options("num_grat_arp", "peer_notif_delay")
    rec.check(f"peer notifications after a switch: {p.num_grat_arp}, {p.peer_notif_delay} ms apart",
              held == {"num_grat_arp": str(p.num_grat_arp), "peer_notif_delay": str(p.peer_notif_delay)},
              f"kernel: num_grat_arp {held.get('num_grat_arp')}, peer_notif_delay {held.get('peer_notif_delay')}")
    # The active slave can be there before the other one: each member's slave unit waits for its own
    # device, and the radio's comes later than the wired NIC's.
    def both_enslaved() -> BondStatus | None:
        b = lab.bond()
        return b if b is not None and b.slave(p.wired) and b.slave(p.wireless) else None

    both, waited_both = lab.wait_for(both_enslaved, lab.timeout(60))
    seen = both or lab.bond()
    rec.check(f"both {p.wired} and {p.wireless} are slaves", both is not None,
              (", ".join(f"{s.name} MII {s.mii_status}" for s in seen.slaves) if seen else "no bond")
              + f" (after {waited_both:.1f} s)")

    wants = {u: "active/running" for u in lab.expected.running} | {u: "active/exited"
                                                                   for u in lab.expected.exited}
    states, waited = lab.wait_units(wants, lab.timeout(60))
    for unit, want_state in wants.items():
        rec.check(f"{unit} {want_state}", states[unit] == want_state, states[unit])

    if p.dhcp4:
        lease, waited = lab.wait_for(lab.lease4, lab.timeout(90))
        rec.check("DHCPv4 lease on the bond", bool(lease), ", ".join(lease or []) or f"none after {waited:.0f} s")
        if lease and lab.machine.launched_at:
            rec.figure("lease4_after_start_s", round(time.time() - lab.machine.launched_at, 1))
    if p.dhcp6:
        addr6, waited = lab.wait_for(lab.address6, lab.timeout(60))
        rec.check("DHCPv6 address on the bond", bool(addr6), ", ".join(addr6 or []) or
                  f"none after {waited:.0f} s")
    present = _addresses4(lab)
    for a in p.static4:
        rec.check(f"static fail-safe address {a}", str(a) in present, ", ".join(sorted(present)) or "none")
    link = lab.bond_link()
    rec.check(f"{p.bond} MAC is the wired MAC {lab.wired_mac}", link is not None and link.mac == lab.wired_mac,
              link.mac if link else "no bond")
    rec.check(f"the AP reaches {p.probe_target()}", lab.ap_ping(p.probe_target()), "ping from netns ap")


# 2. Failover.

def _wpa_completed(lab: LabSession, ifname: str) -> bool:
    r = lab.agent.exec(["wpa_cli", "-i", ifname, "status"], timeout=30)
    return r.ok and "wpa_state=COMPLETED" in r.stdout


def _on_wired(lab: LabSession, rec: Recorder) -> None:
    """Require the state the wired-side scenarios start from: the wired link on, the bond on the wired
    NIC, the declared DHCP addresses in place. After the scenario before it in a full run that holds at
    once; a scenario run alone (--scenario) finds the lab as the boot, or another scenario, left it."""
    p = lab.plan
    if not lab.wired_link_up:
        lab.set_wired_link(True)
    bond, waited = lab.wait_active(p.wired, lab.timeout(120))
    rec.require(f"starts on {p.wired}", bond is not None, f"after {waited:.0f} s: {_active(lab.bond())}")
    if p.dhcp4:
        lease, waited = lab.wait_for(lab.lease4, lab.timeout(90))
        rec.require("the bond has its DHCPv4 lease", bool(lease), f"none after {waited:.0f} s")
    if p.dhcp6:
        addr6, waited = lab.wait_for(lab.address6, lab.timeout(60))
        rec.require("the bond has its DHCPv6 address", bool(addr6), f"none after {waited:.0f} s")


def _backup_ready(lab: LabSession, rec: Recorder) -> None:
    # A backup that has not finished its WPA handshake is no backup: under a slow boot the supplicant
    # can still be associating when the wire is cut, and the bond then switches to a port that
    # carries nothing yet.
    p = lab.plan
    ready, waited_ready = lab.wait_for(lambda: _wpa_completed(lab, p.wireless), lab.timeout(30))
    rec.figure("backup_ready_wait_s", round(waited_ready, 2))
    rec.require(f"{p.wireless} has completed its WPA handshake before the wire is cut", bool(ready),
                f"{'after' if ready else 'not after'} {waited_ready:.1f} s")


def failover(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    _on_wired(lab, rec)
    _backup_ready(lab, rec)
    addrs_before = _addresses4(lab)
    station = lab.station_mac()
    lab.start_probe("failover")
    target6 = _start_probe6(lab, rec, "failover")
    time.sleep(1.0)
    offset, uncertainty = lab.clock_offset()
    rec.figure("clock_offset_uncertainty_ms", round(uncertainty * 1000, 1))
    t_qmp = lab.set_wired_link(False)
    bond, waited = lab.wait_active(p.wireless, lab.timeout(15))
    rec.figure("switch_seen_after_qmp_s", round(waited, 2))
    rec.check(f"set_link {p.wired_nic.id} off: active slave becomes {p.wireless}", bond is not None,
              f"after {waited:.1f} s" if bond else _active(lab.bond()))
    time.sleep(3.0)
    probe = lab.stop_probe("failover")
    probe6 = lab.stop_probe("failover-v6") if target6 else None
    link = lab.bond_link()
    want_mac = station if p.fail_over_mac == "active" else lab.wired_mac
    rec.check(f"{p.bond} MAC follows fail_over_mac={p.fail_over_mac} ({want_mac})",
              link is not None and link.mac == want_mac, link.mac if link else "no bond")
    after = _addresses4(lab)
    rec.check("IPv4 addresses unchanged", after == addrs_before,
              f"before {sorted(addrs_before)}, after {sorted(after)}")
    gap = _probe_figures(rec, "failover", probe, t_qmp + offset, waited)
    _timeline(lab, rec, "failover", probe, t_qmp + offset)
    rec.check("traffic continues over the wlan", probe.replies_after(t_qmp + offset + waited),
              _traffic_detail(probe, gap))
    rec.check("no gap over 3 s in the whole probe", probe.gap_ms < 3000, f"largest {probe.gap_ms} ms")
    _check_probe6(rec, "failover", probe6, target6, t_qmp + offset, waited)


# 3. Failback.

def failback(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    if lab.wired_link_up:
        # Run without the failover before it: first bring about the state a failover ends in.
        _on_wired(lab, rec)
        _backup_ready(lab, rec)
        lab.set_wired_link(False)
    before, _ = lab.wait_active(p.wireless, lab.timeout(15))
    rec.require(f"starts on {p.wireless} with the wired link off", before is not None, _active(lab.bond()))
    lab.start_probe("failback")
    target6 = _start_probe6(lab, rec, "failback")
    time.sleep(1.0)
    offset, uncertainty = lab.clock_offset()
    rec.figure("clock_offset_uncertainty_ms", round(uncertainty * 1000, 1))
    t_qmp = lab.set_wired_link(True)
    # With a primary and primary_reselect always/better, the bond returns to the wired primary.
    want = p.wired if (p.primary == p.wired) else p.wireless
    bond, waited = lab.wait_active(want, lab.timeout(15))
    rec.figure("switch_seen_after_qmp_s", round(waited, 2))
    rec.check(f"set_link {p.wired_nic.id} on: active slave returns to {want}", bond is not None,
              f"after {waited:.1f} s" if bond else _active(lab.bond()))
    time.sleep(3.0)
    probe = lab.stop_probe("failback")
    probe6 = lab.stop_probe("failback-v6") if target6 else None
    link = lab.bond_link()
    rec.check(f"{p.bond} MAC is the wired MAC again", link is not None and link.mac == lab.wired_mac,
              link.mac if link else "no bond")
    gap = _probe_figures(rec, "failback", probe, t_qmp + offset, waited)
    _timeline(lab, rec, "failback", probe, t_qmp + offset)
    rec.check("traffic continues", probe.replies_after(t_qmp + offset + waited),
              _traffic_detail(probe, gap))
    rec.check("no gap over 3 s in the whole probe", probe.gap_ms < 3000, f"largest {probe.gap_ms} ms")
    _check_probe6(rec, "failback", probe6, target6, t_qmp + offset, waited)


# 4. Wifi-only boot: the seed's dhclient MAC trap.

def wifi_only_boot(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    rec.figure("agent_ready_s", round(lab.boot_seconds, 1))
    bond, waited = lab.wait_active(p.wireless, lab.timeout(120))
    rec.require(f"booted with {p.wired} link off: active slave is {p.wireless}", bond is not None,
                f"after {waited:.0f} s: {_active(lab.bond())}")
    if p.dhcp4:
        lease, waited = lab.wait_for(lab.lease4, lab.timeout(120))
        rec.check("dhclient still gets a DHCPv4 lease", bool(lease),
                  ", ".join(lease or []) or f"none after {waited:.0f} s")
        if lease and lab.machine.launched_at:
            rec.figure("lease4_after_start_s", round(time.time() - lab.machine.launched_at, 1))
    link = lab.bond_link()
    if p.fail_over_mac == "active":
        station = lab.station_mac()
        rec.check(f"{p.bond} MAC is the wlan MAC {station}", link is not None and link.mac == station,
                  link.mac if link else "no bond")
    states = lab.unit_states(list(lab.expected.running))
    for unit, state in states.items():
        rec.check(f"{unit} active/running", state == "active/running", state)
    rec.check(f"the AP reaches {p.probe_target()} over the wlan", lab.ap_ping(p.probe_target()), "ping")


# 5. Hot-unplug and replug of the wired NIC and of the station radio.

def hotplug(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    nic = p.wired_nic
    slave_unit = f"{p.wired}@{p.bond}.service"
    _on_wired(lab, rec)

    ev = lab.qmp.device_del(nic.id, timeout=lab.timeout(30))
    rec.check(f"device_del {nic.id}: DEVICE_DELETED, gone from QEMU", nic.id not in lab.qmp.devices(),
              f"event at {ev.time:.3f}")
    states, waited = lab.wait_units({slave_unit: "inactive"}, lab.timeout(30))
    rec.check(f"{slave_unit} stops", states[slave_unit].startswith("inactive"), states[slave_unit])
    bond, waited = lab.wait_active(p.wireless, lab.timeout(15))
    rec.check(f"bond stays up on {p.wireless}", bond is not None and bond.slave(p.wired) is None,
              _active(lab.bond()))

    t_add = lab.qmp.device_add(nic.device_args())
    lab.wired_link_up = True  # a new device: its link starts up
    states, waited = lab.wait_units({slave_unit: "active/exited"}, lab.timeout(60))
    rec.check(f"device_add {nic.id}: {slave_unit} starts by itself", states[slave_unit] == "active/exited",
              f"{states[slave_unit]} after {waited:.1f} s")
    want = p.wired if p.primary == p.wired else p.wireless
    bond, waited = lab.wait_active(want, lab.timeout(30))
    rec.figure("wired_replug_to_active_s", round(time.time() - t_add, 1))
    rec.check(f"{p.wired} re-enslaved and active again", bond is not None and bond.slave(p.wired) is not None,
              _active(lab.bond()))

    # The radio: removing the station's interface is what unplugging a wireless card does to the
    # network stack (the device, its slave and supplicant units go); adding it back is the replug.
    sup = f"supplicant@{p.wireless}.service"
    wslave = f"{p.wireless}@{p.bond}.service"
    phy = lab.sh(f"cat /sys/class/net/{p.wireless}/phy80211/name").strip()
    lab.sh(f"iw dev {p.wireless} del")
    states, waited = lab.wait_units({sup: "inactive", wslave: "inactive"}, lab.timeout(30))
    rec.check(f"{p.wireless} removed: {sup} and {wslave} stop",
              all(s.startswith("inactive") for s in states.values()), str(states))
    b = lab.bond()
    rec.check(f"bond keeps {p.wired} active", b is not None and b.active == p.wired and
              b.slave(p.wireless) is None, _active(b))
    t_add = time.time()
    lab.sh(f"iw phy {phy} interface add {p.wireless} type managed")
    states, waited = lab.wait_units({sup: "active/running", wslave: "active/exited"}, lab.timeout(60))
    rec.check(f"{p.wireless} added: {sup} and {wslave} start again",
              states[sup] == "active/running" and states[wslave] == "active/exited", str(states))

    def associated() -> bool:
        b = lab.bond()
        s = b.slave(p.wireless) if b else None
        return s is not None and s.mii_status == "up"
    ok, waited = lab.wait_for(associated, lab.timeout(60))
    rec.figure("radio_readd_to_associated_s", round(time.time() - t_add, 1))
    rec.check(f"{p.wireless} is a slave again with its link up (associated)", bool(ok),
              f"after {waited:.0f} s")


# 6. Access point lost.

def ap_lost(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    lab.set_wired_link(False)
    bond, _ = lab.wait_active(p.wireless, lab.timeout(15))
    rec.require(f"on {p.wireless} with the wired link off", bond is not None,
                _active(lab.bond()))
    lab.sh(f"systemctl stop {HOSTAPD_UNIT}")
    t0 = time.monotonic()
    bond, waited = lab.wait_active(None, lab.timeout(30))
    rec.figure("no_active_slave_after_s", round(waited, 1))
    rec.check("hostapd stopped: the bond has no active slave", bond is not None,
              _active(lab.bond()))
    present = _addresses4(lab)
    for a in p.static4:
        rec.check(f"static fail-safe address {a} stays", str(a) in present, ", ".join(sorted(present)))
    lab.sh(f"systemctl start {HOSTAPD_UNIT}")
    t1 = time.monotonic()
    bond, waited = lab.wait_active(p.wireless, lab.timeout(90))
    rec.figure("recovered_after_ap_restart_s", round(time.monotonic() - t1, 1))
    rec.check(f"hostapd back: {p.wireless} active again without manual action", bond is not None,
              f"after {waited:.0f} s (AP was down {t1 - t0:.0f} s)")
    ok, _ = lab.wait_for(lambda: lab.ap_ping(p.probe_target(), count=1), lab.timeout(30))
    rec.check(f"the AP reaches {p.probe_target()} again", bool(ok), "ping")
    lab.set_wired_link(True)
    lab.wait_active(p.primary or p.wired, lab.timeout(15))


# 7. Clean shutdown.

def stop_positions(console: str, unit: str) -> tuple[int | None, int | None]:
    """Offsets of systemd's 'Stopping <unit>' and 'Stopped <unit>' console lines (None: not seen).

    The console shows, e.g.:  "         Stopping dhclient@bond0.service - ISC dhclient on interface bond0..."
                              "[  OK  ] Stopped dhclient@bond0.service - ISC dhclient on interface bond0."
    """
    name = re.escape(unit)
    stopping = re.search(rf"Stopping {name}\b", console)
    stopped = re.search(rf"Stopped {name}\b", console)
    return (stopping.start() if stopping else None, stopped.start() if stopped else None)


def clean_shutdown(lab: LabSession, rec: Recorder) -> None:
    p = lab.plan
    log = lab.machine.sockets.serial_log
    mark = log.stat().st_size if log.exists() else 0
    bound = lab.timeout(60)
    start = time.monotonic()
    lab.qmp.system_powerdown()
    exited = lab.machine.wait_exit(bound)
    rec.figure("powerdown_s", round(time.monotonic() - start, 1))
    rec.require(f"system_powerdown: the VM stops within {bound:.0f} s", exited,
                f"{time.monotonic() - start:.0f} s")
    text = ANSI.sub("", log.read_bytes()[mark:].decode(errors="replace"))
    dhcp = [u for u in lab.expected.running if not u.startswith("supplicant@")]
    sup = f"supplicant@{p.wireless}.service"
    sup_stopping, _ = stop_positions(text, sup)
    rec.check(f"{sup} stopped", sup_stopping is not None, "seen on the console" if sup_stopping else "not seen")
    for unit in dhcp:
        _, stopped = stop_positions(text, unit)
        rec.check(f"{unit} stopped before {sup} began to stop",
                  stopped is not None and sup_stopping is not None and stopped < sup_stopping,
                  "order as the seed requires" if stopped is not None and sup_stopping is not None
                  and stopped < sup_stopping else f"stopped at {stopped}, supplicant stopping at {sup_stopping}")
    master = f"master@{p.bond}.service"
    m_stopping, _ = stop_positions(text, master)
    for unit in [*dhcp, *(u for u in lab.expected.exited if u.startswith("static@"))]:
        _, stopped = stop_positions(text, unit)
        rec.check(f"{unit} stopped before {master} began to stop",
                  stopped is not None and m_stopping is not None and stopped < m_stopping,
                  f"stopped at {stopped}, master stopping at {m_stopping}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("boot-wired-primary", "Boot, wired primary", boot_wired_primary),
    Scenario("failover", "Failover (set_link wired off)", failover),
    Scenario("failback", "Failback (set_link wired on)", failback),
    Scenario("wifi-only-boot", "Wifi-only boot (dhclient MAC trap)", wifi_only_boot),
    Scenario("hotplug", "Hot-unplug and replug (wired NIC, radio)", hotplug),
    Scenario("ap-lost", "Access point lost and back", ap_lost),
    # The article's operations, on the running units ("check the results" and the paragraphs after it).
    Scenario("dhclient-release", "systemctl stop/restart dhclient@ (the lease alone goes and comes back)",
             on_public_api("dhclient-release", ops.dhclient_release), ops.no_dhcp4),
    Scenario("static-edit", "systemctl stop static@, edit network.conf, start it",
             on_public_api("static-edit", ops.static_edit), ops.no_static4),
    Scenario("supplicant-restart", "systemctl stop/start supplicant@ on the wired link",
             on_public_api("supplicant-restart", ops.supplicant_restart)),
    Scenario("master-restart", "systemctl stop/start master@ (teardown order, bring-up)",
             on_public_api("master-restart", ops.master_restart)),
    Scenario("clean-shutdown", "Clean shutdown (stop ordering)", clean_shutdown),
)
BY_NAME = {s.name: s for s in SCENARIOS}
