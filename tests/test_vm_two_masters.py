"""The dock example in the lab (vm: minutes under TCG): two bonds in one profile, each made with its own
options and each failing over while the other stays; a second bond made with the first one's miimon fails
the options check for that reason. Its wired member authenticates its port (802.1X) at boot, is refused
with a wrong password and authorized again; a supplicant that trusts another CA than the one that signed
the switch port's certificate is not authorized, and the verdict says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vm_test import MARKS, imagegen

from imagegen.image.config import repo_root

pytestmark = MARKS

NEGATIVE = Path(__file__).parent / "data" / "same_options_checks.py"
FOREIGN_CA = Path(__file__).parent / "data" / "foreign_ca_checks.py"


def test_two_bonds_fail_over_each_on_its_own_and_mixed_up_options_fail(tmp_path: Path) -> None:
    shutil.copy(repo_root() / "examples" / "dock.toml", tmp_path / "dock.toml")
    for sub in ("secrets", "certs"):
        shutil.copytree(repo_root() / "examples" / sub, tmp_path / sub)
    proc = imagegen("test", "dock.toml", "--scenario", "boot-wired-primary", "--scenario", "wired-8021x",
                    "--scenario", "two-masters", "--script", str(NEGATIVE), "--script", str(FOREIGN_CA),
                    "--json-file", "result.json", "--artifacts", "artifacts", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    by_name = {s["name"]: s for s in result["scenarios"]}
    negative = by_name.pop(f"{NEGATIVE.name}::test_two_masters_with_the_first_bond_s_miimon_fails")
    foreign = by_name.pop(f"{FOREIGN_CA.name}::test_wired_8021x_with_a_ca_that_did_not_sign_the_server_fails")
    assert set(by_name) == {"boot-wired-primary", "wired-8021x", "two-masters"}
    assert all(s["passed"] for s in by_name.values()), proc.stdout[-5000:]
    two = by_name["two-masters"]
    assert two["figures"]["second_failover_s"] > 0
    failed = [c["name"] for c in negative["checks"] if not c["ok"]]
    assert failed == ["bond1 runs with its own options (miimon 200, fail_over_mac none, primary_reselect failure)"], \
        negative["checks"]
    port = by_name["wired-8021x"]
    assert {"authorized_after_boot_s", "wrong_password_refused_s", "reauthorized_s"} <= set(port["figures"])
    (refused,) = [c for c in foreign["checks"] if not c["ok"]]
    assert refused["name"] == "enp3s0 authorized at boot by EAP-PEAP with the profile's credentials", foreign["checks"]
    # Why, in the supplicant's words: the server's certificate does not chain to the CA it trusts.
    assert "TLS-CERT-ERROR" in refused["detail"] and "EAP state FAILURE" in refused["detail"], refused
