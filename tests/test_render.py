from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from seed import seed_files, seed_path

from imagegen.errors import UsageError
from imagegen.profile import HostState, load_profiles
from imagegen.render import render_overlay
from imagegen.render.distro import ARCH, DEBIAN, Target, resolve_target
from imagegen.render.psk import wpa_psk

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UNITS = "etc/systemd/system"
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    """The overlay of the laptop example's network, the article's machine: its users, services and
    files (tests/test_system_render.py) add units and links of their own, which the article has not."""
    text = (EXAMPLES / "laptop.toml").read_text()
    profile = tmp_path / "laptop.toml"
    profile.write_text(text[:text.index("# The rest of the machine")])
    out = tmp_path / "overlay"
    render_overlay(load_profiles([profile]), out, state=STATE)
    return out


# --- The seed, file by file -------------------------------------------------------------------

# Where the target path differs from the article's (Debian's dhclient reads /etc/dhcp/dhclient.conf).
DEBIAN_PATHS = {"/etc/dhclient.conf": "etc/dhcp/dhclient.conf"}

# Every directive that differs from the article, and only those (README: "Where imagegen departs
# from the article"). Lines only in the seed are exact; lines only in ours are named by their key.
EXPECTED = {
    "/etc/dhclient.conf": ({"send dhcp-client-identifier 00:02:00:02:2e:2d:01:bd:c3:92:9a:44:2a:c4 ;"},
                           {"send dhcp-client-identifier"}),
    f"/{UNITS}/dhclient@.service": (
        {"ExecStartPre= /usr/bin/sleep 8", "ExecStart= /usr/sbin/dhclient -d -pf /run/dhclient-%i -i %I",
         "ExecStop= /usr/sbin/dhclient -r -pf /run/dhclient-%i"},
        {"ExecStartPre", "ExecStart", "ExecStop", "TimeoutStartSec"},
    ),
    "/etc/wide-dhcpv6/dhcp6c.conf": ({'secret "ErEJ0GEz7HS3uBU03/hKZA==";'}, {"secret"}),
    f"/{UNITS}/dhcp6c@.service": (set(), set()),
    "/etc/conf.d/network.conf": (set(), {"bond0KIND", "bond0OPTIONS"}),
    f"/{UNITS}/static@.service": (set(), set()),
    "/etc/wpa_supplicant/wpa_supplicant.conf": ({"ctrl_interface_group=wheel"}, {"ctrl_interface_group"}),
    f"/{UNITS}/supplicant@.service": (
        {"Description= wpa_supplicant on %P",
         "ExecStartPost=-/usr/bin/sh -c \"/usr/sbin/iw phy phy`iw dev %I info|grep wiphy|cut -d' ' -f2` "
         "set distance 10\""},
        {"Description", "ExecStartPost"},
    ),
    f"/{UNITS}/slave@.service": (set(), set()),
    "/etc/modprobe.d/bonding.conf": (set(), set()),
    f"/{UNITS}/master@.service": (
        {"ExecStart= -/usr/bin/sh -c ' case %I in *br*) /usr/bin/ip link add name %I type bridge ;; *) "
         "/usr/bin/ip link add name %I type bond ; echo -n $%IPRIMARY > "
         "/sys/devices/virtual/net/%I/bonding/primary ;; esac' ; /usr/bin/ip link set %I up ; /usr/bin/sleep 1"},
        {"ExecStart", "ExecStartPost"},
    ),
}


def directives(text: str, *, debian: bool = False) -> set[str]:
    """The meaningful lines: continuations joined, comments and blank lines dropped, spaces folded."""
    text = text.replace("\u00a0", " ").replace("\\\n", " ")
    if debian:
        for tool in DEBIAN.bin:
            if DEBIAN.bin[tool].startswith("/usr/sbin/"):
                text = re.sub(rf"/usr/bin/{tool}\b", f"/usr/sbin/{tool}", text)
    out = set()
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if line and not line.startswith("#"):
            out.add(re.sub(r"\s+#.*$", "", line) if not line.startswith(("Exec", "Description")) else line)
    return out


def key(line: str) -> str:
    """ExecStart= ... -> ExecStart; send dhcp-client-identifier X; -> send dhcp-client-identifier."""
    first = line.split(" ", 1)[0]
    if "=" in first or line.endswith("="):
        return first.split("=", 1)[0]
    return line.rsplit(" ", 1)[0]


@pytest.mark.skipif(seed_path() is None, reason="the seed article is not beside the checkout")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rendered_file_matches_the_seed(laptop: Path, name: str) -> None:
    seed = seed_files(seed_path())  # type: ignore[arg-type]
    ours = (laptop / DEBIAN_PATHS.get(name, name.lstrip("/"))).read_text()
    assert "\u00a0" not in ours
    theirs, mine = directives(seed[name], debian=True), directives(ours)
    expected_seed_only, expected_our_keys = EXPECTED[name]
    assert theirs - mine == expected_seed_only
    assert {key(line) for line in mine - theirs} == expected_our_keys


@pytest.mark.skipif(seed_path() is None, reason="the seed article is not beside the checkout")
def test_the_seed_has_six_units_and_five_configs() -> None:
    names = set(seed_files(seed_path()))  # type: ignore[arg-type]
    assert names == set(EXPECTED)
    assert len([n for n in names if n.endswith(".service")]) == 6


# --- Structure --------------------------------------------------------------------------------

def test_slave_unit_is_hard_linked_per_member(laptop: Path) -> None:
    slave = laptop / UNITS / "slave@.service"
    for member in ("enp3s0", "wlp2s0"):
        link = laptop / UNITS / f"{member}@.service"
        assert not link.is_symlink()
        assert link.stat().st_ino == slave.stat().st_ino
    assert slave.stat().st_nlink == 3


def test_enablement_links_are_those_of_the_seeds_systemctl_enable(laptop: Path) -> None:
    links = {
        str(p.relative_to(laptop / UNITS)): os.readlink(p)
        for p in (laptop / UNITS).rglob("*") if p.is_symlink()
    }
    assert links == {
        "sys-subsystem-net-devices-wlp2s0.device.wants/supplicant@wlp2s0.service":
            "/etc/systemd/system/supplicant@.service",
        "master@bond0.service.wants/enp3s0@bond0.service": "/etc/systemd/system/enp3s0@.service",
        "sys-subsystem-net-devices-enp3s0.device.wants/enp3s0@bond0.service": "/etc/systemd/system/enp3s0@.service",
        "master@bond0.service.wants/wlp2s0@bond0.service": "/etc/systemd/system/wlp2s0@.service",
        "sys-subsystem-net-devices-wlp2s0.device.wants/wlp2s0@bond0.service": "/etc/systemd/system/wlp2s0@.service",
        "dhclient@bond0.service.requires/master@bond0.service": "/etc/systemd/system/master@.service",
        "dhcp6c@bond0.service.requires/master@bond0.service": "/etc/systemd/system/master@.service",
        "static@bond0.service.requires/master@bond0.service": "/etc/systemd/system/master@.service",
        "sys-subsystem-net-devices-bond0.device.wants/dhclient@bond0.service": "/etc/systemd/system/dhclient@.service",
        "sys-subsystem-net-devices-bond0.device.wants/dhcp6c@bond0.service": "/etc/systemd/system/dhcp6c@.service",
        "sys-subsystem-net-devices-bond0.device.wants/static@bond0.service": "/etc/systemd/system/static@.service",
    }


def test_preset_enables_exactly_the_instances(laptop: Path) -> None:
    preset = (laptop / "etc/systemd/system-preset/00-imagegen.preset").read_text().splitlines()
    assert "enable supplicant@.service wlp2s0" in preset
    assert "enable master@.service bond0" in preset
    assert "enable enp3s0@.service bond0" in preset
    assert "disable slave@.service" in preset


def test_systemctl_preset_creates_the_same_links(laptop: Path, tmp_path: Path) -> None:
    """What `systemctl preset-all` (run by mkosi) makes of the overlay must be the overlay's own links."""
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl is not installed")
    root = tmp_path / "root"
    shutil.copytree(laptop, root, symlinks=True)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink())
    for p in root.rglob("*"):
        if p.is_symlink():
            p.unlink()
    subprocess.run(["systemctl", f"--root={root}", "preset-all"], check=True, capture_output=True)
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink()
                   and "/etc/systemd/system/" in os.readlink(p) and "@" in p.name)
    assert after == before


def test_modes_secrets_are_private(laptop: Path) -> None:
    def mode(rel: str) -> int:
        return stat.S_IMODE((laptop / rel).stat().st_mode)

    for secret in ("etc/wpa_supplicant/wpa_supplicant.conf", "etc/wide-dhcpv6/dhcp6c.conf",
                   "etc/wide-dhcpv6/dhcp6cctlkey", "var/lib/dhcpv6/dhcp6c_duid"):
        assert mode(secret) == 0o600, secret
    assert mode(f"{UNITS}/master@.service") == 0o644
    assert mode("etc/conf.d/network.conf") == 0o644
    assert mode("etc/wpa_supplicant") == 0o755


def test_no_plaintext_passphrase(laptop: Path) -> None:
    for path in laptop.rglob("*"):
        if path.is_file():
            assert b"SuperSecret" not in path.read_bytes(), path


def test_one_duid_for_dhcp_and_dhcpv6(laptop: Path) -> None:
    raw = (laptop / "var/lib/dhcpv6/dhcp6c_duid").read_bytes()
    assert int.from_bytes(raw[:2], "little") == len(raw) - 2 == len(STATE.duid)
    duid = raw[2:]
    conf = (laptop / "etc/dhcp/dhclient.conf").read_text()
    m = re.search(r"send dhcp-client-identifier ([0-9a-f:]+);", conf)
    assert m is not None
    client_id = bytes.fromhex(m[1].replace(":", ""))
    assert client_id[0] == 0xFF and client_id[5:] == duid


def test_dhcp6c_key_generated_per_host_and_shared_with_dhcp6ctl(laptop: Path) -> None:
    conf = (laptop / "etc/wide-dhcpv6/dhcp6c.conf").read_text()
    key = (laptop / "etc/wide-dhcpv6/dhcp6cctlkey").read_text().strip()
    assert f'secret "{key}";' in conf
    assert key == STATE.dhcp6c_key != "ErEJ0GEz7HS3uBU03/hKZA=="


def test_dhclient_waits_for_an_active_slave_not_a_fixed_sleep(laptop: Path) -> None:
    unit = (laptop / UNITS / "dhclient@.service").read_text()
    assert "sleep 8" not in unit
    assert "/sys/class/net/%I/bonding/active_slave" in unit
    assert "-lt 600" in unit  # bounded: 60 s in 0.1 s steps


HOOK = "etc/dhcp/dhclient-enter-hooks.d/imagegen-lease-only"


@pytest.mark.parametrize("reason, env, call, deleted", [
    # RELEASE / EXPIRE / FAIL / STOP, and a lease whose address changed: the old lease's address only.
    ("RELEASE", {"old_ip_address": "192.168.0.77", "old_subnet_mask": "255.255.255.0"},
     "-4 addr flush dev bond0 label bond0", "-4 addr del 192.168.0.77/255.255.255.0 dev bond0"),
    # TIMEOUT whose recorded lease's router does not answer: the address it had just set.
    ("TIMEOUT", {"new_ip_address": "192.168.0.78", "new_subnet_mask": "255.255.255.0"},
     "-4 addr flush dev bond0", "-4 addr del 192.168.0.78/255.255.255.0 dev bond0"),
])
def test_a_lease_that_goes_takes_only_its_own_address(laptop: Path, tmp_path: Path, reason: str,
                                                      env: dict[str, str], call: str, deleted: str) -> None:
    # Debian's dhclient-script sources the hook, then flushes every address labelled bond0: static@'s
    # fail-safe addresses too. With the hook, ip is asked to delete the lease's address alone, and every
    # other ip command passes through as it was.
    log = tmp_path / "ip.log"
    fake = tmp_path / "bin" / "ip"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    script = f". {laptop / HOOK}\nip {call}\nip link set dev bond0 up\n"
    subprocess.run(["sh", "-c", script], check=True, env={"PATH": f"{fake.parent}:/usr/bin:/bin",
                                                           "interface": "bond0", "reason": reason, **env})
    assert log.read_text().splitlines() == [deleted, "link set dev bond0 up"]


def test_the_lease_hook_and_promoted_secondaries_are_only_where_dhcp4_is(laptop: Path, tmp_path: Path) -> None:
    sysctl = "etc/sysctl.d/50-imagegen-network.conf"
    # Deleting a subnet's first address deletes the others unless they are promoted: static@'s stop would
    # take the lease's address along (seen in the VM's static-edit scenario before this file).
    assert "net.ipv4.conf.all.promote_secondaries = 1" in (laptop / sysctl).read_text().splitlines()
    render_overlay(load_profiles([EXAMPLES / "base.toml", EXAMPLES / "kiosk.toml"]), tmp_path / "k", state=STATE)
    assert not (tmp_path / "k" / HOOK).exists() and not (tmp_path / "k" / sysctl).exists()


def _master_wait_script(laptop: Path, tmp_path: Path, active_after: int) -> tuple[str, Path]:
    """master@'s ExecStartPost as sh would run it for bond0, with systemctl and sleep replaced by fakes:
    the device unit turns active on the active_after-th question (0: never)."""
    unit = (laptop / UNITS / "master@.service").read_text().replace("\\\n", " ")
    line = next(x for x in unit.splitlines() if x.startswith("ExecStartPost="))
    script = re.search(r"-c '(.*)'\s*$", line)[1]  # type: ignore[index]
    count = tmp_path / "asked"
    fake_systemctl = tmp_path / "systemctl"
    fake_systemctl.write_text(f"#!/bin/sh\necho \"$@\" >> {count}\n"
                              f"[ {active_after} -gt 0 ] && [ $(wc -l < {count}) -ge {active_after} ]\n")
    fake_sleep = tmp_path / "sleep"
    fake_sleep.write_text("#!/bin/sh\n")
    for fake in (fake_systemctl, fake_sleep):
        fake.chmod(0o755)
    script = (script.replace("$$", "$").replace("%i", "bond0").replace("/usr/bin/systemctl", str(fake_systemctl))
              .replace("/usr/bin/sleep", str(fake_sleep)))
    return script, count


def test_master_waits_for_systemd_to_see_its_bond_not_a_fixed_sleep(laptop: Path, tmp_path: Path) -> None:
    # BindsTo=sys-subsystem-net-devices-bond0.device would stop master@bond0 at once if it became active
    # before systemd saw the device: seen in a VM whose udev was busy with its boot for 6 s.
    unit = (laptop / UNITS / "master@.service").read_text()
    assert "BindsTo= sys-subsystem-net-devices-%i.device" in unit
    assert "sleep 1\n\nExecStartPost" not in unit and "link set %I up\n" in unit
    script, asked = _master_wait_script(laptop, tmp_path, active_after=5)
    assert subprocess.run(["sh", "-c", script]).returncode == 0
    assert asked.read_text().splitlines() == ["-q is-active sys-subsystem-net-devices-bond0.device"] * 5
    asked.unlink()
    script, asked = _master_wait_script(laptop, tmp_path, active_after=0)
    assert subprocess.run(["sh", "-c", script]).returncode == 1
    assert len(asked.read_text().splitlines()) == 901  # bounded: 90 s in 0.1 s steps


# --- Determinism, state, atomicity ------------------------------------------------------------

def tree_bytes(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return out


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    profile = tmp_path / "laptop.toml"
    shutil.copy(EXAMPLES / "laptop.toml", profile)
    loaded = load_profiles([profile])
    render_overlay(loaded, tmp_path / "a")
    state_file = tmp_path / "laptop.state.toml"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state_before = state_file.read_bytes()
    render_overlay(load_profiles([profile]), tmp_path / "b")
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    assert state_file.read_bytes() == state_before


def test_state_is_random_per_host_not_derived_from_the_name(tmp_path: Path) -> None:
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        shutil.copy(EXAMPLES / "laptop.toml", tmp_path / d / "laptop.toml")
        render_overlay(load_profiles([tmp_path / d / "laptop.toml"]), tmp_path / d / "out")
    one = (tmp_path / "one/laptop.state.toml").read_text()
    two = (tmp_path / "two/laptop.state.toml").read_text()
    assert one != two


def test_failed_render_leaves_the_previous_tree(tmp_path: Path, laptop: Path) -> None:
    before = tree_bytes(laptop)
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "laptop.toml").read_text().replace('passphrase = "SuperSecret"',
                                                                   'psk_file = "missing.txt"'))
    with pytest.raises(UsageError, match=r"wireless.networks\[0\].psk_file: cannot read"):
        render_overlay(load_profiles([bad]), laptop, state=STATE)
    assert tree_bytes(laptop) == before
    assert [p.name for p in laptop.parent.iterdir() if p.name.startswith(".")] == []


def test_psk_file_with_passphrase_or_hex(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text().replace('passphrase = "SuperSecret"',
                                                                       'psk_file = "secret.txt"'))
    for content in ("SuperSecret\n", "404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b\n"):
        (tmp_path / "secret.txt").write_text(content)
        render_overlay(load_profiles([profile]), tmp_path / "out", state=STATE)
        conf = (tmp_path / "out/etc/wpa_supplicant/wpa_supplicant.conf").read_text()
        assert "psk=404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b" in conf


# --- PSK ----------------------------------------------------------------------------------------

PAIRS = [
    ("MyHome", "SuperSecret"),
    ("IEEE", "password"),
    ("My Home Network", "pass phrase with spaces"),
    ("Café ☕", "naive passphrase"),
    ("日本語のSSID", "x" * 63),
    ("a", "12345678"),
]


def test_psk_matches_ieee_80211i_vectors() -> None:
    # IEEE 802.11i-2004, H.4.2 test vectors.
    assert wpa_psk("IEEE", "password") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
    assert wpa_psk("ThisIsASSID", "ThisIsAPassword") == (
        "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"
    )


@pytest.mark.skipif(shutil.which("wpa_passphrase") is None, reason="wpa_passphrase (wpasupplicant) is not installed")
@pytest.mark.parametrize(("ssid", "passphrase"), PAIRS)
def test_psk_equals_wpa_passphrase(ssid: str, passphrase: str) -> None:
    out = subprocess.run(["wpa_passphrase", ssid, passphrase], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*psk=([0-9a-f]{64})$", out, re.M)
    assert m is not None and m[1] == wpa_psk(ssid, passphrase)


def test_non_ascii_ssid_is_written_in_hex(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text().replace('"MyHome"', '"Café ☕"'))
    render_overlay(load_profiles([profile]), tmp_path / "out", state=STATE)
    conf = (tmp_path / "out/etc/wpa_supplicant/wpa_supplicant.conf").read_text()
    assert f"ssid={'Café ☕'.encode().hex()}" in conf
    assert f"psk={wpa_psk('Café ☕', 'SuperSecret')}" in conf


# --- Distributions ------------------------------------------------------------------------------

def test_arch_paths_and_dhcpv6(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text().replace('distribution = "debian"\nrelease = "trixie"',
                                                                       'distribution = "arch"'))
    loaded = load_profiles([profile])
    assert resolve_target(loaded.profile.image) == Target(ARCH, "rolling")
    out = tmp_path / "out"
    render_overlay(loaded, out, state=STATE)
    units = "".join((out / UNITS / f).read_text() for f in os.listdir(out / UNITS) if f.endswith("@.service"))
    assert "/usr/sbin" not in units
    assert (out / UNITS / "dhclient6@.service").exists() and not (out / UNITS / "dhcp6c@.service").exists()
    assert (out / "etc/dhclient.conf").exists()
    assert f"send dhcp6.client-id {STATE.duid_hex()};" in (out / "etc/dhclient6.conf").read_text()
    assert "ctrl_interface_group=wheel" in (out / "etc/wpa_supplicant/wpa_supplicant.conf").read_text()
    assert os.readlink(out / UNITS / "sys-subsystem-net-devices-bond0.device.wants/dhclient6@bond0.service")


def test_every_binary_a_unit_calls_is_in_the_layout(laptop: Path) -> None:
    units = "".join((laptop / UNITS / f).read_text() for f in os.listdir(laptop / UNITS) if f.endswith(".service"))
    called = set(re.findall(r"(/usr/s?bin/[\w.-]+)", units))
    assert called <= set(DEBIAN.bin.values())


def test_default_distribution_is_the_hosts(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=debian\nVERSION_CODENAME=bookworm\n')
    image = load_profiles([EXAMPLES / "laptop.toml"]).profile.image
    image = image.model_copy(update={"distribution": None, "release": None})
    assert resolve_target(image, os_release) == Target(DEBIAN, "bookworm")
    os_release.write_text('ID=fedora\n')
    with pytest.raises(UsageError, match="image.distribution is not set"):
        resolve_target(image, os_release)


# --- Values escaped for their files (issue 11) --------------------------------------------------------

def test_an_sae_password_that_needs_escaping_is_written_in_hex(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text()
                       + '\n[[wireless.networks]]\nssid = "Home3"\nkey_mgmt = "SAE"\npassphrase = "pa\\"ss#word"\n')
    render_overlay(load_profiles([profile]), tmp_path / "out", state=STATE)
    conf = (tmp_path / "out/etc/wpa_supplicant/wpa_supplicant.conf").read_text()
    assert "sae_password=" + b'pa"ss#word'.hex() + "\n" in conf
    assert "pa\"ss" not in conf


def test_eap_files_are_named_by_network_and_key(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cert.pem").write_text(name)
    (tmp_path / "k.key").write_text("key")
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text() + '\n[[wireless.networks]]\nssid = "W"\n'
                       'key_mgmt = "WPA-EAP"\neap = { method = "TLS", identity = "me", ca_cert = "a/cert.pem", '
                       'client_cert = "b/cert.pem", private_key = "k.key" }\n')
    render_overlay(load_profiles([profile]), tmp_path / "out", state=STATE)
    certs = tmp_path / "out/etc/wpa_supplicant/certs"
    assert sorted(p.name for p in certs.iterdir()) == ["1-ca_cert.pem", "1-client_cert.pem", "1-private_key.key"]
    assert stat.S_IMODE((certs / "1-private_key.key").stat().st_mode) == 0o600
    conf = (tmp_path / "out/etc/wpa_supplicant/wpa_supplicant.conf").read_text()
    assert 'ca_cert="/etc/wpa_supplicant/certs/1-ca_cert.pem"' in conf


def test_routes_with_zone_ids_in_network_conf(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text().replace(
        'addresses = ["192.168.0.2/24"]',
        'addresses = ["192.168.0.2/24"]\nroutes = [{ to = "default", via = "fe80::1%bond0" }, '
        '{ to = "10.0.0.0/8", via = "192.168.0.1" }]'))
    render_overlay(load_profiles([profile]), tmp_path / "out", state=STATE)
    conf = (tmp_path / "out/etc/conf.d/network.conf").read_text()
    assert "bond0ROUTES='\"to ::/0 via fe80::1%bond0\" \"to 10.0.0.0/8 via 192.168.0.1\"'\n" in conf


def test_a_wired_supplicant_gets_the_wired_driver_alone(tmp_path: Path) -> None:
    # The article's -Dnl80211,wext,wired falls to the wireless extensions on an ethernet device, whose
    # init succeeds there: the wired port would scan for ever and never authenticate.
    render_overlay(load_profiles([EXAMPLES / "dock.toml"]), tmp_path / "dock", state=STATE)
    drop_in = (tmp_path / "dock/etc/systemd/system/supplicant@enp3s0.service.d/wired.conf").read_text()
    lines = drop_in.splitlines()
    assert lines[lines.index("ExecStart=") + 1] == (
        "ExecStart= /usr/sbin/wpa_supplicant -c/etc/wpa_supplicant/wpa_supplicant-wired.conf -Dwired -i %I")
    assert {"ExecStartPre=", "ExecStartPost=", "ExecStopPost="} <= set(lines)
    assert not list((tmp_path / "dock/etc/systemd/system").glob("supplicant@wlp2s0.service.d"))
    # The wired driver takes the first network of its file, whatever it is: the port reads the networks
    # without an ssid alone, and the radio never sees them.
    conf = tmp_path / "dock/etc/wpa_supplicant"
    wired, shared = (conf / "wpa_supplicant-wired.conf").read_text(), (conf / "wpa_supplicant.conf").read_text()
    assert wired.count("network={") == 1 and "key_mgmt=IEEE8021X" in wired and "ssid=" not in wired
    assert shared.count("network={") == 1 and 'ssid="MyHome"' in shared and "IEEE8021X" not in shared
    assert (conf / "wpa_supplicant-wired.conf").stat().st_mode & 0o777 == 0o600
    assert "ca_cert=\"/etc/wpa_supplicant/certs/1-ca_cert.pem\"" in wired
    render_overlay(load_profiles([EXAMPLES / "laptop.toml"]), tmp_path / "laptop", state=STATE)
    assert not list((tmp_path / "laptop/etc/systemd/system").glob("supplicant@*.service.d"))
