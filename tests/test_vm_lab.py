from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.profile import load_profiles
from imagegen.scenarios.session import expected_units
from imagegen.vm.lab import (
    AP_RADIO_MAC,
    STATION_RADIO_MAC,
    UPLINK_NIC,
    WIRED_NIC,
    lab_profile,
    plan_lab,
    render_lab_overlay,
)

REPO = Path(__file__).resolve().parents[1]
LAPTOP = REPO / "examples" / "laptop.toml"

RENAMED = """
[image]
hostname = "desk"
distribution = "debian"

[interfaces.eth_main]
type = "ethernet"

[interfaces.wl_main]
type = "wireless"

[bonds.uplink]
members = ["eth_main", "wl_main"]
primary = "eth_main"
fail_over_mac = "active"
addresses = ["10.20.30.40/24"]
dhcp4 = true

[[wireless.networks]]
ssid = "Lab Net é"
key_mgmt = "WPA-PSK"
psk = "404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b"
"""


def files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()}


def test_laptop_lab_uses_the_profile_names_and_network(tmp_path: Path) -> None:
    profile = load_profiles([LAPTOP]).profile
    render_lab_overlay(profile, tmp_path)
    f = files(tmp_path)
    wired = f["etc/systemd/network/10-imagegen-lab-wired.link"]
    assert f"PermanentMACAddress={WIRED_NIC.mac}" in wired and "Name=enp3s0" in wired
    station = f["etc/systemd/network/10-imagegen-lab-station.link"]
    assert f"PermanentMACAddress={STATION_RADIO_MAC}" in station and "Name=wlp2s0" in station
    assert f"PermanentMACAddress={AP_RADIO_MAC}" in f["etc/systemd/network/10-imagegen-lab-ap.link"]
    assert f"PermanentMACAddress={UPLINK_NIC.mac}" in f["etc/systemd/network/10-imagegen-lab-uplink.link"]
    hostapd = f["etc/imagegen-lab/hostapd.conf"].splitlines()
    assert f"ssid2={b'MyHome'.hex()}" in hostapd
    assert {"wpa=2", "wpa_key_mgmt=WPA-PSK", "rsn_pairwise=CCMP", "wpa_passphrase=SuperSecret",
            "country_code=US"} <= set(hostapd)
    assert os.stat(tmp_path / "etc/imagegen-lab/hostapd.conf").st_mode & 0o077 == 0
    dnsmasq = f["etc/imagegen-lab/dnsmasq.conf"].splitlines()
    # The AP serves the bond's own subnet, next to its static fail-safe address.
    assert "dhcp-range=192.168.0.128,192.168.0.227,255.255.255.0,1h" in dnsmasq
    assert "enable-ra" in dnsmasq
    assert "AP_ADDR4=192.168.0.1/24" in f["etc/imagegen-lab/lab.env"]


def test_lab_follows_another_profile(write_profile, tmp_path: Path) -> None:
    profile = load_profiles([write_profile(RENAMED)]).profile
    plan = plan_lab(profile)
    assert (plan.bond, plan.wired, plan.wireless, plan.probe_target()) == ("uplink", "eth_main", "wl_main",
                                                                           "10.20.30.40")
    out = tmp_path / "out"
    render_lab_overlay(profile, out)
    f = files(out)
    assert "Name=eth_main" in f["etc/systemd/network/10-imagegen-lab-wired.link"]
    assert "Name=wl_main" in f["etc/systemd/network/10-imagegen-lab-station.link"]
    hostapd = f["etc/imagegen-lab/hostapd.conf"].splitlines()
    assert f"ssid2={'Lab Net é'.encode().hex()}" in hostapd
    assert "wpa_psk=404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b" in hostapd
    assert not any(line.startswith("country_code") for line in hostapd)
    assert "AP_ADDR4=10.20.30.1/24" in f["etc/imagegen-lab/lab.env"]
    units = expected_units(plan, "dhcp6c")
    assert units.running == ("supplicant@wl_main.service", "dhclient@uplink.service")
    assert units.exited == ("master@uplink.service", "eth_main@uplink.service", "wl_main@uplink.service",
                            "static@uplink.service")


def test_lab_needs_a_wired_and_wireless_bond(write_profile, tmp_path: Path) -> None:
    text = RENAMED.replace('members = ["eth_main", "wl_main"]', 'members = ["eth_main"]').replace(
        'primary = "eth_main"\n', "")
    profile = load_profiles([write_profile(text)]).profile
    with pytest.raises(UsageError, match="one ethernet and one wireless member"):
        render_lab_overlay(profile, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_seed_units_of_the_laptop() -> None:
    plan = plan_lab(load_profiles([LAPTOP]).profile)
    units = expected_units(plan, "dhcp6c")
    # The seed's `systemctl list-units` listing: running daemons and exited oneshots.
    assert set(units.running) == {"supplicant@wlp2s0.service", "dhclient@bond0.service", "dhcp6c@bond0.service"}
    assert set(units.exited) == {"master@bond0.service", "enp3s0@bond0.service", "wlp2s0@bond0.service",
                                 "static@bond0.service"}


def hostapd_settings(text: str) -> list[tuple[str, str]]:
    """hostapd's reading of its file: a line starting with '#' is skipped, any other is NAME=VALUE with
    the value to the end of the line."""
    return [tuple(line.split("=", 1)) for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("passphrase", ["letmein1|id=guest", "pass|mac=02:00:00:00:00:01", "a|pk=b|vlanid=7 #x"])
def test_the_lab_ap_takes_an_sae_password_with_hostapd_options_in_it_literally(
    write_profile, tmp_path: Path, passphrase: str
) -> None:
    text = RENAMED.replace('key_mgmt = "WPA-PSK"', 'key_mgmt = "SAE"').replace(
        'psk = "404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b"', f"passphrase = {passphrase!r}")
    render_lab_overlay(load_profiles([write_profile(text)]).profile, tmp_path)
    settings = hostapd_settings((tmp_path / "etc/imagegen-lab/hostapd.conf").read_text())
    # sae_password= would split the password at "|id=", "|mac=", ... ; hostapd uses wpa_passphrase for SAE.
    assert not [name for name, _ in settings if name == "sae_password"]
    assert ("wpa_passphrase", passphrase) in settings
    assert ("wpa_key_mgmt", "SAE") in settings and ("ieee80211w", "2") in settings


def test_a_lab_template_cannot_print_a_value_that_ends_its_line(write_profile, tmp_path: Path) -> None:
    # The profile's checks refuse such an SSID; a value that slipped past them must not reach hostapd.conf.
    profile = load_profiles([write_profile(RENAMED)]).profile
    net = profile.wireless.networks[0].model_copy(update={"ssid": "Home\nwpa=0"})
    bad = profile.model_copy(update={"wireless": profile.wireless.model_copy(update={"networks": [net]})})
    with pytest.raises(ValueError, match="line break"):
        render_lab_overlay(bad, tmp_path)
    assert not (tmp_path / "etc/imagegen-lab/hostapd.conf").exists()


def test_the_kiosk_lab_plays_its_sae_network_from_the_psk_file(tmp_path: Path) -> None:
    loaded = load_profiles([REPO / "examples/base.toml", REPO / "examples/kiosk.toml"])
    # The profile alone names only the file: the lab needs the password itself, as the supplicant does.
    with pytest.raises(UsageError, match="psk_file"):
        plan_lab(loaded.profile)
    plan = plan_lab(lab_profile(loaded))
    password = (REPO / "examples/secrets/kiosk-wifi.txt").read_text().strip()
    assert (plan.ap.key_mgmt, plan.ap.passphrase, plan.ap.psk) == ("SAE", password, None)
    assert (plan.dhcp4, plan.dhcp6, str(plan.static4[0]), str(plan.ap_addr4)) == (False, False, "10.20.0.15/24",
                                                                                   "10.20.0.1/24")
    render_lab_overlay(lab_profile(loaded), tmp_path)
    settings = hostapd_settings((tmp_path / "etc/imagegen-lab/hostapd.conf").read_text())
    assert ("wpa_passphrase", password) in settings and ("wpa_key_mgmt", "SAE") in settings


def test_a_wpa_psk_file_gives_the_lab_its_psk_or_passphrase(write_profile, tmp_path: Path) -> None:
    for secret, kind in (("404FE69D94EF522BA8E7A0C456A67A583C8F39BA0B29A3AC22EBE9494CF9992B", "psk"),
                         ("correct horse battery", "passphrase")):
        (tmp_path / "wifi.txt").write_text(secret + "\n")
        text = RENAMED.replace('psk = "404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b"',
                               f'psk_file = "{tmp_path / "wifi.txt"}"')
        plan = plan_lab(lab_profile(load_profiles([write_profile(text)])))
        assert getattr(plan.ap, kind) == (secret.lower() if kind == "psk" else secret)


BRIDGE = REPO / "examples" / "bridge.toml"


def test_the_bridge_example_is_a_lab_of_its_own_shape_without_a_radio(tmp_path: Path) -> None:
    plan = plan_lab(load_profiles([BRIDGE]).profile)
    assert (plan.kind, plan.bond, plan.wired, plan.wireless, plan.ap) == ("bridge", "br0", "enp3s0", None, None)
    assert (plan.section, plan.probe_target(), str(plan.ap_addr4)) == ("bridges", "192.168.0.3", "192.168.0.1/24")
    with pytest.raises(UsageError, match="no wireless member"):
        plan.radio  # noqa: B018 - the property is what raises
    units = expected_units(plan, "dhcp6c")
    assert units.running == ("dhclient@br0.service", "dhcp6c@br0.service")
    assert units.exited == ("master@br0.service", "enp3s0@br0.service", "static@br0.service")
    render_lab_overlay(load_profiles([BRIDGE]).profile, tmp_path)
    f = files(tmp_path)
    # No station to name and no network to serve: the AP's namespace only routes and hands out leases.
    assert "etc/imagegen-lab/hostapd.conf" not in f and "etc/systemd/network/10-imagegen-lab-station.link" not in f
    assert "Name=enp3s0" in f["etc/systemd/network/10-imagegen-lab-wired.link"]
    assert "dhcp-range=192.168.0.128,192.168.0.227,255.255.255.0,1h" in f["etc/imagegen-lab/dnsmasq.conf"]
    hostapd = (REPO / "overlays/lab/etc/systemd/system/imagegen-lab-hostapd.service").read_text()
    assert "ConditionPathExists=/etc/imagegen-lab/hostapd.conf" in hostapd.splitlines()


def test_a_bond_is_played_before_a_bridge_and_a_bridge_needs_one_wired_member(write_profile) -> None:
    both = RENAMED + '\n[interfaces.eth_two]\ntype = "ethernet"\n\n[bridges.br9]\nmembers = ["eth_two"]\n'
    assert plan_lab(load_profiles([write_profile(both)]).profile).kind == "bond"
    two = BRIDGE.read_text().replace('members = ["enp3s0"]', 'members = ["enp3s0", "enp4s0"]') + (
        '\n[interfaces.enp4s0]\ntype = "ethernet"\n')
    with pytest.raises(UsageError, match="a bridge over exactly one ethernet NIC"):
        plan_lab(load_profiles([write_profile(two)]).profile)


DOCK = REPO / "examples" / "dock.toml"


def test_a_second_bond_of_two_wired_nics_gets_two_lab_nics_and_an_ap_address_of_its_own(tmp_path: Path) -> None:
    profile = lab_profile(load_profiles([DOCK]))
    plan = plan_lab(profile)
    assert plan.second is not None and plan_lab(load_profiles([LAPTOP]).profile).second is None
    s = plan.second
    assert (s.name, s.members, s.primary, s.miimon, s.fail_over_mac, s.primary_reselect) == (
        "bond1", ("enp4s0", "enp5s0"), "enp4s0", 200, "none", "failure")
    assert (str(s.static4), str(s.ap_addr4)) == ("10.20.0.2/24", "10.20.0.1/24")
    assert [n.id for n in plan.nics] == ["nic-wired", "nic-uplink", "nic-second-a", "nic-second-b"]
    assert len({n.mac for n in plan.nics}) == len({n.chassis for n in plan.nics}) == 4
    # The article's bond is still the one the lab plays, with its units; the second's are its scenario's.
    assert plan.bond == "bond0" and "master@bond1.service" not in expected_units(plan, "dhcp6c").all
    render_lab_overlay(profile, tmp_path)
    f = files(tmp_path)
    for nic, name in zip(plan.nics[2:], s.members, strict=True):
        link = f[f"etc/systemd/network/10-imagegen-lab-second-{'a' if name == 'enp4s0' else 'b'}.link"]
        assert f"PermanentMACAddress={nic.mac}" in link and f"Name={name}" in link
    assert "AP_EXTRA_ADDR4=10.20.0.1/24" in f["etc/imagegen-lab/lab.env"].splitlines()
    laptop = tmp_path / "laptop"
    render_lab_overlay(load_profiles([LAPTOP]).profile, laptop)
    assert "AP_EXTRA_ADDR4=" in files(laptop)["etc/imagegen-lab/lab.env"].splitlines()
    assert not list(laptop.rglob("*second*"))
    ap_up = (REPO / "overlays/lab/usr/lib/imagegen-lab/ap-up").read_text()
    assert '[ -z "${AP_EXTRA_ADDR4:-}" ] || ip -n "$NETNS" address add "$AP_EXTRA_ADDR4" dev "$BRIDGE"' in ap_up


@pytest.mark.parametrize(("change", "says"), [
    (('addresses = ["10.20.0.2/24"]', 'addresses = ["192.168.0.9/24"]'), "in another subnet than 192.168.0.0/24"),
    (('addresses = ["10.20.0.2/24"]', "addresses = []"), "needs a static IPv4 address of its own"),
    (("dhcp4 = false\ndhcp6 = false\n", "dhcp4 = true\ndhcp6 = false\n"), "cannot use DHCP"),
])
def test_a_second_bond_the_lab_cannot_play_is_refused_with_the_fix(write_profile, tmp_path: Path,
                                                                    change: tuple[str, str], says: str) -> None:
    _dock_files(tmp_path)
    text = DOCK.read_text()
    assert text.count(change[0]) == 1
    with pytest.raises(UsageError, match=says):
        plan_lab(lab_profile(load_profiles([write_profile(text.replace(*change))])))


# --- Wired 802.1X: the lab's switch port -----------------------------------------------------------

def _dock_files(where: Path) -> None:
    """The files the dock example names (its 802.1X password and CA), next to a copy of it in where."""
    for sub in ("secrets", "certs"):
        shutil.copytree(REPO / "examples" / sub, where / sub, dirs_exist_ok=True)


def test_the_dock_s_wired_member_is_an_8021x_port_the_lab_authenticates_with_its_credentials(tmp_path: Path) -> None:
    loaded = load_profiles([DOCK])
    with pytest.raises(UsageError, match="password_file, which this lab plan has not read"):
        plan_lab(loaded.profile)
    plan = plan_lab(lab_profile(loaded))
    auth = plan.wired_auth
    assert auth is not None and plan_lab(load_profiles([LAPTOP]).profile).wired_auth is None
    password = (REPO / "examples" / "secrets" / "dock-8021x.txt").read_text().strip()
    assert (auth.port, auth.method, auth.identity, auth.password, auth.inner, auth.ca_cert) == (
        "enp3s0", "PEAP", "alice@example.org", password, "MSCHAPV2", "/etc/wpa_supplicant/certs/1-ca_cert.pem")
    assert auth.conf == "/etc/wpa_supplicant/wpa_supplicant-wired.conf"
    assert "supplicant@enp3s0.service" in expected_units(plan, "dhcp6c").running
    render_lab_overlay(lab_profile(loaded), tmp_path)
    f = files(tmp_path)
    users = f["etc/imagegen-lab/hostapd-wired.eap_user"].splitlines()
    # Any outer identity (the profile sends anonymous@example.org), the real one and its password inside.
    assert "*\tPEAP" in users and f'"alice@example.org"\tMSCHAPV2\t"{password}"\t[2]' in users
    conf = f["etc/imagegen-lab/hostapd-wired.conf"].splitlines()
    assert {"interface=labuplink", "driver=wired", "ieee8021x=1", "eap_server=1"} <= set(conf)
    assert "EAP_CA_CERT=/etc/wpa_supplicant/certs/1-ca_cert.pem" in f["etc/imagegen-lab/lab.env"].splitlines()
    for name in ("hostapd-wired.eap_user", "hostapd-wired.conf"):
        assert (tmp_path / "etc" / "imagegen-lab" / name).stat().st_mode & 0o777 == 0o600
    # A lab without the port has neither file, and no CA to mount.
    laptop = tmp_path / "laptop"
    render_lab_overlay(load_profiles([LAPTOP]).profile, laptop)
    assert not list(laptop.rglob("hostapd-wired*"))
    assert "EAP_CA_CERT=" in files(laptop)["etc/imagegen-lab/lab.env"].splitlines()


def test_the_switch_port_unit_makes_its_ca_and_mounts_it_over_the_image_s_copy_only() -> None:
    unit = (REPO / "overlays/lab/etc/systemd/system/imagegen-lab-authenticator.service").read_text()
    assert "ConditionPathExists=/etc/imagegen-lab/hostapd-wired.conf" in unit
    assert "ExecStart=/usr/bin/ip netns exec ap /usr/sbin/hostapd /etc/imagegen-lab/hostapd-wired.conf" in unit
    assert "imagegen-lab-authenticator.service" in (
        REPO / "overlays/lab/etc/systemd/system/imagegen-lab-ap.service").read_text()
    script = (REPO / "overlays/lab/usr/lib/imagegen-lab/authenticator-ca").read_text()
    assert 'mount --bind "$dir/ca.pem" "$EAP_CA_CERT"' in script and 'rm -f "$dir/ca.key"' in script
    for conf in ("50-lab-debian.conf", "50-lab-arch.conf"):
        assert "        openssl\n" in (REPO / "mkosi.conf.d" / conf).read_text()


@pytest.mark.parametrize(("change", "says"), [
    (('method = "PEAP"', 'method = "PWD"'), "plays PEAP and TTLS with a password"),
    (('phase2 = "auth=MSCHAPV2"', 'phase2 = "auth=PAP"'), "PEAP with phase2 auth=PAP"),
    (('identity = "alice@example.org"', 'identity = "al\\"ice"'), "cannot hold an identity or password with a double"),
])
def test_credentials_the_switch_port_cannot_hold_are_refused_with_the_fix(
        write_profile, tmp_path: Path, change: tuple[str, str], says: str) -> None:
    _dock_files(tmp_path)
    text = DOCK.read_text()
    assert text.count(change[0]) == 1
    with pytest.raises(UsageError, match=says):
        plan_lab(lab_profile(load_profiles([write_profile(text.replace(*change))])))


def test_ttls_with_pap_inside_is_what_the_switch_port_names_ttls_pap(write_profile, tmp_path: Path) -> None:
    _dock_files(tmp_path)
    text = DOCK.read_text().replace('method = "PEAP"', 'method = "TTLS"').replace("auth=MSCHAPV2", "auth=PAP")
    auth = plan_lab(lab_profile(load_profiles([write_profile(text)]))).wired_auth
    assert auth is not None and (auth.method, auth.inner) == ("TTLS", "TTLS-PAP")
