"""Arbitrary strings in every free-text field of a profile (and in the secret files it names): either
the profile is refused (exit 2, one line per problem naming the file and the key), or the files the
value reaches, read back by the programs that read them on the target, hold exactly that value and no
other statement.

HYPOTHESIS_PROFILE=ci (or CI set) runs 500 examples per field instead of the fast suite's 50.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readback import Str, have_wpa_supplicant, read_env_file, read_wpa, recording_layout, replay_unit, statements

from imagegen.errors import UsageError
from imagegen.image.aptsources import debian_sources, mirror_from_url
from imagegen.image.config import BuildRequest
from imagegen.profile import HostState, load_profiles
from imagegen.render import plan_overlay
from imagegen.render.distro import DEBIAN, Layout, Target
from imagegen.render.plan import File

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LAPTOP = (EXAMPLES / "laptop.toml").read_text()
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
WPA_CONF = "etc/wpa_supplicant/wpa_supplicant.conf"

settings.register_profile("fast", max_examples=50, deadline=timedelta(seconds=5),
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=500, deadline=timedelta(seconds=5),
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "fast")
examples = settings(settings.get_profile(PROFILE if PROFILE in ("fast", "ci") else "fast"))


def toml_str(value: str) -> str:
    """A TOML basic string holding exactly `value`."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


# Characters (and words) that mean something in one of the target syntaxes, and the rest of Unicode.
_SPECIAL = list("\"'\\$`%;#{}=,/:.-_ \t\n\r\x00*?[]~!&|<>()@^+") + ["\u2028", "\x7f", "é", "☕", "${IFS}", "$(id)"]
_ANY = st.lists(st.one_of(st.sampled_from(_SPECIAL), st.characters(blacklist_categories=("Cs",))),
                max_size=30).map("".join)


def values(*valid: str) -> st.SearchStrategy[str]:
    """Arbitrary text, valid values, and valid values with arbitrary text around them."""
    near = st.tuples(st.sampled_from(valid), _ANY, st.booleans()).map(lambda t: t[0] + t[1] if t[2] else t[1] + t[0])
    return st.one_of(_ANY, st.sampled_from(valid), near)


@dataclass(frozen=True)
class Case:
    key: str
    # The profile's text (and secret files beside it) holding the value.
    profile: Callable[[str], str]
    # Read back what the value reached; raise AssertionError if it is not exactly the value.
    check: Callable[[Rendered, str], None]
    files: Callable[[str], dict[str, str]] = lambda v: {}
    valid: tuple[str, ...] = ("x",)
    # A secret file holds the secret and a line break; white space around it is not part of it.
    strip: bool = False


@dataclass(frozen=True)
class Rendered:
    out: Path
    files: dict[str, File]
    ip_log: Path


# The files the readers below read; the others are planned but not written, to keep examples fast.
READ_BACK = (WPA_CONF, "etc/conf.d/network.conf", "etc/systemd/system/static@.service", "etc/dhcp/dhclient.conf",
             "etc/wide-dhcpv6/dhcp6c.conf")


def outcome(case: Case, value: str, work: Path, ip: tuple[Layout, Path]) -> None:
    """The property, for one value of one field. `work` is shared by the examples of a test (a fresh
    directory each would make file system time most of the test's)."""
    path = work / "host.toml"
    out = work / "out"
    for rel in READ_BACK:
        (out / rel).unlink(missing_ok=True)
    try:
        for name, content in case.files(value).items():
            (work / name).write_text(content)
        path.write_text(case.profile(value))
    except (OSError, ValueError):
        return  # not a file this system can hold: nothing to read back
    layout, ip_log = ip
    try:
        loaded = load_profiles([path])
        plan = plan_overlay(loaded, STATE, Target(layout, "trixie"))
    except UsageError as e:
        assert e.exit_code == 2
        lines = getattr(e, "problems", None) or [str(e)]
        assert lines
        for line in lines:
            assert "\n" not in line and "\r" not in line, line
            assert line.startswith(f"{path}: "), line
        assert any(line.startswith(f"{path}: {case.key}") for line in lines), (case.key, lines)
        return
    files = {e.path: e for e in plan.entries if isinstance(e, File)}
    for rel in READ_BACK:
        if rel in files:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[rel].content)
    case.check(Rendered(out, files, ip_log), value)


# --- readers of each target --------------------------------------------------------------------------

def wpa_networks(out: Path) -> list[dict[str, bytes | str]]:
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors, conf
    return conf.networks


def psk(ssid: str, passphrase: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32)


BASE_NET = {"ssid": b"MyHome", "priority": "2", "proto": "0x2", "group": "0x10", "pairwise": "0x10",
            "key_mgmt": "0x2", "PSK": psk("MyHome", "SuperSecret")}
SAE_FIELDS = {"ssid": b"Home3", "key_mgmt": "0x400", "ieee80211w": "2"}
EAP_FIELDS = {"ssid": b"Work", "key_mgmt": "0x1", "eap methods": bytes.fromhex("0000000019" + "00" * 11),
              "identity": b"alice", "anonymous_identity": b"anon", "password": b"pw", "phase2": b"auth=MSCHAPV2",
              "private_key_passwd": b"kp"}


def expect_networks(out: Path, *networks: dict[str, bytes | str]) -> None:
    assert wpa_networks(out) == list(networks)


def sae_profile(secret: str) -> str:
    return LAPTOP + f'\n[[wireless.networks]]\nssid = "Home3"\nkey_mgmt = "SAE"\n{secret}\n'


EAP_KEYS = {"identity": "alice", "anonymous_identity": "anon", "password": "pw", "phase2": "auth=MSCHAPV2",
            "private_key_password": "kp"}
WPA_NAMES = {"private_key_password": "private_key_passwd"}


def eap_profile(**override: str) -> str:
    fields = {**EAP_KEYS, **override}
    if "password_file" in fields:
        del fields["password"]
    table = ", ".join(f"{k} = {toml_str(v)}" for k, v in fields.items())
    return LAPTOP + ('\n[[wireless.networks]]\nssid = "Work"\nkey_mgmt = "WPA-EAP"\n'
                     f'eap = {{ method = "PEAP", {table} }}\n')


def secret_line(value: str) -> str:
    """A secret file as a person writes it: the secret, then a line break."""
    return value + "\n"


def dhclient_check(expected_name: str | None) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        found = statements((out / "etc/dhcp/dhclient.conf").read_text(), escapes=True)
        head = [s for s in found if s[:2] != ("send", "host-name")]
        assert [s[0] for s in head] == ["initial-interval", "reboot", "timeout", "retry", "send"]
        sent = [s for s in found if s[:2] == ("send", "host-name")]
        assert sent == ([("send", "host-name", Str(expected_name))] if expected_name else [])
    return check


def sh_static(r: Rendered, addresses: list[str], routes: list[list[str]]) -> None:
    assert replay_unit(r.out, "static", "bond0", r.ip_log) == [
        ["link", "set", "bond0", "up"],
        *(["address", "add", "local", a, "dev", "bond0"] for a in addresses),
        *(["route", "replace", *r, "dev", "bond0"] for r in routes),
    ]


def deb822_stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for stanza in text.strip("\n").split("\n\n"):
        fields = {}
        for line in stanza.split("\n"):
            key, sep, value = line.partition(": ")
            assert sep and re.fullmatch(r"[A-Za-z-]+", key), line
            fields[key] = value
        out.append(fields)
    return out


def check_release(r: Rendered, value: str) -> None:
    [stanza] = deb822_stanzas(debian_sources(mirror_from_url("http://m.example/debian"), value))
    assert stanza == {"Types": "deb", "URIs": "http://m.example/debian", "Suites": f"{value} {value}-updates",
                      "Components": "main", "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    with tempfile.TemporaryDirectory() as tmp:
        request = BuildRequest(overlay=Path(tmp), out_dir=Path(tmp) / "o", release=value, cache_root=Path(tmp) / "c")
        assert request.cache_dir.parent == Path(tmp) / "c"
        assert request.cache_dir.name == f"debian~{value}~plain"


def check_mirror(r: Rendered, value: str) -> None:
    [stanza] = deb822_stanzas(debian_sources(mirror_from_url(value), "trixie"))
    assert stanza["URIs"] == value.rstrip("/") and stanza["Suites"] == "trixie trixie-updates"
    assert list(stanza) == ["Types", "URIs", "Suites", "Components", "Signed-By"]


def check_root_hash(r: Rendered, value: str) -> None:
    # mkosi writes it into /etc/shadow: root:HASH:... has nine ':'-separated fields, one line.
    fields = f"root:{value}:20000:0:99999:7:::".split(":")
    assert len(fields) == 9 and fields[1] == value and not any(c.isspace() for c in value)


def iface_profile(name: str) -> str:
    key = toml_str(name)
    return (LAPTOP.replace("[interfaces.enp3s0]", f"[interfaces.{key}]")
            .replace('members = ["enp3s0", "wlp2s0"]', f'members = [{key}, "wlp2s0"]')
            .replace('primary = "enp3s0"', f"primary = {key}"))


def check_iface(r: Rendered, value: str) -> None:
    env = read_env_file(r.out / "etc/conf.d/network.conf")
    env.pop("PWD", None)
    env.pop("SHLVL", None)
    env.pop("_", None)
    assert env == {
        "bond0KIND": "bond",
        "bond0OPTIONS": "mode active-backup miimon 100 updelay 0 downdelay 0 peer_notify_delay 100 num_grat_arp 3 "
                        "fail_over_mac active primary_reselect always",
        "bond0PRIMARY": value, "bond0ADDRS": "192.168.0.2/24", "bond0ROUTES": "",
        f"{value}ADDRS": "", "wlp2s0ADDRS": "",
    }
    assert f"etc/systemd/system/{value}@.service" not in r.files  # a hard link, planned apart from the files


def _file_name(value: str) -> bool:
    return bool(value) and "/" not in value and "\0" not in value and value not in (".", "..", "host.toml", "out") \
        and len(value.encode()) < 200


def _check_ca_cert(r: Rendered, value: str) -> None:
    [path] = [p for p in r.files if p.startswith("etc/wpa_supplicant/certs/")]
    assert r.files[path].content.startswith(b"-----BEGIN CERTIFICATE-----\nca\n")
    expect_networks(r.out, BASE_NET, {**EAP_FIELDS, "ca_cert": f"/{path}".encode()})


def _check_wpa_global(out: Path, value: str) -> None:
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors
    assert conf.globals == {"ctrl_interface": "/var/run/wpa_supplicant", "ctrl_interface_group": value,
                            "update_config": "1", "eapol_version": "2", "ap_scan": "1", "country": "US"}
    assert conf.networks == [BASE_NET]


def _check_dhcp6c_script(out: Path, value: str) -> None:
    found = statements((out / "etc/wide-dhcpv6/dhcp6c.conf").read_text(), escapes=False)
    assert [s[0] for s in found] == ["profile", "id-assoc", "keyinfo"]
    body = found[0][2].statements  # type: ignore[attr-defined]
    assert body == (("send", "ia-na", "1"), ("send", "rapid-commit"),
                    ("request", "domain-name-servers", ",", "domain-name", ",", "ntp-servers"), ("script", Str(value)))


CASES = [
    Case("image.hostname", lambda v: LAPTOP.replace('hostname = "laptop"', f"hostname = {toml_str(v)}"),
         lambda r, v: dhclient_check(v)(r.out), valid=("laptop", "kiosk-7")),
    Case("dhcp4.host_name", lambda v: LAPTOP.replace("[dhcp4]\n", f"[dhcp4]\nhost_name = {toml_str(v)}\n"),
         lambda r, v: dhclient_check(v or None)(r.out), valid=("", "a.example", "host-1")),
    Case("dhcp6.script", lambda v: LAPTOP.replace("[dhcp6]\n", f"[dhcp6]\nscript = {toml_str(v)}\n"),
         lambda r, v: _check_dhcp6c_script(r.out, v), valid=("/etc/wide-dhcpv6/dhcp6c-script", "/usr/x+y")),
    Case("wireless.ctrl_interface_group",
         lambda v: LAPTOP.replace('country = "US"', f'country = "US"\nctrl_interface_group = {toml_str(v)}'),
         lambda r, v: _check_wpa_global(r.out, v), valid=("netdev", "wheel", "_a-1")),
    Case("wireless.networks[0].ssid", lambda v: LAPTOP.replace('ssid = "MyHome"', f"ssid = {toml_str(v)}"),
         lambda r, v: expect_networks(r.out, {**BASE_NET, "ssid": v.encode(), "PSK": psk(v, "SuperSecret")}),
         valid=("MyHome", "Café ☕", 'a"b#c', "x y")),
    Case("wireless.networks[0].passphrase",
         lambda v: LAPTOP.replace('passphrase = "SuperSecret"', f"passphrase = {toml_str(v)}"),
         lambda r, v: expect_networks(r.out, {**BASE_NET, "PSK": psk("MyHome", v)}),
         valid=("SuperSecret", 'pa"ss#word', "12345678")),
    Case("wireless.networks[0].psk_file",
         lambda v: LAPTOP.replace('passphrase = "SuperSecret"', 'psk_file = "secret.txt"'),
         lambda r, v: expect_networks(r.out, {**BASE_NET, "PSK": bytes.fromhex(v) if re.fullmatch(
             "[0-9a-fA-F]{64}", v) else psk("MyHome", v)}),
         files=lambda v: {"secret.txt": secret_line(v)}, valid=("SuperSecret", "ab" * 32, 'pa"ss#word'), strip=True),
    Case("wireless.networks[1].passphrase", lambda v: sae_profile(f"passphrase = {toml_str(v)}"),
         lambda r, v: expect_networks(r.out, BASE_NET, {**SAE_FIELDS, "sae_password": v.encode()}),
         valid=('pa"ss#word', "SuperSecret")),
    Case("wireless.networks[1].psk_file", lambda v: sae_profile('psk_file = "secret.txt"'),
         lambda r, v: expect_networks(r.out, BASE_NET, {**SAE_FIELDS, "sae_password": v.encode()}),
         files=lambda v: {"secret.txt": secret_line(v)}, valid=('pa"ss#word', "é x"), strip=True),
    *(Case(f"wireless.networks[1].eap.{key}", lambda v, key=key: eap_profile(**{key: v}),
           lambda r, v, key=key: expect_networks(r.out, BASE_NET, {**EAP_FIELDS, WPA_NAMES.get(key, key): v.encode()}),
           valid=(EAP_KEYS[key], 'a"b', "#x", "é")) for key in EAP_KEYS),
    Case("wireless.networks[1].eap.password_file", lambda v: eap_profile(password_file="secret.txt"),
         lambda r, v: expect_networks(r.out, BASE_NET, {**EAP_FIELDS, "password": v.encode()}),
         files=lambda v: {"secret.txt": secret_line(v)}, valid=('p"w', "pw"), strip=True),
    Case("wireless.networks[1].eap.ca_cert", lambda v: eap_profile(ca_cert=v),
         _check_ca_cert,
         files=lambda v: {v: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"} if _file_name(v) else {},
         valid=("ca.pem", "my ca.crt", 'c"a')),
    Case("interfaces", iface_profile, check_iface, valid=("enp3s0", "eth_1", "master")),
    Case("bonds.bond0.addresses[0]",
         lambda v: LAPTOP.replace('addresses = ["192.168.0.2/24"]', f"addresses = [{toml_str(v)}]"),
         lambda r, v: sh_static(r, [v], []), valid=("192.168.0.2/24", "fe80::2%bond0/64", "fe80::2%x/64")),
    Case("bonds.bond0.routes[0].to",
         lambda v: LAPTOP.replace('addresses = ["192.168.0.2/24"]',
                                  f'addresses = ["192.168.0.2/24"]\nroutes = [{{ to = {toml_str(v)} }}]'),
         lambda r, v: sh_static(r, ["192.168.0.2/24"], [["to", v]]),
         valid=("default", "10.0.0.0/8", "fe80::%bond0/64")),
    Case("bonds.bond0.routes[0].via",
         lambda v: LAPTOP.replace('addresses = ["192.168.0.2/24"]', 'addresses = ["192.168.0.2/24"]\n'
                                  f'routes = [{{ to = "default", via = {toml_str(v)} }}]'),
         lambda r, v: sh_static(r, ["192.168.0.2/24"], [["to", "::/0" if ":" in v else "default", "via", v]]),
         valid=("192.168.0.1", "fe80::1%bond0", "fe80::1%eth0")),
    Case("image.release", lambda v: LAPTOP.replace('release = "trixie"', f"release = {toml_str(v)}"), check_release,
         valid=("trixie", "bookworm-backports", "13")),
    Case("image.mirror", lambda v: LAPTOP.replace('release = "trixie"', f'release = "trixie"\nmirror = {toml_str(v)}'),
         check_mirror, valid=("http://h/debian", "file:///srv/m", "https://[::1]:8/d/")),
    Case("image.root_password_hash",
         lambda v: LAPTOP.replace('release = "trixie"', f'release = "trixie"\nroot_password_hash = {toml_str(v)}'),
         check_root_hash, valid=("$y$j9T$salt$hash", "$6$rounds=5000$s$h")),
]


WPA_KEYS = {c.key for c in CASES if c.key.startswith("wireless")}


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_a_value_is_refused_or_means_exactly_itself(case: Case, tmp_path: Path) -> None:
    if case.key in WPA_KEYS and not have_wpa_supplicant():
        pytest.skip("wpa_supplicant (wpasupplicant) is not installed")

    strategy = values(*case.valid)
    ip = recording_layout(DEBIAN, tmp_path)

    @examples
    @given(strategy.map(str.strip) if case.strip else strategy)
    def run(value: str) -> None:
        outcome(case, value, tmp_path, ip)

    run()
