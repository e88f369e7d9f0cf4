"""Boot the lab image under QEMU and run every scenario (vm: many minutes under TCG).

The positive run is `imagegen test` exactly as a person types it; the negative run boots an image built
with fail_over_mac = "none" while the scenarios expect the laptop profile's "active", and must fail.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from example_copy import copy_laptop
from vm_test import MARKS, imagegen

from imagegen.cli.image import build_profile
from imagegen.image.config import repo_root

pytestmark = MARKS

EXAMPLE = repo_root() / "examples" / "laptop.toml"
ALL = {"boot-wired-primary", "failover", "failback", "wifi-only-boot", "hotplug", "ap-lost", "rfkill",
       "dhclient-release", "static-edit", "supplicant-restart", "master-restart", "card-insert", "clean-shutdown"}
# The scenarios of other shapes (a bridge master, a second bond): reported not applicable on the laptop.
OTHER_SHAPES = {"bridge-boot", "bridge-unplug", "wired-8021x", "two-masters"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy, so that the host state file and build/ land here and not beside the example.
    d = tmp_path_factory.mktemp("lab")
    copy_laptop(d)
    return d


def test_laptop_passes_every_scenario(workdir: Path) -> None:
    # --rerun: a verdict the store already holds would otherwise be printed without booting anything.
    proc = imagegen("test", "laptop.toml", "--rerun", "--json-file", "result.json", "--junit", "result.xml",
                    "--artifacts", "artifacts", cwd=workdir)
    assert (workdir / "result.json").exists(), proc.stdout[-5000:]
    result = json.loads((workdir / "result.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"]}
    # The profile's own checks (tests.scripts), named FILE::FUNCTION, run after the scenarios.
    own = {name: verdicts.pop(name) for name in list(verdicts) if "::" in name}
    assert own and all(own.values()), (own, proc.stdout[-5000:])
    other = {s["name"]: s["error"] for s in result["scenarios"] if s["skipped"]}
    assert set(other) == OTHER_SHAPES and all(e.startswith("not applicable: it proves") for e in other.values()), other
    for name in other:
        verdicts.pop(name)
    assert set(verdicts) == ALL
    assert all(verdicts.values()), (verdicts, proc.stdout[-5000:])
    assert proc.returncode == 0
    failover = next(s for s in result["scenarios"] if s["name"] == "failover")
    assert failover["figures"]["failover_probes_sent"] > 50
    # The kernel's switch mark was found and placed by the clock mark written to /dev/kmsg: without the
    # mark no figure is recorded. After the QMP command, within miimon and the emulator's slack.
    assert -20 < failover["figures"]["failover_kernel_switch_from_qmp_ms"] < 1000, failover["figures"]
    assert (workdir / "result.xml").read_text().count("<testcase") == len(ALL) + len(OTHER_SHAPES) + len(own)


def cpio_members(data: bytes) -> dict[str, bytes]:
    """The files of an initrd: concatenated newc archives, the last one gzip-compressed (initramfs-tools)."""
    members: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        if data[i:i + 2] == b"\x1f\x8b":
            data, i = gzip.decompress(data[i:]), 0
            continue
        if data[i:i + 6] != b"070701":
            raise AssertionError(f"not a newc cpio at offset {i}: {data[i:i + 6]!r}")
        size, namesize = int(data[i + 54:i + 62], 16), int(data[i + 94:i + 102], 16)
        name = data[i + 110:i + 110 + namesize - 1].decode()
        start = (i + 110 + namesize + 3) & ~3
        members[name] = data[start:start + size]
        i = (start + size + 3) & ~3
        if name == "TRAILER!!!":
            while i < len(data) and data[i] == 0:
                i += 1
    return members


@pytest.mark.parametrize("chosen", [("failover", "hotplug"), ("failback",)], ids=["failover+hotplug", "failback"])
def test_chosen_scenarios_pass_without_the_ones_before_them(workdir: Path, chosen: tuple[str, ...]) -> None:
    # Right after the boot nothing has settled yet (no boot-wired-primary has waited for the bond), and
    # hotplug then follows failover with the wired link still off; failback alone has no failover before it.
    args = [a for name in chosen for a in ("--scenario", name)]
    out = f"alone-{'-'.join(chosen)}.json"
    proc = imagegen("test", "laptop.toml", "--rerun", *args, "--json-file", out, cwd=workdir)
    result = json.loads((workdir / out).read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"] if "::" not in s["name"]}
    assert verdicts == dict.fromkeys(chosen, True), proc.stdout[-5000:]


def test_lab_boots_through_its_own_initrd(workdir: Path) -> None:
    # The same lab image the scenarios booted (a store hit): its direct-boot initrd is initramfs-tools',
    # holding only what mounts a virtio root, not mkosi's systemd initrd.
    built = build_profile([workdir / "laptop.toml"], out=workdir / "lab-image", lab=True)
    members = cpio_members(built.initrd.read_bytes())
    assert "init" in members and "scripts/local" in members
    assert members["conf/modules"].split() == [b"virtio_blk", b"ext4"]
    assert any(name.endswith("/virtio_blk.ko.xz") for name in members)
    assert "usr/lib/systemd/systemd" not in members
    assert built.initrd.stat().st_size < 20_000_000


def test_image_without_fail_over_mac_active_fails(workdir: Path) -> None:
    (workdir / "none.toml").write_text('[bonds.bond0]\nfail_over_mac = "none"\n')
    wrong = build_profile([workdir / "laptop.toml", workdir / "none.toml"], out=workdir / "wrong-image", lab=True)
    proc = imagegen("test", "laptop.toml", "--rerun", "--image", str(wrong.out_dir),
                    "--scenario", "boot-wired-primary",
                    "--scenario", "failover", "--json-file", "wrong.json", "--artifacts", "wrong-artifacts",
                    cwd=workdir)
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((workdir / "wrong.json").read_text())
    by_name = {s["name"]: s for s in result["scenarios"]}
    failed = {c["name"] for c in by_name["boot-wired-primary"]["checks"] if not c["ok"]}
    assert "fail_over_mac is active" in failed
    assert not by_name["failover"]["passed"]
    assert any(not c["ok"] and "MAC follows fail_over_mac=active" in c["name"]
               for c in by_name["failover"]["checks"])
    assert (workdir / "wrong-artifacts" / "failover" / "bonding.txt").exists()
