"""From a validated profile to the exact list of files, hard links and symlinks of its overlay.

Planning is pure (no writes), so the whole plan is known, and every error found, before anything
touches the disk.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from imagegen.errors import UsageError
from imagegen.profile.load import LoadedProfile, format_path
from imagegen.profile.model import WPA_STRING_BYTES, Bond, Network, Profile, has_control
from imagegen.profile.secretfile import CERT_LIMIT, SECRET_LIMIT, read_file_bytes, read_secret_file
from imagegen.profile.state import HostState
from imagegen.render import escape as esc
from imagegen.render.distro import Layout, Target
from imagegen.render.entries import PUBLIC, SECRET, UNIT_DIR, Entry, File, HardLink, Plan, Symlink
from imagegen.render.psk import wpa_psk
from imagegen.render.system import plan_system


def _template_root() -> Path:
    return Path(str(resources.files("imagegen") / "templates"))


# The syntax of every template's file, by path prefix: the only type of value its template may print.
_SYNTAX: tuple[tuple[str, type[esc.Escaped]], ...] = (
    (f"{UNIT_DIR}/", esc.UnitText),
    ("etc/conf.d/network.conf", esc.EnvText),
    ("etc/wpa_supplicant/", esc.WpaText),
    ("etc/dhcp/dhclient.conf", esc.DhclientText),
    ("etc/dhcp/dhclient-enter-hooks.d/", esc.ShText),
    ("etc/dhclient6.conf", esc.DhclientText),
    ("etc/wide-dhcpv6/", esc.Dhcp6cText),
    ("etc/modprobe.d/", esc.ModprobeText),
)


# dhclient-script's flush of a lease would take static@'s addresses too (docs/design.md).
LEASED_ONLY_HOOK = "etc/dhcp/dhclient-enter-hooks.d/imagegen-leased-address-only"

_SYNTAX_BY_NAME = {syntax.__name__: syntax for _, syntax in _SYNTAX}


class UnescapedValue(TypeError):
    """A template printed a value that was not escaped for its file: a bug in imagegen."""


def syntax_of(template: str) -> type[esc.Escaped]:
    for prefix, syntax in _SYNTAX:
        if template.startswith(prefix):
            return syntax
    raise UnescapedValue(f"template {template} has no declared syntax; add it to _SYNTAX")


def _finalize(syntax: type[esc.Escaped]) -> Callable[[object], object]:
    def finalize(value: object) -> object:
        # Numbers and booleans read the same in every syntax here; text must come escaped for this file.
        if isinstance(value, int):
            return value
        if isinstance(value, syntax):
            return value.text
        raise UnescapedValue(
            f"a {type(value).__name__} ({value!r}) reaches a template of {syntax.__name__}; "
            f"build it with the imagegen.render.escape function for its place"
        )

    return finalize


def _environment(syntax: type[esc.Escaped]) -> jinja2.Environment:
    return _cached_environment(_template_root(), syntax.__name__)


@functools.cache
def _cached_environment(root: Path, syntax_name: str) -> jinja2.Environment:
    # One per template directory and syntax for the process: Jinja keeps the compiled templates (and
    # reloads one whose file changed), and compiling them is most of a render's time.
    syntax = _SYNTAX_BY_NAME[syntax_name]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_finalize(syntax),
    )


def render_template(template: str, **context: Any) -> str:
    """One template, every printed value checked to be escaped for the template's file."""
    return _environment(syntax_of(template)).get_template(template + ".j2").render(**context)


def _read_secret(loaded: LoadedProfile, key: tuple[str | int, ...], name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = loaded.origin(key).resolve().parent / path
    return read_secret_file(path, f"{loaded.origin(key)}: {format_path(key)}", limit=SECRET_LIMIT,
                            hint="create the file or fix the path (relative paths start at the profile "
                            "that names them)").strip()


def _secret_text(loaded: LoadedProfile, key: tuple[str | int, ...], name: str) -> str:
    """A password read from a file: one line of text, which is what the profile means by it."""
    value = _read_secret(loaded, key, name)
    if not value or has_control(value):
        raise UsageError(
            f"{loaded.origin(key)}: {format_path(key)}: {name} is empty or holds a line break or another "
            "control character inside the password",
            hint="put the password alone, on one line, in the file",
        )
    if len(value.encode()) > WPA_STRING_BYTES:
        raise UsageError(
            f"{loaded.origin(key)}: {format_path(key)}: the password in {name} is {len(value.encode())} bytes; "
            f"wpa_supplicant.conf carries at most {WPA_STRING_BYTES}",
            hint="use a shorter password",
        )
    return value


def _cert_target(index: int, key: str, name: str) -> str:
    # Named by the network and the key, not the file's own name: two keys may name files of the same
    # name, and the name lands in wpa_supplicant.conf and the image's file system.
    suffix = Path(name).suffix
    return f"etc/wpa_supplicant/certs/{index}-{key}{suffix if re.fullmatch(r'[.][A-Za-z0-9]{1,8}', suffix) else ''}"


def _secret_lines(loaded: LoadedProfile, index: int, net: Network, extra: list[File]) -> list[esc.WpaText]:
    base: tuple[str | int, ...] = ("wireless", "networks", index)
    field = esc.wpa_field
    if net.key_mgmt == "WPA-PSK":
        assert net.ssid is not None
        if net.psk is not None:
            return [field("psk", esc.wpa_token(net.psk))]
        if net.passphrase is not None:
            return [field("psk", esc.wpa_token(wpa_psk(net.ssid, net.passphrase)))]
        assert net.psk_file is not None
        value = _read_secret(loaded, base + ("psk_file",), net.psk_file)
        if len(value) == 64 and all(c in string.hexdigits for c in value):
            return [field("psk", esc.wpa_token(value.lower()))]
        if not 8 <= len(value) <= 63 or any(c not in string.printable or c in "\t\n\r\x0b\x0c" for c in value):
            raise UsageError(
                f"{loaded.origin(base)}: {format_path(base + ('psk_file',))}: {net.psk_file} holds neither "
                "a 64-hex PSK nor an 8-63 character ASCII passphrase",
                hint="put one of the two, alone, in the file",
            )
        return [field("psk", esc.wpa_token(wpa_psk(net.ssid, value)))]
    if net.key_mgmt == "SAE":
        # SAE proves knowledge of the password itself: it has to be in the image.
        sae = net.passphrase or _secret_text(loaded, base + ("psk_file",), net.psk_file or "")
        return [field("sae_password", esc.wpa_string(sae))]
    if net.key_mgmt in ("WPA-EAP", "IEEE8021X"):
        assert net.eap is not None
        eap = net.eap
        lines = [field("eap", esc.wpa_token(eap.method)), field("identity", esc.wpa_string(eap.identity))]
        if eap.anonymous_identity:
            lines.append(field("anonymous_identity", esc.wpa_string(eap.anonymous_identity)))
        password: str | None = eap.password
        if eap.password_file is not None:
            password = _secret_text(loaded, base + ("eap", "password_file"), eap.password_file)
        if password is not None:
            lines.append(field("password", esc.wpa_string(password)))
        if eap.phase2:
            lines.append(field("phase2", esc.wpa_string(eap.phase2)))
        for key in ("ca_cert", "client_cert", "private_key"):
            name = getattr(eap, key)
            if name is None:
                continue
            # Copied as they are: PEM or binary DER, which no text reading may change.
            path = Path(name)
            if not path.is_absolute():
                path = loaded.origin(base + ("eap", key)).resolve().parent / path
            content = read_file_bytes(path, f"{loaded.origin(base)}: {format_path(base + ('eap', key))}",
                                      limit=CERT_LIMIT, secret=key == "private_key",
                                      hint="create the file or fix the path (relative paths start at the "
                                      "profile that names them)")
            target = _cert_target(index, key, name)
            extra.append(File(target, content, SECRET if key == "private_key" else PUBLIC))
            lines.append(field(key, esc.wpa_string(f"/{target}")))
        if eap.private_key_password:
            lines.append(field("private_key_passwd", esc.wpa_string(eap.private_key_password)))
        return lines
    return []


def _unit_context(layout: Layout) -> dict[str, Any]:
    return {
        "bin": {tool: esc.unit_exec_path(path) for tool, path in layout.bin.items()},
        "sh_bin": {tool: esc.unit_exec_sh_word(path) for tool, path in layout.bin.items()},
        "dhcp6_unit": esc.unit_value(layout.dhcp6_unit),
    }


def _bonding_options(bond: Bond | None) -> esc.ModprobeText:
    words = ["max_bonds=0"]
    if bond is not None:
        words += [f"miimon={bond.miimon}", f"mode={bond.mode}"]
        if bond.updelay:
            words.append(f"updelay={bond.updelay}")
        if bond.downdelay:
            words.append(f"downdelay={bond.downdelay}")
        if bond.mode == "active-backup":
            words.append(f"fail_over_mac={bond.fail_over_mac}")
        if bond.primary and bond.primary_reselect != "always":
            words.append(f"primary_reselect={bond.primary_reselect}")
    return esc.modprobe_options(words)


def _network_conf(profile: Profile) -> dict[str, Any]:
    masters = []
    for name, master in sorted(profile.masters().items()):
        if isinstance(master, Bond):
            masters.append({"name": esc.env_name(name), "bond": True, "kind": esc.env_value("bond"),
                            "options": esc.env_words(master.ip_link_words()),
                            "primary": esc.env_value(master.primary or "")})
        else:
            masters.append({"name": esc.env_name(name), "bond": False, "kind": esc.env_value("bridge"),
                            "options": esc.env_words(["stp_state", str(int(master.stp))])})
    ip_ifaces = profile.ip_interfaces()
    enslaved = sorted(n for n in profile.interfaces if n not in ip_ifaces)
    addrs = [(n, i.addresses) for n, i in ip_ifaces.items()] + [(n, []) for n in enslaved]
    routes = [(n, [r.ip_route_words() for r in i.routes]) for n, i in ip_ifaces.items()]
    return {
        "all_names": esc.env_comment(" ".join([*ip_ifaces, *enslaved])),
        "masters": masters,
        "addrs": [(esc.env_name(n), esc.env_words(a) if a else None) for n, a in addrs],
        "routes": [(esc.env_name(n), esc.env_quoted_word_lists(r) if r else None) for n, r in routes],
    }


def plan_overlay(loaded: LoadedProfile, state: HostState, target: Target) -> Plan:
    profile = loaded.profile
    layout = target.layout
    files: list[File] = []
    extra: list[File] = []

    def add(template: str, dest: str, *, mode: int = PUBLIC, **context: Any) -> None:
        files.append(File(dest, render_template(template, **context).encode(), mode))

    units = _unit_context(layout)
    add(f"{UNIT_DIR}/master@.service", f"{UNIT_DIR}/master@.service", **units)
    add(f"{UNIT_DIR}/slave@.service", f"{UNIT_DIR}/slave@.service", **units)
    add(f"{UNIT_DIR}/supplicant@.service", f"{UNIT_DIR}/supplicant@.service",
        disable_legacy_rates=profile.wireless.disable_legacy_rates, **units)
    dhclient: dict[str, Any] = {
        "dhclient_conf": esc.unit_exec_word(layout.dhclient_conf),
        "dhclient_leases": esc.unit_exec_word(layout.dhclient_leases),
        "wait_active_slave": profile.dhcp4.wait_active_slave,
        "dhclient6_conf": esc.unit_exec_word("/etc/dhclient6.conf"),
    }
    add(f"{UNIT_DIR}/dhclient@.service", f"{UNIT_DIR}/dhclient@.service", **dhclient, **units)
    add(f"{UNIT_DIR}/{layout.dhcp6_unit}@.service", f"{UNIT_DIR}/{layout.dhcp6_unit}@.service", **dhclient, **units)
    add(f"{UNIT_DIR}/static@.service", f"{UNIT_DIR}/static@.service", **units)

    bonds = sorted(profile.bonds.items())
    first_bond: Bond | None = bonds[0][1] if bonds else None
    add("etc/modprobe.d/bonding.conf", "etc/modprobe.d/bonding.conf", bond=first_bond is not None,
        options=_bonding_options(first_bond))

    add("etc/conf.d/network.conf", "etc/conf.d/network.conf", **_network_conf(profile))

    if profile.supplicant_interfaces():
        networks = [
            {
                "ssid": None if n.ssid is None else esc.wpa_string(n.ssid),
                "hidden": n.hidden, "priority": n.priority,
                "proto": None if n.proto is None else esc.wpa_token(n.proto),
                "group": None if n.group is None else esc.wpa_token(n.group),
                "pairwise": None if n.pairwise is None else esc.wpa_token(n.pairwise),
                "key_mgmt": esc.wpa_token(n.key_mgmt), "sae": n.key_mgmt == "SAE",
                "secret_lines": _secret_lines(loaded, i, n, extra),
            }
            for i, n in enumerate(profile.wireless.networks)
        ]
        add(
            "etc/wpa_supplicant/wpa_supplicant.conf", "etc/wpa_supplicant/wpa_supplicant.conf", mode=SECRET,
            ctrl_interface_group=esc.wpa_token(profile.wireless.ctrl_interface_group or layout.netadmin_group),
            country=esc.wpa_token(profile.wireless.country), networks=networks,
        )

    host_name = profile.dhcp4.host_name if profile.dhcp4.host_name is not None else profile.image.hostname
    client_identifier = state.client_identifier() if profile.dhcp4.client_identifier == "duid" else ""
    add(LEASED_ONLY_HOOK, layout.dhclient_enter_hook.lstrip("/"))
    add("etc/dhcp/dhclient.conf", layout.dhclient_conf.lstrip("/"),
        dhcp4=profile.dhcp4, host_name=esc.dhclient_string(host_name) if host_name else None,
        client_identifier=esc.dhclient_token(client_identifier) if client_identifier else None)

    dhcp6 = profile.dhcp6
    request = dhcp6.request
    if layout.dhcp6_unit == "dhcp6c":
        add("etc/wide-dhcpv6/dhcp6c.conf", "etc/wide-dhcpv6/dhcp6c.conf", mode=SECRET,
            ia_na=dhcp6.ia_na, rapid_commit=dhcp6.rapid_commit,
            request=esc.dhcp6c_list(request) if request else None,
            script=esc.dhcp6c_string(dhcp6.script) if dhcp6.script else None,
            prefix_delegation=[{"interface": esc.dhcp6c_token(pd.interface), "sla_id": pd.sla_id,
                                "sla_len": pd.sla_len} for pd in dhcp6.prefix_delegation],
            dhcp6c_key=esc.dhcp6c_string(state.dhcp6c_key))
        files.append(File("etc/wide-dhcpv6/dhcp6cctlkey", (state.dhcp6c_key + "\n").encode(), SECRET))
        # WIDE dhcp6c's DUID file: a 16-bit length in host (little-endian) order, then the DUID.
        files.append(File(layout.dhcp6c_duid.lstrip("/"), len(state.duid).to_bytes(2, "little") + state.duid, SECRET))
    else:
        add("etc/dhclient6.conf", "etc/dhclient6.conf", duid=esc.dhclient_token(state.duid_hex()),
            request=esc.dhclient_comment(", ".join(request)) if request else None)

    links = _hard_links(profile)
    presets, symlinks = _enablement(profile, layout.dhcp6_unit)
    files.append(File("etc/systemd/system-preset/00-imagegen.preset", presets.encode()))
    entries: list[Entry] = [*files, *extra, *links, *symlinks]
    entries += plan_system(loaded, target, entries)
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
