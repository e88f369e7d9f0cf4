"""The bridge example in the lab (vm: minutes under TCG): `imagegen test examples/bridge.toml` as a person
types it runs the scenarios of a bridge master and only those, and a bridge whose member is not wanted by
its device fails the unplug scenario for that reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vm_test import MARKS, imagegen

from imagegen.image.config import repo_root

pytestmark = MARKS

BRIDGE = {"bridge-boot", "bridge-unplug", "dhclient-release", "static-edit", "master-restart", "clean-shutdown"}
NEGATIVE = Path(__file__).parent / "data" / "unwanted_port_checks.py"


def test_the_bridge_passes_its_scenarios_and_a_port_its_device_does_not_want_fails(tmp_path: Path) -> None:
    shutil.copy(repo_root() / "examples" / "bridge.toml", tmp_path / "bridge.toml")
    proc = imagegen("test", "bridge.toml", "--script", str(NEGATIVE), "--json-file", "result.json", "--artifacts",
                    "artifacts", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    by_name = {s["name"]: s for s in result["scenarios"]}
    negative = by_name.pop(f"{NEGATIVE.name}::test_bridge_unplug_without_the_device_s_wants_fails")
    # A bridge's lab: its own scenarios and the article's operations that need no radio; those of a bond
    # are reported not applicable, each saying why, with no VM booted for them.
    port = by_name.pop("wired-8021x")
    assert port["skipped"] and port["error"] == ("not applicable: it proves wired 802.1X, and enp3s0 runs no "
                                                 "supplicant (interfaces.enp3s0.supplicant is not true)")
    other = {n: s for n, s in by_name.items() if s["skipped"]}
    assert other and all(s["error"] == "not applicable: it proves a bond master; the lab plays bridges.br0, a bridge"
                         for s in other.values()), other
    assert {"failover", "wifi-only-boot", "card-insert", "two-masters"} <= set(other)
    for name in other:
        by_name.pop(name)
    assert set(by_name) == BRIDGE, proc.stdout[-5000:]
    assert all(s["passed"] for s in by_name.values()), proc.stdout[-5000:]
    failed = [c["name"] for c in negative["checks"] if not c["ok"]]
    assert "device_add nic-wired: enp3s0@br0.service starts by itself" in failed, negative["checks"]
    # It failed at the replug, not before: the cable and the unplug went as on the image as built.
    assert not [f for f in failed if f.startswith(("cable", "device_del", "enp3s0@br0.service stops"))], failed
    assert by_name["clean-shutdown"]["passed"]
