"""The article's operations, proven: what its "check the results" section says an administrator may do
to the running units, each done in the lab VM with systemctl and checked as the article checks
(/proc/net/bonding/bond0, `ip address`, `systemctl list-units`, the journal).

    "a dhclient configured IPv4 address may be removed without disturbing any other network
     configuration or functionality with  systemctl stop dhclient@bond0.service"

They are written on the public test API (Machine, Lab), as a user's own checks are, with a Recorder
for their named checks and figures. Each starts from the wired link with the declared addresses and
leaves the lab so, for the scenarios after it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from imagegen.scenarios.bonding import BondStatus, Link, parse_bonding, parse_ip_json
from imagegen.scenarios.journal import parse_unit_events, parse_unit_states, span, stop_order
from imagegen.scenarios.probe import ProbeResult
from imagegen.scenarios.session import Recorder
from imagegen.testing.errors import WaitTimeout
from imagegen.testing.lab import Lab
from imagegen.testing.machine import Machine
from imagegen.testing.waits import wait_until
from imagegen.vm.agent import AgentError
from imagegen.vm.lab import DNSMASQ_UNIT, LabPlan

T = TypeVar("T")

NETWORK_CONF = "/etc/conf.d/network.conf"
DNSMASQ_LEASES = "/run/imagegen-lab/dnsmasq.leases"
# Where static-edit keeps the declared network.conf while it edits the guest's.
CONF_BACKUP = "/run/imagegen-lab/network.conf.declared"
# A destination the edited network.conf routes through the AP: TEST-NET-2, which nothing else uses.
EXTRA_ROUTE_TO = "198.51.100.0/24"
# What may stand in a network.conf value that static-edit writes back with sed: addresses, prefixes,
# route words and the quotes around them.
_SAFE_VALUE = re.compile(r'^[0-9A-Za-z.:/%" _-]*$')


# What the guest shows.

@dataclass(frozen=True)
class Units:
    """The article's units for the lab's bond."""

    master: str
    slaves: tuple[str, ...]
    supplicant: str
    dhclient: str | None
    dhcp6: str | None
    static: str | None

    @property
    def configs(self) -> tuple[str, ...]:
        """The network configurations on the bond: dhclient@, dhcp6c@ (or dhclient6@), static@."""
        return tuple(u for u in (self.dhclient, self.dhcp6, self.static) if u)

    @property
    def all(self) -> tuple[str, ...]:
        return (self.master, *self.slaves, *self.configs, self.supplicant)


def units_of(lab: Lab) -> Units:
    p, b = lab.plan, lab.plan.bond
    return Units(master=f"master@{b}.service", slaves=(f"{p.wired}@{b}.service", f"{p.wireless}@{b}.service"),
                 supplicant=f"supplicant@{p.wireless}.service",
                 dhclient=f"dhclient@{b}.service" if p.dhcp4 else None,
                 dhcp6=f"{lab.dhcp6_unit}@{b}.service" if p.dhcp6 else None,
                 static=f"static@{b}.service" if p.static4 or p.static6 else None)


@dataclass(frozen=True)
class View:
    """The bond at one moment: /proc/net/bonding/<bond> and `ip -j address`."""

    name: str
    bond: BondStatus | None
    links: dict[str, Link]
    static6: frozenset[str]

    @property
    def link(self) -> Link | None:
        return self.links.get(self.name)

    def addresses(self, family: int) -> set[str]:
        return {str(a) for a in self.link.with_family(family)} if self.link else set()

    @property
    def lease4(self) -> set[str]:
        """The DHCPv4 address: dhclient adds it with the lease's lifetime, the static ones have none."""
        return {str(a) for a in self.link.with_family(4, dynamic=True)} if self.link else set()

    @property
    def dhcp6(self) -> set[str]:
        """Global IPv6 addresses beyond the static ones (WIDE dhcp6c adds its address without lifetimes)."""
        return {a for a in self.addresses(6) if a.split("/")[0] not in self.static6}

    def active(self) -> str:
        if self.bond is None:
            return f"no {self.name}"
        return f"active slave {self.bond.active or 'none'}"

    def slaves(self) -> str:
        if self.bond is None:
            return f"no {self.name}"
        return ", ".join(f"{s.name} MII {s.mii_status}" for s in self.bond.slaves) or "no slaves"


def look(machine: Machine, plan: LabPlan) -> View:
    status, text = machine.execute(f"cat /proc/net/bonding/{shlex.quote(plan.bond)}", timeout=60)
    links = parse_ip_json(machine.succeed("ip -j address show", timeout=60))
    return View(plan.bond, parse_bonding(text) if status == 0 else None, links,
                frozenset(str(a.ip) for a in plan.static6))


def states(machine: Machine, units: Iterable[str]) -> dict[str, str]:
    names = list(units)
    out = machine.succeed("systemctl show --property=Id,ActiveState,SubState -- "
                          + " ".join(shlex.quote(u) for u in names), timeout=60)
    return parse_unit_states(out, names)


def poll(what: str, attempt: Callable[[], T | None], timeout: float) -> tuple[T | None, float]:
    """attempt() until it gives something, for at most timeout seconds: (what it gave or None, seconds)."""
    def guarded() -> T | None:
        try:
            return attempt()
        except AgentError:
            return None  # a busy emulated guest whose agent did not answer in time: a poll that saw nothing

    start = time.monotonic()
    try:
        waited = wait_until(what, guarded, timeout)
    except WaitTimeout:
        return None, time.monotonic() - start
    return waited.value, waited.seconds


def wait_view(machine: Machine, plan: LabPlan, what: str, holds: Callable[[View], bool],
              timeout: float) -> tuple[View | None, float]:
    """Look at the bond until holds(view): (that view or None, seconds waited)."""
    def attempt() -> View | None:
        view = look(machine, plan)
        return view if holds(view) else None
    return poll(what, attempt, timeout)


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return round(time.monotonic() - start, 2)


def journal_cursor(machine: Machine) -> str:
    """The cursor of the journal's last entry: what came after it is what the next command caused."""
    entry = json.loads(machine.succeed("journalctl --no-pager -n 1 -o json", timeout=60).strip().splitlines()[-1])
    return str(entry["__CURSOR"])


def journal_after(machine: Machine, cursor: str, *matches: str) -> str:
    return machine.succeed(f"journalctl --no-pager -o json --after-cursor={shlex.quote(cursor)} "
                           + " ".join(shlex.quote(m) for m in matches), timeout=120)


def conf_value(machine: Machine, name: str) -> str:
    """A variable of network.conf as the units read it (an EnvironmentFile, and valid sh)."""
    script = f". {NETWORK_CONF}; printf '%s' \"${name}\""
    return machine.succeed(f"sh -c {shlex.quote(script)}", timeout=60)


def route_words(value: str) -> list[list[str]]:
    """A network.conf ROUTES value, '"to P via G" "to Q via H"', as the route specs it holds."""
    return [spec.split() for spec in re.findall(r'"([^"]*)"', value) if spec.split()]


def route_present(words: list[str], routes: list[dict[str, Any]]) -> bool:
    """Whether `ip -j route show dev IF` (both families) holds the route `ip route replace WORDS` adds."""
    def norm(dst: str) -> str:
        if dst == "default":
            return dst
        net = ipaddress.ip_network(dst, strict=False)
        return "default" if net.prefixlen == 0 else str(net)

    spec = dict(zip(words[::2], words[1::2], strict=False))
    to = norm(spec.get("to", words[0] if words else ""))
    for r in routes:
        if norm(str(r.get("dst", ""))) == to and ("via" not in spec or r.get("gateway") == spec["via"]):
            return True
    return False


def static_routes(machine: Machine, plan: LabPlan) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """The routes network.conf declares for the bond, and the bond's routes now."""
    declared = route_words(conf_value(machine, f"{plan.bond}ROUTES"))
    routes = []
    for family in ("-4", "-6"):
        routes += json.loads(machine.succeed(f"ip -j {family} route show dev {shlex.quote(plan.bond)}",
                                             timeout=60) or "[]")
    return declared, routes


def spare_address(plan: LabPlan) -> ipaddress.IPv4Interface:
    """An address of the bond's subnet that nothing in the lab uses: from the top of the lower half
    (the lab's DHCP range is the upper half), not a static one, not the AP's."""
    hosts = list(plan.subnet4.hosts())
    taken = {a.ip for a in plan.static4} | {plan.ap_addr4.ip}
    for host in reversed(hosts[:len(hosts) // 2]):
        if host not in taken:
            return ipaddress.IPv4Interface(f"{host}/{plan.subnet4.prefixlen}")
    raise ValueError(f"no free address in {plan.subnet4}")


def sed_set(name: str, value: str) -> str:
    """The sed command that sets network.conf's NAME to value, as an administrator edits the file."""
    if not _SAFE_VALUE.match(value) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"{name}={value!r}: not a network.conf line static-edit writes")
    expression = f"s|^{name}=.*|{name}='{value}'|"
    return f"sed -i {shlex.quote(expression)} {NETWORK_CONF}"


def _traffic(result: ProbeResult) -> tuple[bool, str]:
    """No probe lost while the operation ran: every probe answered but the last, which can still be on
    its way when the probe stops."""
    missing = [s for s in result.lost_seqs if s < result.sent]
    ok = not missing and result.recovered and result.received > 0
    return ok, (f"{result.received}/{result.sent} replies, {len(missing)} lost, largest interval between "
                f"replies {result.gap_ms} ms")


# Where each starts from.

def _on(lab: Lab, slave: str) -> Callable[[View], bool]:
    return lambda v: v.bond is not None and v.bond.active == slave


def start_on_wired(machine: Machine, lab: Lab, rec: Recorder) -> View:
    """The wired link on, the bond on the wired NIC, the declared DHCP addresses in place: what the
    scenario before leaves, or what a scenario run alone (--scenario) waits for."""
    p = lab.plan
    lab.wired(True)
    view, waited = wait_view(machine, p, f"{p.bond} on {p.wired}", _on(lab, p.wired), lab.timeout(120))
    rec.require(f"starts on {p.wired}", view is not None, f"after {waited:.0f} s: {look(machine, p).active()}")
    if p.dhcp4:
        view, waited = wait_view(machine, p, "a DHCPv4 lease", lambda v: bool(v.lease4), lab.timeout(90))
        rec.require(f"{p.bond} has its DHCPv4 lease", view is not None,
                    _listed(view.lease4) if view else f"none after {waited:.0f} s")
    if p.dhcp6:
        view, waited = wait_view(machine, p, "a DHCPv6 address", lambda v: bool(v.dhcp6), lab.timeout(60))
        rec.require(f"{p.bond} has its DHCPv6 address", view is not None,
                    _listed(view.dhcp6) if view else f"none after {waited:.0f} s")
    assert view is not None
    return view


def _listed(addresses: Iterable[str]) -> str:
    return ", ".join(sorted(addresses)) or "none"


def _bond_untouched(rec: Recorder, plan: LabPlan, before: View, after: View) -> None:
    b0, b1 = before.bond, after.bond
    rec.check(f"{plan.bond} still on {plan.wired}", b1 is not None and b1.active == plan.wired, after.active())
    up = b1 is not None and all(_slave_mii(after, n) == "up" for n in (plan.wired, plan.wireless))
    rec.check(f"both slaves still enslaved with their link up ({plan.wired}, {plan.wireless})", up, after.slaves())
    if b0 is not None and b1 is not None:
        failures = {s.name: s.link_failures for s in b0.slaves}
        more = [s.name for s in b1.slaves if s.link_failures > failures.get(s.name, 0)]
        rec.check("no slave lost its link meanwhile", not more,
                  f"link failure count rose on {', '.join(more)}" if more else "link failure counts unchanged")


def _units_unchanged(rec: Recorder, machine: Machine, before: dict[str, str]) -> None:
    now = states(machine, before)
    changed = [f"{u} {before[u]} → {now[u]}" for u in before if now[u] != before[u]]
    rec.check("every other unit as it was", not changed,
              "; ".join(changed) or ", ".join(f"{u} {s}" for u, s in now.items()))


def _slave_mii(view: View, name: str) -> str:
    s = view.bond.slave(name) if view.bond else None
    return s.mii_status if s else "not a slave"


def _traffic_check(rec: Recorder, what: str, result: ProbeResult | None) -> None:
    if result is None:
        return
    rec.figure("probe_sent", result.sent)
    rec.figure("probe_lost", result.lost)
    rec.figure("probe_largest_gap_ms", result.gap_ms)
    ok, detail = _traffic(result)
    rec.check(what, ok, detail)


# 1. systemctl stop / restart dhclient@bond0.

def no_dhcp4(plan: LabPlan) -> str | None:
    if plan.dhcp4:
        return None
    return f"{plan.bond} has no DHCPv4 (dhcp4 = false): there is no dhclient@{plan.bond} to stop"


def dhclient_release(machine: Machine, lab: Lab, rec: Recorder) -> None:
    p, u = lab.plan, units_of(lab)
    assert u.dhclient is not None
    before = start_on_wired(machine, lab, rec)
    lease = before.lease4
    leased_ip = sorted(lease)[0].split("/")[0]
    others = states(machine, [x for x in u.all if x != u.dhclient])
    declared, _ = static_routes(machine, p)
    cursor = journal_cursor(machine)

    probe = lab.probe() if p.static4 else None
    try:
        took = timed(lambda: machine.succeed(f"systemctl stop {u.dhclient}", timeout=lab.timeout(60)))
        rec.figure("stop_s", took)
        gone, _ = wait_view(machine, p, "the lease to go", lambda v: not v.lease4 & lease, lab.timeout(15))
        after = gone or look(machine, p)
        rec.check(f"systemctl stop {u.dhclient}: the DHCPv4 address {_listed(lease)} is removed", gone is not None,
                  f"{p.bond} has {_listed(after.addresses(4))}")
        state = states(machine, [u.dhclient])[u.dhclient]
        rec.check(f"{u.dhclient} inactive", state.startswith("inactive"), state)
        for a in (*p.static4, *p.static6):
            rec.check(f"the static fail-safe address {a} stays", str(a) in after.addresses(a.version),
                      _listed(after.addresses(a.version)))
        if p.dhcp6:
            rec.check("the DHCPv6 address untouched", after.dhcp6 == before.dhcp6,
                      f"before {_listed(before.dhcp6)}, after {_listed(after.dhcp6)}")
        _, routes = static_routes(machine, p)
        for words in declared:
            rec.check(f"the static@ route {' '.join(words)} stays", route_present(words, routes), json.dumps(routes))
        if not declared:
            rec.figure("static_routes", f"none declared ({p.bond}ROUTES is empty)")
        _bond_untouched(rec, p, before, after)
        _units_unchanged(rec, machine, others)
    finally:
        result = probe.stop() if probe else None
    _traffic_check(rec, f"traffic to {p.static4[0].ip if p.static4 else ''} continues without a gap", result)

    # What the DHCP server saw: dnsmasq logs the release and drops the lease from its file.
    release = re.compile(rf"DHCPRELEASE\(\S+\) {re.escape(leased_ip)}\b")

    def released() -> str | None:
        for line in journal_after(machine, cursor, "-u", DNSMASQ_UNIT).splitlines():
            message = str(json.loads(line).get("MESSAGE", "")) if line.startswith("{") else ""
            if release.search(message):
                return message
        return None

    seen, waited = poll("dnsmasq to log the release", released, lab.timeout(20))
    rec.check(f"the lab's dnsmasq got the DHCPRELEASE of {leased_ip}", seen is not None,
              seen or f"not in its journal after {waited:.0f} s")
    rc, leases = machine.execute(f"grep -F ' {leased_ip} ' {DNSMASQ_LEASES}", timeout=60)
    rec.check(f"dnsmasq no longer leases {leased_ip}", rc == 1, leases.strip() or f"not in {DNSMASQ_LEASES}")

    # systemctl restart: a lease again, the same address for the same client identifier (the DUID).
    start = time.monotonic()
    machine.succeed(f"systemctl restart {u.dhclient}", timeout=lab.timeout(60))
    again, waited = wait_view(machine, p, "a new lease", lambda v: bool(v.lease4), lab.timeout(90))
    rec.figure("lease4_after_restart_s", round(time.monotonic() - start, 1))
    rec.check(f"systemctl restart {u.dhclient}: a DHCPv4 lease again", again is not None,
              _listed(again.lease4) if again else f"none after {waited:.0f} s")
    if again is not None:
        rec.check("the same address as before (same DUID)", again.lease4 == lease,
                  f"before {_listed(lease)}, now {_listed(again.lease4)}")


# 2. systemctl stop static@bond0, edit network.conf, systemctl start static@bond0.

def no_static4(plan: LabPlan) -> str | None:
    if plan.static4:
        return None
    return (f"{plan.bond} has no static IPv4 address (bonds.{plan.bond}.addresses): static@ has no fail-safe "
            "address to change")


def static_edit(machine: Machine, lab: Lab, rec: Recorder) -> None:
    p, u = lab.plan, units_of(lab)
    assert u.static is not None
    before = start_on_wired(machine, lab, rec)
    addrs_name, routes_name = f"{p.bond}ADDRS", f"{p.bond}ROUTES"
    declared, _ = static_routes(machine, p)
    statics = {str(a) for a in (*p.static4, *p.static6)}
    dynamic = before.lease4 | before.dhcp6

    def present(view: View) -> set[str]:
        return view.addresses(4) | view.addresses(6)

    took = timed(lambda: machine.succeed(f"systemctl stop {u.static}", timeout=lab.timeout(60)))
    rec.figure("stop_s", took)
    after = look(machine, p)
    rec.check(f"systemctl stop {u.static}: the static addresses {_listed(statics)} are gone",
              not statics & present(after), f"{p.bond} has {_listed(present(after))}")
    _, routes = static_routes(machine, p)
    for words in declared:
        rec.check(f"the static@ route {' '.join(words)} is gone", not route_present(words, routes),
                  json.dumps(routes))
    rec.check("the DHCP addresses stay", dynamic <= present(after),
              f"before {_listed(dynamic)}, now {_listed(present(after))}")

    # The administrator's edit: another fail-safe address, and a route through the AP.
    extra = spare_address(p)
    route = f"to {EXTRA_ROUTE_TO} via {p.ap_addr4.ip}"
    old_addrs, old_routes = conf_value(machine, addrs_name), conf_value(machine, routes_name)
    machine.succeed(f"cp -p {NETWORK_CONF} {CONF_BACKUP}", timeout=60)
    try:
        machine.succeed(sed_set(addrs_name, f"{old_addrs} {extra}".strip()),
                        sed_set(routes_name, f'{old_routes} "{route}"'.strip()), timeout=60)
        new_addrs, new_routes = conf_value(machine, addrs_name), conf_value(machine, routes_name)
        rec.check(f"network.conf edited: {addrs_name} adds {extra}, {routes_name} adds {route!r}",
                  str(extra) in new_addrs.split() and route_words(new_routes)[-1:] == [route.split()],
                  f"{addrs_name}={new_addrs!r} {routes_name}={new_routes!r}")
        took = timed(lambda: machine.succeed(f"systemctl start {u.static}", timeout=lab.timeout(60)))
        rec.figure("start_s", took)
        now = look(machine, p)
        rec.check(f"systemctl start {u.static}: the new fail-safe address {extra} is there",
                  str(extra) in present(now), _listed(present(now)))
        rec.check("and the declared ones again", statics <= present(now), _listed(present(now)))
        _, routes = static_routes(machine, p)
        rec.check(f"and the new route {route}", route_present(route.split(), routes), json.dumps(routes))
        rec.check("the DHCP addresses still stay", dynamic <= present(now), _listed(present(now)))
        rc, _ = lab.peer.execute(f"ping -n -c 3 -W 2 {extra.ip}", timeout=60)
        rec.check(f"the AP reaches the new address {extra.ip}", rc == 0, f"ping from netns ap: exit {rc}")
    finally:
        # Back to the declared configuration, for the scenarios after this one.
        machine.succeed(f"systemctl stop {u.static}", f"cp -p {CONF_BACKUP} {NETWORK_CONF}", f"rm -f {CONF_BACKUP}",
                        f"systemctl start {u.static}", timeout=lab.timeout(60))
    restored = look(machine, p)
    if u.dhclient is not None and not restored.lease4:
        # The lease went with static@'s address (the failure checked above): dhclient would put it back
        # only at its next renewal, so it is asked for again, for the scenarios after this one.
        machine.succeed(f"systemctl restart {u.dhclient}", timeout=lab.timeout(60))
        wait_view(machine, p, "the lease again", lambda v: bool(v.lease4), lab.timeout(90))
        restored = look(machine, p)
    _, routes = static_routes(machine, p)
    rec.check("restored: the declared network.conf's addresses and routes, not the edit's",
              statics <= present(restored) and str(extra) not in present(restored)
              and not route_present(route.split(), routes) and all(route_present(w, routes) for w in declared),
              _listed(present(restored)))


# 3. systemctl stop / start supplicant@<wlan> while on the wired link.

def _wpa_state(machine: Machine, ifname: str) -> str:
    rc, out = machine.execute(f"wpa_cli -i {shlex.quote(ifname)} status", timeout=30)
    m = re.search(r"^wpa_state=(\S+)", out, re.MULTILINE)
    return m.group(1) if rc == 0 and m else "no supplicant"


def supplicant_restart(machine: Machine, lab: Lab, rec: Recorder) -> None:
    p, u = lab.plan, units_of(lab)
    w, slave_unit = p.wireless, f"{p.wireless}@{p.bond}.service"
    start_on_wired(machine, lab, rec)
    ready, waited = poll(f"{w} to complete its WPA handshake",
                         lambda: _wpa_state(machine, w) == "COMPLETED" or None, lab.timeout(60))
    rec.require(f"{w} associated before the stop (wpa_state COMPLETED)", bool(ready),
                f"{_wpa_state(machine, w)} after {waited:.0f} s")

    probe = lab.probe() if p.static4 else None
    try:
        machine.succeed(f"systemctl stop {u.supplicant}", timeout=lab.timeout(60))
        down, waited = wait_view(machine, p, f"{w}'s link to go down", lambda v: _slave_mii(v, w) == "down",
                                 lab.timeout(20))
        rec.figure("radio_link_down_after_stop_s", round(waited, 1))
        view = down or look(machine, p)
        rec.check(f"systemctl stop {u.supplicant}: {w}'s slave loses its link (MII down)", down is not None,
                  view.slaves())
        rec.check(f"{p.bond} stays up on {p.wired}", view.bond is not None and view.bond.active == p.wired
                  and view.bond.mii_status == "up", view.active())
        st = states(machine, [u.supplicant, slave_unit])
        rec.check(f"{u.supplicant} inactive, {slave_unit} still active",
                  st[u.supplicant].startswith("inactive") and st[slave_unit] == "active/exited",
                  ", ".join(f"{k} {v}" for k, v in st.items()))
    finally:
        result = probe.stop() if probe else None
    _traffic_check(rec, f"traffic over {p.wired} continues without a gap", result)

    start = time.monotonic()
    machine.succeed(f"systemctl start {u.supplicant}", timeout=lab.timeout(60))
    back, waited = wait_view(machine, p, f"{w} to re-associate",
                             lambda v: _slave_mii(v, w) == "up" and _wpa_state(machine, w) == "COMPLETED",
                             lab.timeout(60))
    rec.figure("reassociated_after_start_s", round(time.monotonic() - start, 1))
    rec.require(f"systemctl start {u.supplicant}: {w} re-associates, its slave's link up", back is not None,
                f"wpa_state {_wpa_state(machine, w)}; {look(machine, p).slaves()} after {waited:.0f} s")

    # A working backup: a failover to it now succeeds, and traffic goes on over it.
    fprobe = lab.probe() if p.static4 else None
    try:
        cut = lab.wired(False)
        switched, waited = wait_view(machine, p, f"{p.bond} to switch to {w}", _on(lab, w), lab.timeout(15))
        rec.figure("failover_switch_seen_s", round(waited, 2))
        time.sleep(2.0)
    finally:
        if fprobe is not None:
            fprobe.stop()
    rec.check(f"then a failover (wired link off) goes to {w}", switched is not None, look(machine, p).active())
    if fprobe is not None:
        outage = fprobe.outage(cut, settle=waited)
        rec.figure("failover_gap_ms", outage.gap_ms)
        rec.check(f"traffic continues over {w}", outage.recovered and outage.gap_ms < 3000,
                  f"outage {outage.gap_ms} ms, {outage.lost}/{outage.sent} probes lost")
    lab.wired(True)
    home = p.primary or p.wired
    back_home, _ = wait_view(machine, p, f"{p.bond} back on {home}", _on(lab, home), lab.timeout(30))
    rec.check(f"wired link on again: back on {home}", back_home is not None, look(machine, p).active())


# 4. systemctl stop / start master@bond0.

def _main_pid(machine: Machine, unit: str) -> str:
    return machine.succeed(f"systemctl show --property=MainPID --value -- {shlex.quote(unit)}", timeout=60).strip()


def _save(machine: Machine, name: str, text: str) -> None:
    """Keep a journal excerpt with the run's evidence, passing or not: it is what the order was read from."""
    machine.artifacts.mkdir(parents=True, exist_ok=True)
    (machine.artifacts / name).write_text(text)


def master_restart(machine: Machine, lab: Lab, rec: Recorder) -> None:
    p, u = lab.plan, units_of(lab)
    before = start_on_wired(machine, lab, rec)
    supplicant_pid = _main_pid(machine, u.supplicant)
    down = (u.master, *u.slaves, *u.configs)
    cursor = journal_cursor(machine)

    took = timed(lambda: machine.succeed(f"systemctl stop {u.master}", timeout=lab.timeout(180)))
    rec.figure("teardown_s", took)
    rc, _ = machine.execute(f"ip link show dev {shlex.quote(p.bond)}", timeout=60)
    rec.check(f"systemctl stop {u.master}: {p.bond} is deleted", rc != 0,
              "ip link show: no such device" if rc else f"{p.bond} still exists")
    st = states(machine, [*down, u.supplicant])
    for unit in down:
        rec.check(f"{unit} stopped", st[unit].startswith("inactive"), st[unit])
    pid_now = _main_pid(machine, u.supplicant)
    rec.check(f"{u.supplicant} keeps running (the same process)",
              st[u.supplicant] == "active/running" and pid_now == supplicant_pid,
              f"{st[u.supplicant]}, MainPID {supplicant_pid} before, {pid_now} now")
    links = look(machine, p).links
    for member in (p.wired, p.wireless):
        m = links.get(member)
        rec.check(f"{member} is free (no master)", m is not None and m.master is None,
                  f"master {m.master}" if m else "the device is gone")

    journal = journal_after(machine, cursor, "_PID=1")
    _save(machine, "journal-master-stop.json", journal)
    events = parse_unit_events(journal)
    for c in stop_order(events, master=u.master, slaves=u.slaves, configs=u.configs):
        rec.check(c.name, c.ok, c.detail)
    teardown = span(events, down, "stopping", "stopped")
    if teardown is not None:
        rec.figure("teardown_journal_s", teardown)

    # systemctl start master@bond0: the bond and its slaves, and once the bond's device is there its
    # configurations, by themselves, as at boot.
    cursor = journal_cursor(machine)
    start = time.monotonic()
    machine.succeed(f"systemctl start {u.master}", timeout=lab.timeout(180))
    rec.figure("start_returned_s", round(time.monotonic() - start, 1))
    want = {x: "active/exited" for x in (u.master, *u.slaves)}
    want |= {x: "active/exited" if x == u.static else "active/running" for x in u.configs}
    got, _ = poll("every unit to be back", lambda: (s if (s := states(machine, want)) == want else None),
                  lab.timeout(90))
    rec.figure("units_back_s", round(time.monotonic() - start, 1))
    got = got or states(machine, want)
    for unit, state in want.items():
        rec.check(f"systemctl start {u.master}: {unit} {state}", got[unit] == state, got[unit])
    on_wired, _ = wait_view(machine, p, f"{p.bond} on {p.wired}", _on(lab, p.wired), lab.timeout(60))
    rec.check(f"{p.bond} is back with active slave {p.wired}", on_wired is not None, look(machine, p).active())
    if p.dhcp4:
        leased, _ = wait_view(machine, p, "a DHCPv4 lease", lambda v: bool(v.lease4), lab.timeout(90))
        rec.figure("lease4_after_start_s", round(time.monotonic() - start, 1))
        rec.check("a DHCPv4 lease again, the same address", leased is not None and leased.lease4 == before.lease4,
                  f"before {_listed(before.lease4)}, now {_listed(leased.lease4) if leased else 'none'}")
    if p.dhcp6:
        v6, _ = wait_view(machine, p, "a DHCPv6 address", lambda v: bool(v.dhcp6), lab.timeout(60))
        rec.figure("dhcp6_after_start_s", round(time.monotonic() - start, 1))
        rec.check("a DHCPv6 address again", v6 is not None, _listed(v6.dhcp6) if v6 else "none")
    now = look(machine, p)
    for a in (*p.static4, *p.static6):
        rec.check(f"the static address {a} again", str(a) in now.addresses(a.version),
                  _listed(now.addresses(a.version)))
    radio, _ = wait_view(machine, p, f"{p.wireless} enslaved with its link up",
                         lambda v: _slave_mii(v, p.wireless) == "up", lab.timeout(60))
    rec.check(f"{p.wireless} is a slave again with its link up", radio is not None, look(machine, p).slaves())
    started = parse_unit_events(journal_after(machine, cursor, "_PID=1"))
    bringup = span(started, want, "starting", "started")
    if bringup is not None:
        rec.figure("bringup_journal_s", bringup)
