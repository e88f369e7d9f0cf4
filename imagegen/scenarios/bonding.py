"""Reading the guest's network state: /proc/net/bonding/<bond> and `ip -j address`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Slave:
    name: str
    mii_status: str
    permanent_mac: str
    link_failures: int


@dataclass(frozen=True)
class BondStatus:
    mode: str
    primary: str | None
    primary_reselect: str | None
    active: str | None
    mii_status: str
    miimon_ms: int
    slaves: tuple[Slave, ...]
    fail_over_mac: str = "none"

    def slave(self, name: str) -> Slave | None:
        return next((s for s in self.slaves if s.name == name), None)


def parse_bonding(text: str) -> BondStatus:
    """Parse /proc/net/bonding/<bond>. The file looks like this (trimmed):

        Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)
        Primary Slave: enp3s0 (primary_reselect always)
        Currently Active Slave: enp3s0
        MII Status: up
        MII Polling Interval (ms): 100

        Slave Interface: wlp2s0
        MII Status: up
        Link Failure Count: 0
        Permanent HW addr: 68:a3:c4:ac:63:d1
    """
    head: dict[str, str] = {}
    slaves: list[dict[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "Slave Interface":
            slaves.append({"name": value})
        elif slaves:
            slaves[-1].setdefault(key, value)
        else:
            head.setdefault(key, value)
    if "Bonding Mode" not in head:
        raise ValueError("not a /proc/net/bonding file: no 'Bonding Mode' line")

    mode_line = head["Bonding Mode"]
    fail_over_mac = "none"
    if "(fail_over_mac " in mode_line:
        fail_over_mac = mode_line.split("(fail_over_mac ", 1)[1].split(")", 1)[0]
    mode = mode_line.split("(", 1)[1].split(")", 1)[0] if "(" in mode_line else mode_line

    primary: str | None = None
    reselect: str | None = None
    if "Primary Slave" in head:
        words = head["Primary Slave"].split()
        primary = None if words[0] == "None" else words[0]
        if "(primary_reselect" in head["Primary Slave"]:
            reselect = head["Primary Slave"].split("(primary_reselect", 1)[1].strip(" )")
    active = head.get("Currently Active Slave")
    return BondStatus(
        mode=mode, primary=primary, primary_reselect=reselect,
        active=None if active in (None, "None") else active,
        mii_status=head.get("MII Status", "unknown"),
        miimon_ms=int(head.get("MII Polling Interval (ms)", "0")),
        slaves=tuple(Slave(name=s["name"], mii_status=s.get("MII Status", "unknown"),
                           permanent_mac=s.get("Permanent HW addr", "").lower(),
                           link_failures=int(s.get("Link Failure Count", "0")))
                     for s in slaves),
        fail_over_mac=fail_over_mac,
    )


@dataclass(frozen=True)
class Address:
    family: int
    address: str
    prefixlen: int
    dynamic: bool
    scope: str

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Link:
    name: str
    mac: str
    up: bool
    master: str | None
    addresses: tuple[Address, ...] = field(default=())

    def with_family(self, family: int, *, dynamic: bool | None = None, scope: str = "global") -> list[Address]:
        return [a for a in self.addresses if a.family == family and a.scope == scope
                and (dynamic is None or a.dynamic == dynamic)]


def parse_ip_json(text: str) -> dict[str, Link]:
    """Parse `ip -j address show`: one object per link with its addr_info list."""
    links: dict[str, Link] = {}
    for obj in json.loads(text or "[]"):
        addrs = tuple(
            Address(family=4 if a.get("family") == "inet" else 6, address=a["local"],
                    prefixlen=int(a.get("prefixlen", 0)),
                    # ip marks addresses with a finite lifetime (a DHCP lease) "dynamic".
                    dynamic=bool(a.get("dynamic")) or a.get("valid_life_time", 4294967295) != 4294967295,
                    scope=a.get("scope", "global"))
            for a in obj.get("addr_info", []) if a.get("family") in ("inet", "inet6"))
        links[obj["ifname"]] = Link(name=obj["ifname"], mac=str(obj.get("address", "")).lower(),
                                    up="UP" in obj.get("flags", []), master=obj.get("master"),
                                    addresses=addrs)
    return links
