"""From a validated profile to the exact list of files, hard links and symlinks of its overlay.

Planning is pure (no writes), so the whole plan is known, and every error found, before anything
touches the disk.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from imagegen.errors import UsageError
from imagegen.profile.load import LoadedProfile, format_path
from imagegen.profile.model import Bond, Network
from imagegen.profile.secretfile import CERT_LIMIT, SECRET_LIMIT, read_secret_file
from imagegen.profile.state import HostState
from imagegen.render.distro import Target
from imagegen.render.psk import wpa_psk

UNIT_DIR = "etc/systemd/system"
SECRET = 0o600
PUBLIC = 0o644


@dataclass(frozen=True)
class File:
    path: str
    content: bytes
    mode: int = PUBLIC


@dataclass(frozen=True)
class HardLink:
    """Another name for an already planned file: the same inode, as `ln` makes it."""

    path: str
    source: str


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


Entry = File | HardLink | Symlink


@dataclass(frozen=True)
class Plan:
    entries: tuple[Entry, ...]

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}


def _template_root() -> Path:
    return Path(str(resources.files("imagegen") / "templates"))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_root()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _ssid_value(ssid: str) -> str:
    """wpa_supplicant.conf takes a quoted ASCII SSID or the SSID's bytes in hex."""
    if all(c in string.printable and c not in "\t\n\r\x0b\x0c\"" for c in ssid):
        return f'"{ssid}"'
    return ssid.encode().hex()


def _read_secret(loaded: LoadedProfile, key: tuple[str | int, ...], name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = loaded.origin(key).resolve().parent / path
    limit = CERT_LIMIT if key[-1] in ("ca_cert", "client_cert", "private_key") else SECRET_LIMIT
    return read_secret_file(path, f"{loaded.origin(key)}: {format_path(key)}", limit=limit,
                            hint="create the file or fix the path (relative paths start at the profile "
                            "that names them)").strip()


def _secret_lines(loaded: LoadedProfile, index: int, net: Network, extra: list[File]) -> list[str]:
    base: tuple[str | int, ...] = ("wireless", "networks", index)
    if net.key_mgmt == "WPA-PSK":
        assert net.ssid is not None
        if net.psk is not None:
            return [f"psk={net.psk}"]
        if net.passphrase is not None:
            return [f"psk={wpa_psk(net.ssid, net.passphrase)}"]
        assert net.psk_file is not None
        value = _read_secret(loaded, base + ("psk_file",), net.psk_file)
        if len(value) == 64 and all(c in string.hexdigits for c in value):
            return [f"psk={value.lower()}"]
        if not 8 <= len(value) <= 63 or any(c not in string.printable or c in "\t\n\r\x0b\x0c" for c in value):
            raise UsageError(
                f"{loaded.origin(base)}: {format_path(base + ('psk_file',))}: {net.psk_file} holds neither "
                "a 64-hex PSK nor an 8-63 character ASCII passphrase",
                hint="put one of the two, alone, in the file",
            )
        return [f"psk={wpa_psk(net.ssid, value)}"]
    if net.key_mgmt == "SAE":
        # SAE proves knowledge of the password itself: it has to be in the image.
        sae = net.passphrase or _read_secret(loaded, base + ("psk_file",), net.psk_file or "")
        return [f'sae_password="{sae}"']
    if net.key_mgmt in ("WPA-EAP", "IEEE8021X"):
        assert net.eap is not None
        eap = net.eap
        lines = [f"eap={eap.method}", f'identity="{eap.identity}"']
        if eap.anonymous_identity:
            lines.append(f'anonymous_identity="{eap.anonymous_identity}"')
        password: str | None = eap.password
        if eap.password_file is not None:
            password = _read_secret(loaded, base + ("eap", "password_file"), eap.password_file)
        if password is not None:
            lines.append(f'password="{password}"')
        if eap.phase2:
            lines.append(f'phase2="{eap.phase2}"')
        for key in ("ca_cert", "client_cert", "private_key"):
            name = getattr(eap, key)
            if name is None:
                continue
            content = _read_secret(loaded, base + ("eap", key), name)
            target = f"etc/wpa_supplicant/certs/{index}-{Path(name).name}"
            extra.append(File(target, (content + "\n").encode(), SECRET if key == "private_key" else PUBLIC))
            lines.append(f'{key}="/{target}"')
        if eap.private_key_password:
            lines.append(f'private_key_passwd="{eap.private_key_password}"')
        return lines
    return []


def plan_overlay(loaded: LoadedProfile, state: HostState, target: Target) -> Plan:
    profile = loaded.profile
    layout = target.layout
    env = _environment()
    files: list[File] = []
    extra: list[File] = []

    def add(template: str, dest: str, *, mode: int = PUBLIC, **context: Any) -> None:
        text = env.get_template(template + ".j2").render(**context)
        files.append(File(dest, text.encode(), mode))

    units: dict[str, Any] = {"bin": layout.bin, "dhcp6_unit": layout.dhcp6_unit}
    add(f"{UNIT_DIR}/master@.service", f"{UNIT_DIR}/master@.service", **units)
    add(f"{UNIT_DIR}/slave@.service", f"{UNIT_DIR}/slave@.service", **units)
    add(f"{UNIT_DIR}/supplicant@.service", f"{UNIT_DIR}/supplicant@.service",
        disable_legacy_rates=profile.wireless.disable_legacy_rates, **units)
    dhclient: dict[str, Any] = {
        "dhclient_conf": layout.dhclient_conf,
        "dhclient_leases": layout.dhclient_leases,
        "wait_active_slave": profile.dhcp4.wait_active_slave,
        "dhclient6_conf": "/etc/dhclient6.conf",
    }
    add(f"{UNIT_DIR}/dhclient@.service", f"{UNIT_DIR}/dhclient@.service", **dhclient, **units)
    add(f"{UNIT_DIR}/{layout.dhcp6_unit}@.service", f"{UNIT_DIR}/{layout.dhcp6_unit}@.service", **dhclient, **units)
    add(f"{UNIT_DIR}/static@.service", f"{UNIT_DIR}/static@.service", **units)

    bonds = sorted(profile.bonds.items())
    first_bond: Bond | None = bonds[0][1] if bonds else None
    add("etc/modprobe.d/bonding.conf", "etc/modprobe.d/bonding.conf", first_bond=first_bond)

    masters = []
    for name, master in sorted(profile.masters().items()):
        if isinstance(master, Bond):
            options = master.ip_link_options()
            masters.append((name, {"kind": "bond", "options": options, "primary": master.primary or ""}))
        else:
            masters.append((name, {"kind": "bridge", "options": f"stp_state {int(master.stp)}", "primary": ""}))
    ip_ifaces = profile.ip_interfaces()
    enslaved = sorted(n for n in profile.interfaces if n not in ip_ifaces)
    add(
        "etc/conf.d/network.conf", "etc/conf.d/network.conf",
        all_names=list(ip_ifaces) + enslaved,
        masters=masters,
        addrs=[(n, i.addresses) for n, i in ip_ifaces.items()] + [(n, []) for n in enslaved],
        routes=[(n, [r.ip_route_args() for r in i.routes]) for n, i in ip_ifaces.items()],
    )

    if profile.supplicant_interfaces():
        networks = [
            {
                "ssid": None if n.ssid is None else _ssid_value(n.ssid),
                "hidden": n.hidden, "priority": n.priority, "proto": n.proto, "group": n.group,
                "pairwise": n.pairwise, "key_mgmt": n.key_mgmt,
                "secret_lines": _secret_lines(loaded, i, n, extra),
            }
            for i, n in enumerate(profile.wireless.networks)
        ]
        add(
            "etc/wpa_supplicant/wpa_supplicant.conf", "etc/wpa_supplicant/wpa_supplicant.conf", mode=SECRET,
            ctrl_interface_group=profile.wireless.ctrl_interface_group or layout.netadmin_group,
            country=profile.wireless.country, networks=networks,
        )

    host_name = profile.dhcp4.host_name if profile.dhcp4.host_name is not None else profile.image.hostname
    client_identifier = state.client_identifier() if profile.dhcp4.client_identifier == "duid" else ""
    add("etc/dhcp/dhclient.conf", layout.dhclient_conf.lstrip("/"),
        dhcp4=profile.dhcp4, host_name=host_name, client_identifier=client_identifier)

    if layout.dhcp6_unit == "dhcp6c":
        add("etc/wide-dhcpv6/dhcp6c.conf", "etc/wide-dhcpv6/dhcp6c.conf", mode=SECRET,
            dhcp6=profile.dhcp6, dhcp6c_key=state.dhcp6c_key)
        files.append(File("etc/wide-dhcpv6/dhcp6cctlkey", (state.dhcp6c_key + "\n").encode(), SECRET))
        # WIDE dhcp6c's DUID file: a 16-bit length in host (little-endian) order, then the DUID.
        files.append(File(layout.dhcp6c_duid.lstrip("/"), len(state.duid).to_bytes(2, "little") + state.duid, SECRET))
    else:
        add("etc/dhclient6.conf", "etc/dhclient6.conf", dhcp6=profile.dhcp6, duid=state.duid_hex())

    links = _hard_links(profile)
    presets, symlinks = _enablement(profile, layout.dhcp6_unit)
    files.append(File("etc/systemd/system-preset/00-imagegen.preset", presets.encode()))
    entries: list[Entry] = [*files, *extra, *links, *symlinks]
    return Plan(tuple(sorted(entries, key=lambda e: e.path)))


def _hard_links(profile: Any) -> list[HardLink]:
    # Symlinks would not do: systemd would take %p from the link's target, "slave".
    members = sorted({m for master in profile.masters().values() for m in master.members})
    return [HardLink(f"{UNIT_DIR}/{m}@.service", f"{UNIT_DIR}/slave@.service") for m in members]


def _enablement(profile: Any, dhcp6_unit: str) -> tuple[str, list[Symlink]]:
    """The links the seed's `systemctl enable` commands create, and the preset that asks for the same.

    The preset matters because image builders run `systemctl preset-all`, which would otherwise
    enable the bare templates from their [Install] sections.
    """
    links: list[Symlink] = []
    instances: dict[str, list[str]] = {}

    def enable(template: str, instance: str, wanted_by: list[str], kind: str = "wants") -> None:
        instances.setdefault(template, []).append(instance)
        for unit in wanted_by:
            links.append(Symlink(
                f"{UNIT_DIR}/{unit}.{kind}/{template}@{instance}.service", f"/{UNIT_DIR}/{template}@.service",
            ))

    def device(name: str) -> str:
        return f"sys-subsystem-net-devices-{name}.device"

    # systemctl --now enable supplicant@IF
    for name in profile.supplicant_interfaces():
        enable("supplicant", name, [device(name)])
    # systemctl enable IF@MASTER ... master@MASTER
    for master_name, master in sorted(profile.masters().items()):
        for member in master.members:
            enable(member, master_name, [f"master@{master_name}.service", device(member)])
    # systemctl enable dhclient@MASTER dhcp6c@MASTER static@MASTER: only the configurations asked for.
    for name, iface in profile.ip_interfaces().items():
        if iface.dhcp4:
            enable("dhclient", name, [device(name)])
        if iface.dhcp6:
            enable(dhcp6_unit, name, [device(name)])
        if iface.addresses or iface.routes:
            enable("static", name, [device(name)])
        # The master unit is enabled only where the master is also an IP interface (the seed's rule);
        # its RequiredBy= links order the teardown of all three configuration units.
        if name in profile.masters() and (iface.dhcp4 or iface.dhcp6 or iface.addresses or iface.routes):
            enable("master", name, [f"dhclient@{name}.service", f"{dhcp6_unit}@{name}.service",
                                    f"static@{name}.service"], kind="requires")

    templates = ["master", "slave", "supplicant", "dhclient", dhcp6_unit, "static",
                 *sorted({m for master in profile.masters().values() for m in master.members})]
    lines = ["# Exactly the instances this host's profile enables; every other instance and the bare",
             "# templates stay disabled."]
    for template in templates:
        if template in instances:
            lines.append(f"enable {template}@.service {' '.join(sorted(set(instances[template])))}")
        else:
            lines.append(f"disable {template}@.service")
    return "\n".join(lines) + "\n", links
