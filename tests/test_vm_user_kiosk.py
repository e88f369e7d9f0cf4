"""The kiosk example, built and tested as a person would: `imagegen test examples/base.toml
examples/kiosk.toml` builds its lab image (a second --lab build beside the laptop's, ~5 minutes cold),
runs the network scenarios that apply to a static-only kiosk and its own checks, kiosk_checks.py: cage
on tty1 in a logind session, the page on the screen (a screenshot), no way to a shell (vm: minutes).

Named to run after the laptop's VM tests: the kiosk's packages replace the lab's mkosi package cache,
which the laptop's lab builds before it share (each switch reinstalls the packages, ~3 minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vm_test import MARKS

from imagegen.image.config import repo_root

pytestmark = MARKS

REPO = repo_root()
SCENARIOS = {"boot-wired-primary", "failover", "failback", "wifi-only-boot", "hotplug", "ap-lost", "rfkill",
             "dhclient-release", "static-edit", "supplicant-restart", "master-restart", "card-insert", "clean-shutdown"}


def test_the_kiosk_shows_its_page_and_passes_its_scenarios(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The examples themselves (not copies): their host state, and so the lab image in the store, is reused.
    proc = subprocess.run(
        [sys.executable, "-c", "from imagegen.cli import app; app()", "test", "examples/base.toml",
         "examples/kiosk.toml", "--rerun", "--json-file", str(tmp_path / "result.json"),
         "--artifacts", str(tmp_path / "artifacts")],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3300)
    assert (tmp_path / "result.json").exists(), proc.stdout[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in result["scenarios"]}
    own = {name: verdicts.pop(name) for name in list(verdicts) if "::" in name}
    # The scenarios of other shapes (a bridge master, wired 802.1X, a second bond) do not apply, and the run says so.
    other = {s["name"] for s in result["scenarios"]
             if s["skipped"] and s["error"].startswith("not applicable: it proves")}
    assert other == {"bridge-boot", "bridge-unplug", "wired-8021x", "two-masters"}, other
    for name in other:
        verdicts.pop(name)
    assert set(verdicts) == SCENARIOS, verdicts
    # No DHCP on the kiosk: the release of a lease does not apply, and the run says why.
    skipped = {s["name"]: s["error"] for s in result["scenarios"] if s["skipped"] and s["name"] not in other}
    assert list(skipped) == ["dhclient-release"] and "dhcp4 is false" in skipped["dhclient-release"], skipped
    verdicts.pop("dhclient-release")
    assert len(own) == 4 and all(own.values()), (own, proc.stdout[-5000:])
    assert all(verdicts.values()), (verdicts, proc.stdout[-5000:])
    assert proc.returncode == 0, proc.stdout[-5000:]
    # The screenshot that passed the check is kept with the evidence.
    assert (tmp_path / "artifacts" / "kiosk.png").stat().st_size > 0
