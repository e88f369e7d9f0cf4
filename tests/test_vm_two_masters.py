"""The dock example in the lab (vm: minutes under TCG): two bonds in one profile, each made with its own
options and each failing over while the other stays; a second bond made with the first one's miimon fails
the options check for that reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vm_test import MARKS, imagegen

from imagegen.image.config import repo_root

pytestmark = MARKS

NEGATIVE = Path(__file__).parent / "data" / "same_options_checks.py"


def test_two_bonds_fail_over_each_on_its_own_and_mixed_up_options_fail(tmp_path: Path) -> None:
    shutil.copy(repo_root() / "examples" / "dock.toml", tmp_path / "dock.toml")
    proc = imagegen("test", "dock.toml", "--scenario", "boot-wired-primary", "--scenario", "two-masters",
                    "--script", str(NEGATIVE), "--json-file", "result.json", "--artifacts", "artifacts", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    by_name = {s["name"]: s for s in result["scenarios"]}
    negative = by_name.pop(f"{NEGATIVE.name}::test_two_masters_with_the_first_bond_s_miimon_fails")
    assert set(by_name) == {"boot-wired-primary", "two-masters"}
    assert all(s["passed"] for s in by_name.values()), proc.stdout[-5000:]
    two = by_name["two-masters"]
    assert two["figures"]["second_failover_s"] > 0
    failed = [c["name"] for c in negative["checks"] if not c["ok"]]
    assert failed == ["bond1 runs with its own options (miimon 200, fail_over_mac none, primary_reselect failure)"], \
        negative["checks"]
