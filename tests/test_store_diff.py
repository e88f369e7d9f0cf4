"""diff_trees, diff_packages and diff_verdicts: what changed between two systems, secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.store import Derivation, FileTree, Store, diff_packages, diff_trees, diff_verdicts
from imagegen.store.pkgdiff import compare_versions

REPO = Path(__file__).resolve().parents[1]

NETWORK_CONF = """\
# bond0: KIND is "bond" or "bridge"
bond0KIND='bond'
bond0OPTIONS='mode active-backup miimon 100 fail_over_mac active'
bond0PRIMARY='enp3s0'

bond0ADDRS='{address}'
enp3s0ADDRS=
wlp2s0ADDRS=
bond0ROUTES=
"""

WPA = """\
ctrl_interface=/run/wpa_supplicant
country=US
network={{
    ssid="{ssid}"
    psk={psk}
    key_mgmt=WPA-PSK
}}
"""

OLD_PSK = "e5b9c4ae1f4a0b3e4b2f8a6d1c9e7f3a2b5d8c1e4f7a0b3c6d9e2f5a8b1c4d7e"
NEW_PSK = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
KEY_OLD, KEY_NEW = "b2xkLWNvbnRyb2wta2V5LXZhbHVl", "bmV3LWNvbnRyb2wta2V5LXZhbHVl"


def overlay(root: Path, address: str = "192.168.0.2/24", psk: str = OLD_PSK, ssid: str = "MyHome") -> Path:
    (root / "etc/conf.d").mkdir(parents=True)
    (root / "etc/conf.d/network.conf").write_text(NETWORK_CONF.format(address=address))
    wpa = root / "etc/wpa_supplicant/wpa_supplicant.conf"
    wpa.parent.mkdir(parents=True)
    wpa.write_text(WPA.format(ssid=ssid, psk=psk))
    wpa.chmod(0o600)
    key = root / "etc/wide-dhcpv6/dhcp6cctlkey"
    key.parent.mkdir(parents=True)
    key.write_text(KEY_OLD + "\n")
    key.chmod(0o600)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "slave@.service").write_text("[Service]\nExecStart=/bin/true %i\n")
    os.link(units / "slave@.service", units / "enp3s0@.service")
    (units / "wants").mkdir()
    (units / "wants/enp3s0@bond0.service").symlink_to("/etc/systemd/system/enp3s0@.service")
    return root


def changed_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))]


def test_changed_address_is_a_one_line_change_in_network_conf(tmp_path: Path) -> None:
    a = overlay(tmp_path / "a")
    b = overlay(tmp_path / "b", address="192.168.0.3/24")
    diff = diff_trees(a, b)
    assert diff.paths == ("etc/conf.d/network.conf",)
    assert changed_lines(str(diff)) == ["-bond0ADDRS='192.168.0.2/24'", "+bond0ADDRS='192.168.0.3/24'"]
    assert "--- a/etc/conf.d/network.conf" in str(diff) and "+++ b/etc/conf.d/network.conf" in str(diff)
    assert not diff_trees(a, overlay(tmp_path / "c"))


def test_diff_of_two_store_entries(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entries = []
    for address in ("192.168.0.2/24", "10.0.0.2/8"):
        source = overlay(tmp_path / address.replace("/", "_"), address=address)

        def build(out: Path, source: Path = source) -> None:
            subprocess.run(["cp", "-a", str(source), str(out / "tree")], check=True)

        entries.append(store.realise(Derivation("laptop-overlay", "render", {"t": FileTree(source)}), build))
    # The store's read-only modes (0444, 0400) compare equal to the originals (0644, 0600).
    diff = diff_trees(entries[0].path, entries[1].path)
    assert diff.paths == ("tree/etc/conf.d/network.conf",)
    assert len(changed_lines(str(diff))) == 2


def test_rendered_profiles_differ_by_one_line(tmp_path: Path) -> None:
    from imagegen.profile import load_profiles
    from imagegen.profile.state import HostState
    from imagegen.render import render_overlay

    # One state for both sides: a fresh clone has no examples/laptop.state.toml.
    state = HostState.generate()
    text = (REPO / "examples/laptop.toml").read_text()
    assert 'addresses = ["192.168.0.2/24"]' in text
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/laptop.toml").write_text(text)
    (tmp_path / "b/laptop.toml").write_text(text.replace("192.168.0.2/24", "192.168.0.7/24"))
    for side in "ab":
        render_overlay(load_profiles([tmp_path / side / "laptop.toml"]), tmp_path / f"out-{side}", state=state)
    diff = diff_trees(tmp_path / "out-a", tmp_path / "out-b")
    assert diff.paths == ("etc/conf.d/network.conf",)
    assert changed_lines(str(diff)) == ["-bond0ADDRS='192.168.0.2/24'", "+bond0ADDRS='192.168.0.7/24'"]


def test_wpa_supplicant_psk_is_masked(tmp_path: Path) -> None:
    a = overlay(tmp_path / "a")
    b = overlay(tmp_path / "b", psk=NEW_PSK, ssid="Office")
    text = str(diff_trees(a, b))
    assert OLD_PSK not in text and NEW_PSK not in text
    assert changed_lines(text) == [
        '-    ssid="MyHome"',
        "-    psk=<secret>",
        '+    ssid="Office"',
        "+    psk=<secret changed>",
    ]
    # Only the ssid changed: the psk line is not part of the change.
    c = overlay(tmp_path / "c", ssid="Office")
    assert changed_lines(str(diff_trees(a, c))) == ['-    ssid="MyHome"', '+    ssid="Office"']
    # A new file shows its psk masked too.
    (b / "etc/wpa_supplicant/wpa_supplicant-wlan1.conf").write_text(WPA.format(ssid="x", psk=NEW_PSK))
    added = diff_trees(a, b)
    assert NEW_PSK not in str(added) and "+    psk=<secret>" in str(added)


def test_whole_secret_files_are_masked(tmp_path: Path) -> None:
    a = overlay(tmp_path / "a")
    b = overlay(tmp_path / "b")
    key = b / "etc/wide-dhcpv6/dhcp6cctlkey"
    key.chmod(0o644)
    text = str(diff_trees(a, b))
    assert text == ("etc/wide-dhcpv6/dhcp6cctlkey: mode 0600 -> 0644\netc/wide-dhcpv6/dhcp6cctlkey: secret unchanged")
    key.write_text(KEY_NEW + "\n")
    text = str(diff_trees(a, b))
    assert "etc/wide-dhcpv6/dhcp6cctlkey: secret changed" in text and KEY_NEW not in text and KEY_OLD not in text
    # Named like a secret, or private by mode, or listed: masked whatever the mode.
    duid = b / "var/lib/dhcpv6/dhcp6c_duid"
    duid.parent.mkdir(parents=True)
    duid.write_bytes(b"\x0e\x00\x00\x01")
    (b / "etc/private").write_text("token=abc\n")
    (b / "etc/private").chmod(0o640)
    (b / "etc/listed.conf").write_text("token=xyz\n")
    (a / "etc/private").write_text("token=old\n")
    (a / "etc/private").chmod(0o600)
    text = str(diff_trees(a, b, secret_paths=["/etc/listed.conf"]))
    assert "var/lib/dhcpv6/dhcp6c_duid: secret file added" in text
    assert "etc/listed.conf: secret file added" in text
    assert "etc/private: mode 0600 -> 0640\netc/private: secret changed" in text
    assert "abc" not in text and "xyz" not in text and "old" not in text


def test_links_modes_binaries_and_added_files(tmp_path: Path) -> None:
    a = overlay(tmp_path / "a")
    b = overlay(tmp_path / "b")
    units = b / "etc/systemd/system"
    (units / "wants/enp3s0@bond0.service").unlink()
    (units / "wants/enp3s0@bond0.service").symlink_to("/etc/systemd/system/slave@.service")
    (units / "enp3s0@.service").unlink()
    (units / "enp3s0@.service").write_text("[Service]\nExecStart=/bin/true %i\n")
    (units / "slave@.service").chmod(0o755)
    (b / "etc/blob").write_bytes(b"\0\1")
    (a / "etc/blob").write_bytes(b"\0\2")
    (b / "etc/motd").write_text("hello\n")
    (a / "etc/gone").write_text("bye\n")
    diff = diff_trees(a, b)
    text = str(diff)
    assert "etc/blob: binary files differ" in text
    assert "etc/gone: file removed (mode 0644)\n--- a/etc/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye" in text
    assert "etc/motd: file added (mode 0644)\n--- /dev/null\n+++ b/etc/motd\n@@ -0,0 +1 @@\n+hello" in text
    assert "etc/systemd/system/enp3s0@.service: hard links etc/systemd/system/slave@.service -> none" in text
    assert "etc/systemd/system/slave@.service: mode 0644 -> 0755" in text
    assert (
        "etc/systemd/system/wants/enp3s0@bond0.service: symlink /etc/systemd/system/enp3s0@.service"
        " -> /etc/systemd/system/slave@.service"
    ) in text
    assert {f.status for f in diff.files} == {"added", "removed", "changed"}


# -- packages ------------------------------------------------------------------------------------


def mkosi_manifest(packages: list[tuple[str, str, str]]) -> dict[str, object]:
    return {
        "manifest_version": 1,
        "config": {"name": "image", "distribution": "debian", "release": "trixie", "architecture": "x86-64"},
        "packages": [{"type": "deb", "name": n, "version": v, "architecture": a, "size": 1000} for n, v, a in packages],
    }


def test_diff_packages_from_mkosi_manifests(tmp_path: Path) -> None:
    a = mkosi_manifest(
        [
            ("libc6", "2.41-11", "amd64"),
            ("libc6", "2.41-11", "i386"),
            ("bash", "5.2.37-2", "amd64"),
            ("ifenslave", "2.14", "all"),
            ("openssl", "3.5.1-1", "amd64"),
        ]
    )
    b = mkosi_manifest(
        [
            ("libc6", "2.41-12", "amd64"),
            ("libc6", "2.41-11", "i386"),
            ("bash", "5.2.37-2", "amd64"),
            ("hostapd", "2:2.10-24", "amd64"),
            ("openssl", "3.5.1~rc1-1", "amd64"),
        ]
    )
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(b))
    diff = diff_packages(a, path)
    assert [(c.name, c.new) for c in diff.added] == [("hostapd", "2:2.10-24")]
    assert [(c.name, c.old) for c in diff.removed] == [("ifenslave", "2.14")]
    assert [(c.name, c.old, c.new) for c in diff.upgraded] == [("libc6:amd64", "2.41-11", "2.41-12")]
    assert [(c.name, c.old, c.new) for c in diff.downgraded] == [("openssl", "3.5.1-1", "3.5.1~rc1-1")]
    assert str(diff).splitlines() == [
        "+ hostapd 2:2.10-24",
        "- ifenslave 2.14",
        "  libc6:amd64: 2.41-11 -> 2.41-12",
        "  openssl: 3.5.1-1 -> 3.5.1~rc1-1 (downgrade)",
    ]
    assert not diff_packages(a, a)


def test_diff_packages_plain_mapping_and_errors() -> None:
    diff = diff_packages({"packages": {"bash": "5.2"}}, {"packages": {"bash": "5.10", "iw": "6.9"}})
    assert [c.name for c in diff.upgraded] == ["bash"] and [c.name for c in diff.added] == ["iw"]
    with pytest.raises(UsageError, match="no 'packages'"):
        diff_packages({}, {"packages": {}})
    with pytest.raises(UsageError, match=r"packages\[0\] has no name"):
        diff_packages({"packages": [{"version": "1"}]}, {"packages": {}})


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0", "1.1"),
        ("1.2.9", "1.2.10"),
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0+deb12u1"),
        ("1.0-1", "1.0-1.1"),
        ("2.36-9+deb12u4", "2.36-9+deb12u10"),
        ("9.9", "1:0.1"),
        ("1.0a", "1.0b"),
        ("1.0", "1.0a"),
        ("1.0-9", "1.0-10"),
    ],
)
def test_debian_version_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) < 0
    assert compare_versions(newer, older) > 0
    assert compare_versions(newer, newer) == 0


def test_debian_versions_equal_by_rule() -> None:
    assert compare_versions("1.0", "1.0-0") == 0
    assert compare_versions("0:1.01", "1.1") == 0


# -- verdicts ------------------------------------------------------------------------------------


def test_diff_verdicts() -> None:
    a = {
        "scenarios": [
            {"name": "boot", "passed": True, "figures": {"boot_s": 64.0}},
            {
                "name": "failover",
                "passed": True,
                "figures": {"gap_ms": 120, "lost": 6, "mac": "52:54:00:00:00:02"},
            },
            {"name": "hotplug", "status": "passed"},
        ]
    }
    b = {
        "scenarios": {
            "boot": {"passed": True, "figures": {"boot_s": 64.0}},
            "failover": {"passed": False, "figures": {"gap_ms": 80, "lost": 4, "mac": "52:54:00:00:00:02"}},
            "ap-lost": {"status": "failed", "figures": {"recovery": {"s": 3}}},
        }
    }
    diff = diff_verdicts(a, b)
    assert str(diff).splitlines() == [
        "ap-lost: absent -> failed",
        "  recovery.s: None -> 3",
        "failover: passed -> failed",
        "  gap_ms: 120 -> 80 (-40)",
        "  lost: 6 -> 4 (-2)",
        "hotplug: passed -> absent",
    ]
    assert not diff_verdicts(a, a)
    with pytest.raises(UsageError, match="no scenarios"):
        diff_verdicts({"scenarios": 3}, a)


def test_diff_verdicts_reads_imagegen_test_json() -> None:
    from imagegen.report.model import RunResult, ScenarioResult

    def run(gap: float, hotplug_passed: bool, boot: float) -> dict[str, object]:
        scenarios = (
            ScenarioResult("failover", "Failover", True, 3.0, figures={"gap_ms": gap}),
            ScenarioResult("hotplug", "Hotplug", hotplug_passed, 2.0),
            ScenarioResult("ap-lost", "AP lost", False, 0.0, skipped=True),
        )
        return RunResult("laptop", "tcg", "kvm hangs", "direct", scenarios, figures={"boot_s": boot}).to_dict()

    diff = diff_verdicts(run(120.0, True, 65.0), run(80.0, False, 66.5))
    assert str(diff).splitlines() == [
        "failover: passed",
        "  gap_ms: 120.0 -> 80.0 (-40)",
        "hotplug: passed -> failed",
        "run: passed -> failed",
        "  boot_s: 65.0 -> 66.5 (+1.5)",
    ]
