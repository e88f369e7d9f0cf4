"""Issue 11's injection reproductions: a value that passes validation means exactly what it says in every
file it reaches; one that cannot be carried is refused with the file, the key and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from readback import Str, have_wpa_supplicant, read_wpa, recording_layout, replay_unit, statements
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import ProfileError, UsageError
from imagegen.image.aptsources import DebianMirror, debian_sources, mirror_from_url
from imagegen.image.config import BuildRequest
from imagegen.profile import HostState, load_profiles
from imagegen.profile.model import WPA_STRING_BYTES
from imagegen.render import render_overlay
from imagegen.render.distro import DEBIAN, Target
from imagegen.render.escape import WPA_FIELD_MAX, wpa_field, wpa_string

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
LAPTOP = (EXAMPLES / "laptop.toml").read_text()
WPA_CONF = "etc/wpa_supplicant/wpa_supplicant.conf"
needs_wpa = pytest.mark.skipif(not have_wpa_supplicant(), reason="wpa_supplicant (wpasupplicant) is not installed")
# What an attacker appends to a string that lands in wpa_supplicant.conf: an open network of its own.
OPEN_NETWORK = '"\n}\nnetwork={\n ssid="evil"\n key_mgmt=NONE\n}\nnetwork={\n ssid="x'


def toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def profile(tmp_path: Path, text: str, name: str = "host.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = profile(tmp_path, text)
    with pytest.raises(ProfileError) as e:
        load_profiles([path])
    assert e.value.exit_code == 2
    for line in e.value.problems:
        assert "\n" not in line and line.startswith(f"{path}: ")
    return e.value.problems


def one_problem(tmp_path: Path, text: str, key: str) -> str:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'host.toml'}: {key}: "), found
    return found[0]


def with_bond(extra: str) -> str:
    return LAPTOP.replace('addresses = ["192.168.0.2/24"]', f'addresses = ["192.168.0.2/24"]\n{extra}')


def render(tmp_path: Path, text: str, layout=DEBIAN) -> Path:
    out = tmp_path / "out"
    render_overlay(load_profiles([profile(tmp_path, text)]), out, state=STATE, target=Target(layout, "trixie"))
    return out


# --- network.conf and static@: zone ids -------------------------------------------------------------

@pytest.mark.parametrize(("extra", "key"), [
    ('routes = [{ to = "default", via = "fe80::1%$(touch${IFS}PWNED)" }]', "bonds.bond0.routes[0].via"),
    ('routes = [{ to = "fe80::%$(reboot)/64" }]', "bonds.bond0.routes[0].to"),
])
def test_a_zone_id_that_is_no_interface_name_is_refused_in_routes(tmp_path: Path, extra: str, key: str) -> None:
    assert "is not an interface name" in one_problem(tmp_path, with_bond(extra), key)


def test_a_zone_id_that_is_no_interface_name_is_refused_in_addresses(tmp_path: Path) -> None:
    text = LAPTOP.replace('addresses = ["192.168.0.2/24"]', '''addresses = ["fe80::2%x';reboot;'/64"]''')
    assert "is not an interface name" in one_problem(tmp_path, text, "bonds.bond0.addresses[0]")


def test_addresses_and_routes_reach_ip_as_declared_one_word_each(tmp_path: Path) -> None:
    layout, log = recording_layout(DEBIAN, tmp_path)
    out = render(tmp_path, with_bond(
        'routes = [{ to = "default", via = "fe80::1%bond0" }, { to = "10.0.0.0/8", via = "192.168.0.1", metric = 7 }]'
    ).replace('"192.168.0.2/24"', '"192.168.0.2/24", "fe80::2%bond0/64"'), layout)
    assert replay_unit(out, "static", "bond0", log) == [
        ["link", "set", "bond0", "up"],
        ["address", "add", "local", "192.168.0.2/24", "dev", "bond0"],
        ["address", "add", "local", "fe80::2%bond0/64", "dev", "bond0"],
        ["route", "replace", "to", "::/0", "via", "fe80::1%bond0", "dev", "bond0"],
        ["route", "replace", "to", "10.0.0.0/8", "via", "192.168.0.1", "metric", "7", "dev", "bond0"],
    ]


def test_the_bond_options_reach_ip_link_add_one_word_each(tmp_path: Path) -> None:
    # A bond name no machine has: master@'s script also writes the primary to /sys/class/net/NAME/.
    name = "ziq_bond9"
    layout, log = recording_layout(DEBIAN, tmp_path)
    out = render(tmp_path, LAPTOP.replace("bond0", name).replace("miimon = 100", "miimon = 100\nupdelay = 200"), layout)
    assert replay_unit(out, "master", name, log) == [
        ["link", "add", "name", name, "type", "bond", "mode", "active-backup", "miimon", "100", "updelay", "200",
         "downdelay", "0", "peer_notify_delay", "100", "num_grat_arp", "3", "fail_over_mac", "active",
         "primary_reselect", "always"],
        ["link", "set", name, "up"],
    ]


# --- dhclient.conf ------------------------------------------------------------------------------------

def test_host_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    text = LAPTOP.replace("[dhcp4]\n", '[dhcp4]\nhost_name = "x\\";\\nscript \\"/tmp/pwn\\";\\nsend host-name \\"y"\n')
    assert "is not a DNS name" in one_problem(tmp_path, text, "dhcp4.host_name")


def test_a_dns_host_name_is_the_one_statement_dhclient_reads(tmp_path: Path) -> None:
    out = render(tmp_path, LAPTOP.replace("[dhcp4]\n", '[dhcp4]\nhost_name = "kiosk-7.lab.example"\n'))
    found = statements((out / "etc/dhcp/dhclient.conf").read_text(), escapes=True)
    sent = [s for s in found if s[:2] == ("send", "host-name")]
    assert sent == [("send", "host-name", Str("kiosk-7.lab.example"))]
    assert [s[0] for s in found] == ["initial-interval", "reboot", "timeout", "retry", "send", "send"]


@pytest.mark.parametrize("key", ["initial_interval", "reboot", "timeout", "retry"])
def test_a_dhclient_time_beyond_32_bits_is_refused(tmp_path: Path, key: str) -> None:
    text = re.sub(rf"^{key} = \d+$", f"{key} = 4294967296", LAPTOP, flags=re.M)
    assert "less than or equal to 2147483647" in one_problem(tmp_path, text, f"dhcp4.{key}")


# --- wpa_supplicant.conf --------------------------------------------------------------------------------

EAP_NET = (
    '\n[[wireless.networks]]\nssid = "Work"\nkey_mgmt = "WPA-EAP"\n'
    'eap = {{ method = "PEAP", identity = {identity}, anonymous_identity = {anonymous}, password = {password}, '
    'phase2 = {phase2}, private_key_password = {pkpass} }}\n'
)


def eap_profile(**values: str) -> str:
    fields = {"identity": "alice", "anonymous": "anon", "password": "pw", "phase2": "auth=MSCHAPV2", "pkpass": "kp"}
    fields.update(values)
    return LAPTOP + EAP_NET.format(**{k: toml(v) for k, v in fields.items()})


@pytest.mark.parametrize(("field", "key"), [
    ("identity", "identity"), ("anonymous", "anonymous_identity"), ("password", "password"),
    ("phase2", "phase2"), ("pkpass", "private_key_password"),
])
def test_an_eap_string_cannot_add_a_network(tmp_path: Path, field: str, key: str) -> None:
    found = one_problem(tmp_path, eap_profile(**{field: "x" + OPEN_NETWORK}), f"wireless.networks[1].eap.{key}")
    assert "control character" in found


def test_ctrl_interface_group_cannot_add_a_network(tmp_path: Path) -> None:
    text = LAPTOP.replace('country = "US"', f"country = \"US\"\nctrl_interface_group = {toml('netdev' + OPEN_NETWORK)}")
    assert "is not a group name" in one_problem(tmp_path, text, "wireless.ctrl_interface_group")


@needs_wpa
def test_eap_strings_with_quotes_and_hashes_are_read_back_exactly(tmp_path: Path) -> None:
    values = {"identity": 'al"ice#1', "anonymous": "anon#\\x", "password": 'p"w', "phase2": 'auth="MSCHAPV2"',
              "pkpass": "ké\"y"}
    out = render(tmp_path, eap_profile(**values))
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors
    assert len(conf.networks) == 2
    work = conf.networks[1]
    assert work["ssid"] == b"Work"
    assert work["identity"] == values["identity"].encode()
    assert work["anonymous_identity"] == values["anonymous"].encode()
    assert work["password"] == values["password"].encode()
    assert work["phase2"] == values["phase2"].encode()
    assert work["private_key_passwd"] == values["pkpass"].encode()


@pytest.mark.parametrize("priority", [2147483648, -2147483649, 99999999999999999999])
def test_a_priority_wpa_supplicant_would_wrap_round_is_refused(tmp_path: Path, priority: int) -> None:
    text = LAPTOP.replace('priority = 2\n', f'priority = {priority}\n')
    assert "wireless.networks[0].priority" in one_problem(tmp_path, text, "wireless.networks[0].priority")


@needs_wpa
def test_the_highest_priority_is_read_by_wpa_supplicant_as_written(tmp_path: Path) -> None:
    out = render(tmp_path, LAPTOP.replace('priority = 2\n', 'priority = 2147483647\n'))
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and conf.networks[0]["priority"] == "2147483647"


SAE_NET = '\n[[wireless.networks]]\nssid = "Home3"\nkey_mgmt = "SAE"\n'


@needs_wpa
def test_an_sae_password_with_a_quote_and_a_hash_is_loaded(tmp_path: Path) -> None:
    out = render(tmp_path, LAPTOP + SAE_NET + 'passphrase = "pa\\"ss#word"\n')
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors
    assert [n["ssid"] for n in conf.networks] == [b"MyHome", b"Home3"]
    assert conf.networks[1]["sae_password"] == b'pa"ss#word'


# wpa_supplicant 2.10 reads 1998 characters of a line and drops the rest: a longer line no longer
# parses and the whole file, every network with it, is refused.
LONG = "é" * 1000  # 2000 bytes, 4000 characters of hex


@pytest.mark.parametrize(("field", "key"), [
    ("identity", "identity"), ("anonymous", "anonymous_identity"), ("password", "password"),
    ("phase2", "phase2"), ("pkpass", "private_key_password"),
])
def test_an_eap_string_longer_than_a_wpa_supplicant_line_is_refused(tmp_path: Path, field: str, key: str) -> None:
    found = one_problem(tmp_path, eap_profile(**{field: LONG}), f"wireless.networks[1].eap.{key}")
    assert "2000 bytes" in found and LONG not in found


@needs_wpa
def test_the_longest_eap_strings_are_loaded_by_wpa_supplicant(tmp_path: Path) -> None:
    longest = "é" * (WPA_STRING_BYTES // 2)
    values = {"identity": longest, "anonymous": longest, "password": longest, "phase2": longest, "pkpass": longest}
    conf = read_wpa(render(tmp_path, eap_profile(**values)) / WPA_CONF)
    assert conf.loaded and not conf.errors
    assert conf.networks[1]["identity"] == longest.encode()
    assert conf.networks[1]["private_key_passwd"] == longest.encode()


def test_a_password_file_longer_than_a_wpa_supplicant_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(LONG + "\n")
    with pytest.raises(UsageError) as e:
        render(tmp_path, LAPTOP + SAE_NET + 'psk_file = "secret.txt"\n')
    assert e.value.exit_code == 2
    assert str(e.value).startswith(f"{tmp_path / 'host.toml'}: wireless.networks[1].psk_file: ")
    assert LONG not in str(e.value) and not (tmp_path / "out").exists()


def test_a_wpa_field_line_is_never_longer_than_wpa_supplicant_reads() -> None:
    with pytest.raises(ValueError) as e:
        wpa_field("password", wpa_string("é" * 1000))
    assert "é" not in str(e.value)
    assert len(wpa_field("private_key_passwd", wpa_string("é" * (WPA_STRING_BYTES // 2))).text) <= WPA_FIELD_MAX


@pytest.mark.parametrize(("net", "key"), [
    (SAE_NET + 'psk_file = "secret.txt"\n', "wireless.networks[1].psk_file"),
    ('\n[[wireless.networks]]\nssid = "Work"\nkey_mgmt = "WPA-EAP"\n'
     'eap = { method = "PEAP", identity = "alice", password_file = "secret.txt" }\n',
     "wireless.networks[1].eap.password_file"),
])
def test_a_secret_file_cannot_add_a_network(tmp_path: Path, net: str, key: str) -> None:
    (tmp_path / "secret.txt").write_text("pass" + OPEN_NETWORK + "\n")
    with pytest.raises(UsageError) as e:
        render(tmp_path, LAPTOP + net)
    assert e.value.exit_code == 2
    assert str(e.value).startswith(f"{tmp_path / 'host.toml'}: {key}: secret.txt ")
    assert "evil" not in str(e.value) and not (tmp_path / "out").exists()


@needs_wpa
def test_a_secret_file_with_quotes_is_read_back_exactly(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text('my "pass" # word\n')
    out = render(tmp_path, LAPTOP + SAE_NET + 'psk_file = "secret.txt"\n')
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors
    assert conf.networks[1]["sae_password"] == b'my "pass" # word'


@needs_wpa
def test_two_eap_files_of_the_same_name_do_not_collide(tmp_path: Path) -> None:
    for d in ("ca", "me"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cert.pem").write_text(f"-----BEGIN CERTIFICATE-----\n{d}\n-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n")
    out = render(tmp_path, LAPTOP + '\n[[wireless.networks]]\nssid = "Work"\nkey_mgmt = "WPA-EAP"\n'
                 'eap = { method = "TLS", identity = "alice", ca_cert = "ca/cert.pem", client_cert = "me/cert.pem", '
                 'private_key = "key.pem" }\n')
    conf = read_wpa(out / WPA_CONF)
    assert conf.loaded and not conf.errors
    work = conf.networks[1]
    paths = {key: work[key].decode() for key in ("ca_cert", "client_cert", "private_key")}  # type: ignore[union-attr]
    assert len(set(paths.values())) == 3
    assert "ca\n" in (out / paths["ca_cert"].lstrip("/")).read_text()
    assert "me\n" in (out / paths["client_cert"].lstrip("/")).read_text()


# --- dhcp6c.conf --------------------------------------------------------------------------------------

def test_dhcp6_script_cannot_add_a_profile(tmp_path: Path) -> None:
    script = '/x";\n};\nprofile evil {\n script "/tmp/pwn'
    text = LAPTOP.replace("[dhcp6]\n", f"[dhcp6]\nscript = {toml(script)}\n")
    assert "is not an absolute path" in one_problem(tmp_path, text, "dhcp6.script")


def test_dhcp6_script_is_the_one_statement_dhcp6c_reads(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plain = statements((render(tmp_path / "plain", LAPTOP) / "etc/wide-dhcpv6/dhcp6c.conf").read_text(), escapes=False)
    out = render(tmp_path, LAPTOP.replace("[dhcp6]\n", '[dhcp6]\nscript = "/etc/wide-dhcpv6/dhcp6c-script"\n'))
    found = statements((out / "etc/wide-dhcpv6/dhcp6c.conf").read_text(), escapes=False)
    assert found[0][:2] == ("profile", "default")
    body = found[0][2].statements  # type: ignore[attr-defined]
    assert [s for s in body if s[0] == "script"] == [("script", Str("/etc/wide-dhcpv6/dhcp6c-script"))]
    assert tuple(s for s in body if s[0] != "script") == plain[0][2].statements  # type: ignore[attr-defined]
    assert found[1:] == plain[1:]


# --- image: mirror, release, root password ---------------------------------------------------------------

def test_mirror_with_a_line_break_is_refused(tmp_path: Path) -> None:
    mirror = "http://deb.example/debian\nTrusted: yes"
    text = LAPTOP.replace('release = "trixie"', f'release = "trixie"\nmirror = {toml(mirror)}')
    assert "is not an http://, https:// or file:///" in one_problem(tmp_path, text, "image.mirror")
    with pytest.raises(UsageError):
        mirror_from_url(mirror)
    with pytest.raises(ValueError):
        debian_sources(DebianMirror(mirror), "trixie")


@pytest.mark.parametrize("url", ["http://h/debian", "https://h:8080/debian/", "file:///srv/mirror/debian",
                                 "http://[::1]/debian"])
def test_mirror_urls_that_pass(tmp_path: Path, url: str) -> None:
    text = LAPTOP.replace('release = "trixie"', f'release = "trixie"\nmirror = {toml(url)}')
    assert load_profiles([profile(tmp_path, text)]).profile.image.mirror == url


@pytest.mark.parametrize("url", ["http://alice:S3cretPw@h/debian", "https://S3cretPw@h/debian"])
def test_a_mirror_with_a_login_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    text = LAPTOP.replace('release = "trixie"', f'release = "trixie"\nmirror = {toml(url)}')
    found = one_problem(tmp_path, text, "image.mirror")
    assert "user name or password" in found and "S3cretPw" not in found
    with pytest.raises(UsageError) as e:
        mirror_from_url(url)
    assert "S3cretPw" not in str(e.value)


@pytest.mark.parametrize("release", ["", "..", "../../tmp", "trixie\nTrusted: yes", "Trixie", "trixie main"])
def test_release_must_be_a_plain_suite(tmp_path: Path, release: str) -> None:
    text = LAPTOP.replace('release = "trixie"', f"release = {toml(release)}")
    assert "is not a suite or code name" in one_problem(tmp_path, text, "image.release")


def test_the_cache_of_a_build_request_stays_in_its_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="image.release"):
        BuildRequest(overlay=tmp_path, out_dir=tmp_path / "o", release="../../x", cache_root=tmp_path / "c")
    request = BuildRequest(overlay=tmp_path, out_dir=tmp_path / "o", release="trixie", cache_root=tmp_path / "c")
    assert request.cache_dir.parent == tmp_path / "c"


@pytest.mark.parametrize("value", ["$6$salt$hash:0:0:/root", "$y$j9T$salt$hash\nroot2::0:0::/:/bin/sh", "$", "$6$",
                                   "$6$salt$", "$6$sa lt$hash",
                                   "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"])  # md5crypt: broken, refused
def test_root_password_hash_must_be_a_crypt_string(tmp_path: Path, value: str) -> None:
    text = LAPTOP.replace('release = "trixie"', f"release = \"trixie\"\nroot_password_hash = {toml(value)}")
    assert "is not a crypt(3) hash" in one_problem(tmp_path, text, "image.root_password_hash")


@pytest.mark.parametrize("value", [
    "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
    "$6$rounds=10000$saltsalt$3m5Vr4cYsv1dVO8O9aT0sI2T8Z8lW3xv2oR7O2w3YpM5V7Sgq1RZn9sC3lEoQp5B2rT5V8K0H6J2N4a1b2c3d.",
    "$2b$12$" + "R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
])
def test_crypt_hashes_that_pass(tmp_path: Path, value: str) -> None:
    text = LAPTOP.replace('release = "trixie"', f"release = \"trixie\"\nroot_password_hash = {toml(value)}")
    assert load_profiles([profile(tmp_path, text)]).profile.image.root_password_hash == value


# --- names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["master", "slave", "supplicant", "dhclient", "dhcp6c", "dhclient6", "static"])
def test_an_interface_named_like_a_template_is_one_line_with_the_fix(tmp_path: Path, name: str) -> None:
    text = LAPTOP.replace("enp3s0", name)
    path = profile(tmp_path, text)
    result = CliRunner().invoke(app, ["render", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: interfaces.{name}: ")
    assert f"choose another name, e.g. '{name}0'" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
