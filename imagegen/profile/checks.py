"""Rules that relate several fields of a profile; each finding names its key path and the fix."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from imagegen.profile.model import Addressing, Bond, Eap, Profile

# Modes in which a primary slave means something (bonding.rst, "primary").
_PRIMARY_MODES = {"active-backup", "balance-tlb", "balance-alb"}


@dataclass(frozen=True)
class Finding:
    path: tuple[str | int, ...]
    message: str


def check_profile(profile: Profile) -> list[Finding]:
    findings: list[Finding] = []
    findings += _check_names(profile)
    findings += _check_membership(profile)
    for name, bond in profile.bonds.items():
        findings += _check_bond(name, bond)
    for name, iface in profile.ip_interfaces().items():
        findings += _check_routes(profile, name, iface)
    findings += _check_enslaved_have_no_ip(profile)
    findings += _check_wireless(profile)
    findings += _check_prefix_delegation(profile)
    return findings


def _section(profile: Profile, name: str) -> str:
    if name in profile.bonds:
        return "bonds"
    if name in profile.bridges:
        return "bridges"
    return "interfaces"


def _check_names(profile: Profile) -> list[Finding]:
    findings = []
    seen: dict[str, str] = {}
    for section in ("interfaces", "bonds", "bridges"):
        for name in getattr(profile, section):
            if name in seen:
                findings.append(Finding(
                    (section, name),
                    f"{name!r} is declared in both [{seen[name]}] and [{section}]; give each device one name",
                ))
            seen.setdefault(name, section)
    return findings


def _check_membership(profile: Profile) -> list[Finding]:
    findings = []
    owner: dict[str, str] = {}
    for section in ("bonds", "bridges"):
        for master, spec in getattr(profile, section).items():
            for i, member in enumerate(spec.members):
                path = (section, master, "members", i)
                if member not in profile.interfaces:
                    findings.append(Finding(
                        path,
                        f"member {member!r} is not declared; add [interfaces.{member}] with type = "
                        "\"ethernet\" or \"wireless\"",
                    ))
                if member in owner and owner[member] != master:
                    findings.append(Finding(
                        path,
                        f"{member!r} is already a member of {owner[member]}; an interface can be enslaved to "
                        "one master only",
                    ))
                elif member in owner:
                    findings.append(Finding(path, f"{member!r} is listed twice; list each member once"))
                owner[member] = master
    return findings


def _check_bond(name: str, bond: Bond) -> list[Finding]:
    base = ("bonds", name)
    findings = []
    if bond.primary is not None:
        if bond.primary not in bond.members:
            findings.append(Finding(
                base + ("primary",),
                f"primary {bond.primary!r} is not a member of {name}; set it to one of: {', '.join(bond.members)}",
            ))
        if bond.mode not in _PRIMARY_MODES:
            findings.append(Finding(
                base + ("primary",),
                f"a primary slave has no effect in mode {bond.mode!r}; remove primary or use one of: "
                + ", ".join(sorted(_PRIMARY_MODES)),
            ))
    if bond.fail_over_mac != "none" and bond.mode != "active-backup":
        findings.append(Finding(
            base + ("fail_over_mac",),
            f"fail_over_mac is only used in mode 'active-backup', not {bond.mode!r}; remove it or set "
            "mode = \"active-backup\"",
        ))
    if bond.miimon == 0 and (bond.updelay or bond.downdelay):
        findings.append(Finding(
            base + ("miimon",),
            "updelay/downdelay need link monitoring; set miimon (e.g. 100) or remove updelay/downdelay",
        ))
    if bond.miimon == 0 and bond.peer_notif_delay is not None:
        findings.append(Finding(
            base + ("peer_notif_delay",),
            "peer_notif_delay needs link monitoring (the kernel refuses it with miimon = 0); set miimon "
            "(e.g. 100) or remove peer_notif_delay",
        ))
    for key in ("updelay", "downdelay", "peer_notif_delay"):
        value = getattr(bond, key)
        if value is not None and bond.miimon and value % bond.miimon:
            lower = value - value % bond.miimon
            findings.append(Finding(
                base + (key,),
                f"{key} = {value} is not a multiple of miimon = {bond.miimon} and the kernel would round it "
                f"down silently; use {lower} or {lower + bond.miimon}",
            ))
    return findings


def _check_routes(profile: Profile, name: str, iface: Addressing) -> list[Finding]:
    findings = []
    section = _section(profile, name)
    networks = [ipaddress.ip_interface(a).network for a in iface.addresses]
    for i, route in enumerate(iface.routes):
        if route.via is None:
            continue
        gateway = ipaddress.ip_address(route.via)
        if any(gateway in net for net in networks):
            continue
        dynamic = iface.dhcp4 if gateway.version == 4 else iface.dhcp6
        if gateway.version == 6 and gateway.is_link_local:
            continue
        if dynamic and not any(net.version == gateway.version for net in networks):
            # The address that makes the gateway reachable will come from DHCP.
            continue
        findings.append(Finding(
            (section, name, "routes", i, "via"),
            f"gateway {route.via} is not in any network of {name}'s addresses "
            f"({', '.join(iface.addresses) or 'none'}); add an address in its network or fix the gateway",
        ))
    return findings


def _check_enslaved_have_no_ip(profile: Profile) -> list[Finding]:
    findings = []
    for name, iface in profile.interfaces.items():
        master = profile.master_of(name)
        if master is None:
            continue
        for key in ("addresses", "routes", "dhcp4", "dhcp6"):
            if getattr(iface, key):
                findings.append(Finding(
                    ("interfaces", name, key),
                    f"{name} is enslaved to {master}, and an enslaved device carries no IP configuration; "
                    f"move {key} to [{_section(profile, master)}.{master}]",
                ))
    return findings


def _check_wireless(profile: Profile) -> list[Finding]:
    findings = []
    uses_supplicant = bool(profile.supplicant_interfaces())
    for i, net in enumerate(profile.wireless.networks):
        base = ("wireless", "networks", i)
        secrets = [k for k in ("passphrase", "psk", "psk_file") if getattr(net, k) is not None]
        if net.key_mgmt != "IEEE8021X" and net.ssid is None:
            findings.append(Finding(base + ("ssid",), "a wireless network needs an ssid"))
        if net.key_mgmt == "WPA-PSK":
            if len(secrets) != 1:
                findings.append(Finding(
                    base,
                    "key_mgmt WPA-PSK needs exactly one of passphrase, psk or psk_file"
                    + (f" (found {', '.join(secrets)})" if secrets else ""),
                ))
        elif net.key_mgmt == "SAE":
            if net.psk is not None:
                findings.append(Finding(
                    base + ("psk",),
                    "SAE (WPA3) authenticates with the password itself, not a derived PSK; use passphrase or "
                    "psk_file",
                ))
            elif len(secrets) != 1:
                findings.append(Finding(base, "key_mgmt SAE needs exactly one of passphrase or psk_file"))
        else:
            for key in secrets:
                findings.append(Finding(
                    base + (key,), f"{key} is only used with key_mgmt WPA-PSK or SAE; remove it",
                ))
        if net.key_mgmt in ("WPA-EAP", "IEEE8021X"):
            if net.eap is None:
                findings.append(Finding(
                    base + ("eap",), f"key_mgmt {net.key_mgmt} needs an [eap] table (method, identity, ...)",
                ))
            else:
                findings += _check_eap(base + ("eap",), net.eap)
        elif net.eap is not None:
            findings.append(Finding(base + ("eap",), "eap is only used with key_mgmt WPA-EAP or IEEE8021X"))
        if net.key_mgmt == "NONE" and (net.proto or net.group or net.pairwise):
            findings.append(Finding(base + ("key_mgmt",), "an open network (NONE) has no proto/group/pairwise"))
    # wpa_supplicant's wired driver authenticates with the first network that has no ssid.
    if not any(n.ssid is None and n.key_mgmt == "IEEE8021X" for n in profile.wireless.networks):
        for name in profile.wired_supplicant_interfaces():
            findings.append(Finding(
                ("interfaces", name, "supplicant"),
                f"{name} is wired and runs a supplicant (802.1X), and no network can authenticate its port; "
                "add a [[wireless.networks]] entry with key_mgmt = \"IEEE8021X\", no ssid and an [eap] table",
            ))
    if profile.wireless.networks and not uses_supplicant:
        findings.append(Finding(
            ("wireless", "networks"),
            "networks are declared but no interface runs a supplicant; add an interface with "
            "type = \"wireless\" or supplicant = true",
        ))
    return findings


def _check_eap(base: tuple[str | int, ...], eap: Eap) -> list[Finding]:
    findings = []
    if eap.method == "TLS":
        for key in ("client_cert", "private_key"):
            if getattr(eap, key) is None:
                findings.append(Finding(base + (key,), f"EAP-TLS needs {key} (a PEM file path)"))
    else:
        if (eap.password is None) == (eap.password_file is None):
            findings.append(Finding(base, f"EAP-{eap.method} needs exactly one of password or password_file"))
    return findings


def _check_prefix_delegation(profile: Profile) -> list[Finding]:
    findings = []
    for i, pd in enumerate(profile.dhcp6.prefix_delegation):
        if pd.interface not in profile.ip_interfaces():
            findings.append(Finding(
                ("dhcp6", "prefix_delegation", i, "interface"),
                f"{pd.interface!r} is not an interface that carries IP; name a bond, bridge or unenslaved "
                "interface of this profile",
            ))
    if profile.dhcp6.prefix_delegation and not any(i.dhcp6 for i in profile.ip_interfaces().values()):
        findings.append(Finding(
            ("dhcp6", "prefix_delegation"), "prefix delegation needs dhcp6 = true on an upstream interface",
        ))
    return findings
