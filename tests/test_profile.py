from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegen.errors import ProfileError
from imagegen.profile import load_profiles
from imagegen.profile.model import check_ifname

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MINIMAL = """
[image]
hostname = "h"
distribution = "debian"

[interfaces.eth0]
type = "ethernet"

[interfaces.wlan0]
type = "wireless"

[bonds.bond0]
members = ["eth0", "wlan0"]
primary = "eth0"
mode = "active-backup"
fail_over_mac = "active"
addresses = ["192.168.0.2/24"]
"""


def problems(write_profile, text: str) -> list[str]:
    path = write_profile(text)
    with pytest.raises(ProfileError) as e:
        load_profiles([path])
    return e.value.problems


def one_problem(write_profile, text: str) -> str:
    found = problems(write_profile, text)
    assert len(found) == 1, found
    return found[0]


def test_laptop_example_is_the_seed() -> None:
    p = load_profiles([EXAMPLES / "laptop.toml"]).profile
    bond = p.bonds["bond0"]
    assert bond.members == ["enp3s0", "wlp2s0"]
    assert (bond.primary, bond.mode, bond.miimon, bond.fail_over_mac) == ("enp3s0", "active-backup", 100, "active")
    assert bond.addresses == ["192.168.0.2/24"]
    assert p.wireless.networks[0].ssid == "MyHome"
    assert p.supplicant_interfaces() == ["wlp2s0"]


def test_minimal_profile_loads(write_profile) -> None:
    assert load_profiles([write_profile(MINIMAL)]).profile.bonds["bond0"].primary == "eth0"


def test_layering_overrides_key_by_key_and_lists_replace(write_profile, tmp_path: Path) -> None:
    base = write_profile(MINIMAL, "base.toml")
    top = write_profile(
        '[image]\nhostname = "top"\n[bonds.bond0]\naddresses = ["10.0.0.2/8"]\nmiimon = 200\n', "top.toml"
    )
    loaded = load_profiles([base, top])
    bond = loaded.profile.bonds["bond0"]
    assert loaded.profile.image.hostname == "top"
    assert loaded.profile.image.distribution == "debian"
    assert bond.addresses == ["10.0.0.2/8"]
    assert bond.members == ["eth0", "wlan0"]
    assert bond.miimon == 200
    assert loaded.origin(("bonds", "bond0", "miimon")) == top
    assert loaded.origin(("bonds", "bond0", "members")) == base
    assert loaded.origin(("image", "hostname")) == top


def test_kiosk_layers_on_base() -> None:
    loaded = load_profiles([EXAMPLES / "base.toml", EXAMPLES / "kiosk.toml"])
    assert loaded.profile.image.hostname == "kiosk"
    assert loaded.profile.wireless.country == "DE"
    assert loaded.origin(("wireless", "country")) == EXAMPLES / "base.toml"
    assert not loaded.profile.bonds["bond0"].dhcp4


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a" * 16, "1 to 15 bytes"),
        ("", "1 to 15 bytes"),
        ("eth/0", "'/', ':' or white space"),
        ("eth:0", "'/', ':' or white space"),
        ("eth 0", "'/', ':' or white space"),
        ("..", "reserved"),
        ("eth0.100", "network.conf variable names"),
        ("0eth", "network.conf variable names"),
    ],
)
def test_interface_names_follow_kernel_rules(write_profile, name: str, fragment: str) -> None:
    text = MINIMAL.replace("[interfaces.eth0]", f'[interfaces."{name}"]').replace('"eth0"', f'"{name}"')
    found = problems(write_profile, text)
    assert any(fragment in p and "interfaces" in p for p in found), found


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=15))
def test_valid_names_pass_the_kernel_rules(name: str) -> None:
    kernel_ok = name not in (".", "..") and not any(c in "/:" or c.isspace() for c in name)
    shell_ok = name[0].isalpha() or name[0] == "_"
    shell_ok = shell_ok and all(c.isalnum() or c == "_" for c in name)
    try:
        check_ifname(name)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == (kernel_ok and shell_ok)


def test_message_names_file_key_and_fix(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace('primary = "eth0"', 'primary = "eth9"'))
    assert "host.toml: bonds.bond0.primary: primary 'eth9' is not a member of bond0" in msg
    assert "set it to one of: eth0, wlan0" in msg


def test_interface_in_two_masters(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + '[bridges.br0]\nmembers = ["eth0"]\n')
    assert "bridges.br0.members[0]" in msg and "already a member of bond0" in msg


def test_undeclared_member(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace('"eth0", "wlan0"]', '"eth0", "wlan0", "eth1"]'))
    assert "bonds.bond0.members[2]" in msg and "add [interfaces.eth1]" in msg


def test_unknown_key_suggests_the_right_one(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace("mode =", "mdoe ="))
    assert "bonds.bond0.mdoe: unknown key 'mdoe'; did you mean 'mode'?" in msg


def test_unknown_top_level_table(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + "[wirless]\ncountry = 'US'\n")
    assert "wirless: unknown key 'wirless'; did you mean 'wireless'?" in msg


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("192.168.0.2", "no prefix length"),
        ("192.168.0.300/24", "not a valid IPv4 or IPv6 address"),
        ("192.168.0.2/33", "not a valid IPv4 or IPv6 address"),
        ("fd00::1/129", "not a valid IPv4 or IPv6 address"),
    ],
)
def test_bad_addresses(write_profile, address: str, fragment: str) -> None:
    msg = one_problem(write_profile, MINIMAL.replace("192.168.0.2/24", address))
    assert "bonds.bond0.addresses[0]" in msg and fragment in msg


def test_route_destination_with_host_bits(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + 'routes = [{ to = "10.1.2.3/8", via = "192.168.0.1" }]\n')
    assert "bonds.bond0.routes[0].to" in msg and "host bits zero" in msg


def test_unreachable_gateway(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + 'routes = [{ to = "default", via = "10.9.9.1" }]\n')
    assert "bonds.bond0.routes[0].via" in msg and "gateway 10.9.9.1 is not in any network" in msg


def test_reachable_gateways_pass(write_profile) -> None:
    text = MINIMAL.replace('"192.168.0.2/24"', '"192.168.0.2/24", "fd00::2/64"') + (
        'routes = [{ to = "default", via = "192.168.0.1" }, { to = "default", via = "fd00::1" },'
        ' { to = "2001:db8::/32", via = "fe80::1" }]\n'
    )
    bond = load_profiles([write_profile(text)]).profile.bonds["bond0"]
    assert [r.ip_route_args() for r in bond.routes] == [
        "to default via 192.168.0.1", "to ::/0 via fd00::1", "to 2001:db8::/32 via fe80::1",
    ]


@pytest.mark.parametrize(
    ("ssid", "ok"), [("x" * 32, True), ("x" * 33, False), ("é" * 16, True), ("é" * 17, False), ("", False)]
)
def test_ssid_length_in_bytes(write_profile, ssid: str, ok: bool) -> None:
    text = MINIMAL + f'[[wireless.networks]]\nssid = "{ssid}"\npassphrase = "12345678"\n'
    if ok:
        load_profiles([write_profile(text)])
    else:
        assert "wireless.networks[0].ssid" in one_problem(write_profile, text)


@pytest.mark.parametrize("passphrase", ["1234567", "x" * 64, "tab\there", "naïve-passphrase"])
def test_bad_passphrases(write_profile, passphrase: str) -> None:
    text = MINIMAL + f'[[wireless.networks]]\nssid = "n"\npassphrase = "{passphrase}"\n'
    msg = one_problem(write_profile, text)
    assert "wireless.networks[0].passphrase" in msg and "8 to 63 printable ASCII" in msg


@pytest.mark.parametrize("psk", ["ab" * 31, "ab" * 33, "zz" * 32])
def test_bad_psk(write_profile, psk: str) -> None:
    msg = one_problem(write_profile, MINIMAL + f'[[wireless.networks]]\nssid = "n"\npsk = "{psk}"\n')
    assert "wireless.networks[0].psk" in msg and "exactly 64 hex digits" in msg


def test_psk_needs_exactly_one_secret(write_profile) -> None:
    text = MINIMAL + '[[wireless.networks]]\nssid = "n"\npassphrase = "12345678"\npsk = "' + "a" * 64 + '"\n'
    assert "exactly one of passphrase, psk or psk_file" in one_problem(write_profile, text)


def test_sae_rejects_a_psk(write_profile) -> None:
    text = MINIMAL + '[[wireless.networks]]\nssid = "n"\nkey_mgmt = "SAE"\npsk = "' + "a" * 64 + '"\n'
    assert "SAE (WPA3) authenticates with the password itself" in one_problem(write_profile, text)


def test_eap_needs_credentials(write_profile) -> None:
    text = MINIMAL + '[[wireless.networks]]\nssid = "corp"\nkey_mgmt = "WPA-EAP"\n'
    assert "needs an [eap] table" in one_problem(write_profile, text)
    text += '[wireless.networks.eap]\nmethod = "PEAP"\nidentity = "me"\n'
    assert "exactly one of password or password_file" in one_problem(write_profile, text)


@pytest.mark.parametrize(
    ("key", "value", "suggest"),
    [("updelay", 150, "use 100 or 200"), ("downdelay", 250, "use 200 or 300"),
     ("peer_notif_delay", 250, "use 200 or 300")],
)
def test_delays_must_be_multiples_of_miimon(write_profile, key: str, value: int, suggest: str) -> None:
    msg = one_problem(write_profile, MINIMAL + f"{key} = {value}\n")
    assert f"bonds.bond0.{key}" in msg and "round it down silently" in msg and suggest in msg


def test_peer_notif_delay_needs_miimon(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + "miimon = 0\npeer_notif_delay = 200\n")
    assert "bonds.bond0.peer_notif_delay" in msg and "kernel refuses it with miimon = 0" in msg


def test_peer_notifications_render_as_ip_link_words(write_profile) -> None:
    # Three by default, one miimon apart; iproute2 calls the delay peer_notify_delay.
    bond = load_profiles([write_profile(MINIMAL)]).profile.bonds["bond0"]
    assert "peer_notify_delay 100 num_grat_arp 3" in bond.ip_link_options()
    bond = load_profiles([write_profile(MINIMAL + "num_grat_arp = 1\npeer_notif_delay = 500\n")]).profile.bonds["bond0"]
    assert "peer_notify_delay 500 num_grat_arp 1" in bond.ip_link_options()
    # Without link monitoring the kernel refuses any delay, so none is written.
    bond = load_profiles([write_profile(MINIMAL + "miimon = 0\n")]).profile.bonds["bond0"]
    assert "peer_notify_delay" not in bond.ip_link_options() and "num_grat_arp 3" in bond.ip_link_options()


def test_delays_need_miimon(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL + "miimon = 0\nupdelay = 200\n")
    assert "bonds.bond0.miimon" in msg and "need link monitoring" in msg


def test_unknown_bond_mode(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace('mode = "active-backup"', 'mode = "active-passive"'))
    assert "bonds.bond0.mode: 'active-passive' is not allowed; use 'balance-rr', 'active-backup'" in msg


def test_mode_options_that_make_no_sense(write_profile) -> None:
    found = problems(write_profile, MINIMAL.replace('mode = "active-backup"', 'mode = "802.3ad"'))
    assert any("primary slave has no effect in mode '802.3ad'" in p for p in found)
    assert any("fail_over_mac is only used in mode 'active-backup'" in p for p in found)


def test_enslaved_interface_carries_no_ip(write_profile) -> None:
    text = MINIMAL.replace('type = "ethernet"', 'type = "ethernet"\naddresses = ["10.0.0.1/24"]')
    assert "interfaces.eth0.addresses: eth0 is enslaved to bond0" in one_problem(write_profile, text)


def test_wrong_type(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace('fail_over_mac = "active"', "fail_over_mac = 1"))
    assert "bonds.bond0.fail_over_mac" in msg


def test_missing_hostname(write_profile) -> None:
    msg = one_problem(write_profile, MINIMAL.replace('hostname = "h"', ""))
    assert "image.hostname: required key 'hostname' is missing" in msg


def test_toml_syntax_error(write_profile) -> None:
    msg = one_problem(write_profile, "[image\n")
    assert "not valid TOML" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as e:
        load_profiles([tmp_path / "nope.toml"])
    assert "no such profile file" in str(e.value)


def test_error_names_the_layer_that_set_the_value(write_profile) -> None:
    base = write_profile(MINIMAL, "base.toml")
    top = write_profile("[bonds.bond0]\nmiimon = 100\nupdelay = 150\n", "top.toml")
    with pytest.raises(ProfileError) as e:
        load_profiles([base, top])
    assert e.value.problems[0].startswith(f"{top}: bonds.bond0.updelay")


# --- What the target files cannot carry (issue 11) ------------------------------------------------

WIRELESS_NET = ('\n[[wireless.networks]]\nssid = {ssid}\nkey_mgmt = "WPA-EAP"\n'
                'eap = {{ method = "PEAP", identity = {identity}, password = "pw" }}\n')


@pytest.mark.parametrize(("ssid", "identity", "key"), [
    ('"a\\nb"', '"alice"', "wireless.networks[0].ssid"),
    ('"x"', '"ali\\u0000ce"', "wireless.networks[0].eap.identity"),
    ('"x"', '"alice\\u2028"', "wireless.networks[0].eap.identity"),
    ('"x"', '"\\u001b[31m"', "wireless.networks[0].eap.identity"),
])
def test_control_characters_in_text_are_refused(write_profile, ssid: str, identity: str, key: str) -> None:
    found = one_problem(write_profile, MINIMAL + WIRELESS_NET.format(ssid=ssid, identity=identity))
    assert f": {key}: " in found and "control character" in found


def test_zone_ids_that_are_interface_names_pass(write_profile) -> None:
    text = MINIMAL.replace('addresses = ["192.168.0.2/24"]',
                           'addresses = ["192.168.0.2/24", "fe80::2%bond0/64"]\n'
                           'routes = [{ to = "default", via = "fe80::1%bond0" }, { to = "fe80::%eth0/64" }]')
    bond = load_profiles([write_profile(text)]).profile.bonds["bond0"]
    assert [r.ip_route_words() for r in bond.routes] == [["to", "::/0", "via", "fe80::1%bond0"],
                                                          ["to", "fe80::%eth0/64"]]


@pytest.mark.parametrize(("table", "line", "fragment"), [
    ("[dhcp4]", 'host_name = "bad name"', "dhcp4.host_name: host_name 'bad name' is not a DNS name"),
    ("[dhcp4]", 'host_name = "-x.example"', "is not a DNS name"),
    ("[dhcp6]", 'script = "relative/script"', "dhcp6.script: script 'relative/script' is not an absolute path"),
    ("[dhcp6]", 'script = "/etc/../x"', "is not an absolute path"),
    ("[wireless]", 'ctrl_interface_group = "Net Dev"', "ctrl_interface_group 'Net Dev' is not a group name"),
])
def test_values_a_target_cannot_carry(write_profile, table: str, line: str, fragment: str) -> None:
    assert fragment in one_problem(write_profile, f"{MINIMAL}\n{table}\n{line}\n")


@pytest.mark.parametrize(("table", "line"), [
    ("[dhcp4]", 'host_name = ""'), ("[dhcp4]", 'host_name = "kiosk-1.lab.example"'),
    ("[dhcp6]", 'script = "/etc/wide-dhcpv6/dhcp6c-script"'), ("[wireless]", 'ctrl_interface_group = "netdev"'),
    ("[image]", 'release = "bookworm-backports"'), ("[image]", 'mirror = "https://h.example/debian/"'),
])
def test_values_a_target_can_carry_pass(write_profile, table: str, line: str) -> None:
    text = MINIMAL.replace("[image]\n", f"[image]\n{line}\n") if table == "[image]" else f"{MINIMAL}\n{table}\n{line}\n"
    load_profiles([write_profile(text)])


def test_release_left_out_is_the_default_and_empty_is_an_error(write_profile) -> None:
    assert load_profiles([write_profile(MINIMAL)]).profile.image.release is None
    found = one_problem(write_profile, MINIMAL.replace("[image]\n", '[image]\nrelease = ""\n'))
    assert "image.release: release '' is not a suite or code name" in found
    assert "remove the key for the default" in found


def test_a_template_name_is_fine_as_a_member_reference_only_where_declared(write_profile) -> None:
    # The name is refused where the device is declared: one finding, not one per reference.
    found = problems(write_profile, MINIMAL.replace("eth0", "static"))
    assert len(found) == 1 and ": interfaces.static: " in found[0]


WIRED_8021X = """
[[wireless.networks]]
key_mgmt = "IEEE8021X"

[wireless.networks.eap]
method = "PEAP"
identity = "alice@example.org"
password = "correct horse"
phase2 = "auth=MSCHAPV2"
"""


def test_a_wired_supplicant_needs_a_network_without_an_ssid_to_authenticate_its_port(write_profile) -> None:
    wired = MINIMAL.replace('[interfaces.eth0]\ntype = "ethernet"\n',
                            '[interfaces.eth0]\ntype = "ethernet"\nsupplicant = true\n')
    with_wifi = wired + '\n[[wireless.networks]]\nssid = "MyHome"\nkey_mgmt = "WPA-PSK"\npassphrase = "SuperSecret"\n'
    found = one_problem(write_profile, with_wifi)
    assert "interfaces.eth0.supplicant" in found and "no ssid" in found and 'key_mgmt = "IEEE8021X"' in found
    profile = load_profiles([write_profile(with_wifi + WIRED_8021X)]).profile
    assert profile.supplicant_interfaces() == ["eth0", "wlan0"]
