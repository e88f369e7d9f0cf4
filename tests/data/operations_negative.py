"""Negative checks of the operations scenarios on the running lab VM: each undoes one thing the image
does for the article's promise, runs the scenario that proves the promise, and requires that scenario to
fail for that reason; then puts the thing back.

Run after the scenarios, as a test file: imagegen test laptop.toml --script tests/data/operations_negative.py
"""

from __future__ import annotations

import shutil

from imagegen.scenarios import operations as ops
from imagegen.scenarios.session import Recorder, ScenarioFailed

HOOK = "/etc/dhcp/dhclient-enter-hooks.d/imagegen-leased-address-only"
# What the article's `RequiredBy= static@%i.service` in master@'s [Install] creates when it is enabled.
REQUIRED_BY = "/etc/systemd/system/static@bond0.service.requires/master@bond0.service"
JOURNAL = "journal-master-stop.json"


def _run(scenario, machine, lab) -> dict:  # type: ignore[no-untyped-def]
    rec = Recorder()
    try:
        scenario(machine, lab, rec)
    except ScenarioFailed:
        pass
    return {c.name: c for c in rec.checks}


def test_without_the_dhclient_hook_stopping_dhclient_takes_the_static_address(machine, lab):  # type: ignore[no-untyped-def]
    """Without the enter hook, dhclient-script's flush removes static@'s address with the lease"""
    machine.succeed(f"mv {HOOK} /root/leased-address-only")
    try:
        checks = _run(ops.dhclient_release, machine, lab)
    finally:
        machine.succeed(f"mv /root/leased-address-only {HOOK}", "systemctl restart static@bond0.service")
    static = checks["the static fail-safe address 192.168.0.2/24 stays"]
    assert not static.ok, f"the static address stayed without the hook: {static}"
    removed = next(c for name, c in checks.items() if name.startswith("systemctl stop dhclient@bond0.service:"))
    assert removed.ok, f"the lease itself was not removed: {removed}"
    gap = next(c for name, c in checks.items() if name.startswith("traffic to"))
    assert not gap.ok, f"traffic to the static address went on without the hook: {gap}"


def test_without_required_by_the_teardown_order_check_fails(machine, lab):  # type: ignore[no-untyped-def]
    """An image whose static@ lacks the master's RequiredBy= fails the teardown-order check"""
    kept = machine.artifacts / JOURNAL
    aside = machine.artifacts / "journal-master-stop.with-required-by.json"
    if kept.exists():
        shutil.copyfile(kept, aside)
    machine.succeed(f"mv {REQUIRED_BY} /root/static-requires-master", "systemctl daemon-reload")
    try:
        checks = _run(ops.master_restart, machine, lab)
    finally:
        machine.succeed(f"mv /root/static-requires-master {REQUIRED_BY}", "systemctl daemon-reload")
        if kept.exists():
            kept.replace(machine.artifacts / "journal-master-stop.without-required-by.json")
        if aside.exists():
            aside.replace(kept)
    failed = {name for name, c in checks.items() if not c.ok}
    assert "static@bond0.service stopped as part of the master's stop (RequiredBy=)" in failed, failed
    assert "static@bond0.service stopped before enp3s0@bond0.service began to stop" in failed, failed
    # Everything else of the teardown and bring-up still holds: the order check fails for that reason.
    others = {n for n in failed if not n.startswith("static@bond0.service stopped")}
    assert not others, others
    machine.wait_until_succeeds("ip -br addr show bond0 | grep -F 192.168.0.2/24", timeout=lab.timeout(60))
