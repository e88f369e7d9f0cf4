"""The article's operations as scenarios (imagegen.scenarios.operations): the journal's stop order, the
edit of network.conf, the routes, the dhclient hook that keeps static@'s addresses, and how a scenario
that does not apply is reported. What the guest does is proven in the lab VM; this is the logic around it.
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from imagegen.profile import HostState, load_profiles
from imagegen.render import render_overlay
from imagegen.report.console import ConsoleReport
from imagegen.report.jsonout import write_json
from imagegen.report.junit import junit_xml
from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.scenarios import operations as ops
from imagegen.scenarios.catalog import BY_NAME, SCENARIOS
from imagegen.scenarios.journal import parse_unit_events, parse_unit_states, span, stop_order
from imagegen.scenarios.runner import MAIN_VM
from imagegen.scenarios.scenario import on_public_api
from imagegen.scenarios.session import LabSession, Recorder, ScenarioFailed
from imagegen.stages.verdicts import load_run_result
from imagegen.testing.errors import CommandFailed
from imagegen.vm.lab import LAB_NICS, _dhcp_range4, plan_lab
from imagegen.vm.machine import ImageFiles
from imagegen.vm.machine import Machine as Vm

REPO = Path(__file__).resolve().parents[1]
LAPTOP = REPO / "examples" / "laptop.toml"
# The job messages `journalctl -o json _PID=1` shows after `systemctl stop master@bond0`, in the order the
# article's units imply, written in journalctl's JSON form (the fields the parser reads).
JOURNAL = REPO / "tests" / "data" / "journal-master-stop.json"
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
MASTER = "master@bond0.service"
SLAVES = ("enp3s0@bond0.service", "wlp2s0@bond0.service")
CONFIGS = ("dhclient@bond0.service", "dhcp6c@bond0.service", "static@bond0.service")


def laptop_plan():  # type: ignore[no-untyped-def]
    return plan_lab(load_profiles([LAPTOP]).profile)


# --- The stop order, from the journal -------------------------------------------------------------

def test_the_journal_gives_each_units_stop_in_order() -> None:
    events = parse_unit_events(JOURNAL.read_text())
    kinds = {(e.unit, e.kind) for e in events}
    for unit in (MASTER, *SLAVES, *CONFIGS):
        assert (unit, "stopping") in kinds and (unit, "stopped") in kinds
    assert [e.index for e in events] == list(range(len(events)))
    assert events[-1].unit == MASTER and events[-1].kind == "stopped"
    assert all(e.monotonic_s is not None for e in events)


def test_the_articles_stop_order_holds_in_the_recorded_journal() -> None:
    checks = stop_order(parse_unit_events(JOURNAL.read_text()), master=MASTER, slaves=SLAVES, configs=CONFIGS)
    assert [c for c in checks if not c.ok] == []
    # The master, each configuration by the master's job and before each slave, each slave before the master.
    assert len(checks) == 1 + len(CONFIGS) * (1 + len(SLAVES)) + len(SLAVES)


def _as_without_required_by(text: str, unit: str) -> str:
    """The same journal as an image whose master@ lacks RequiredBy=unit would write it: the master's stop
    does not stop unit, so it stops only when the bond's device goes, after the master began to stop."""
    lines = [line for line in text.splitlines() if line.strip()]
    own = [line for line in lines if json.loads(line).get("UNIT") == unit]
    rest = [line for line in lines if line not in own]
    at = next(i for i, line in enumerate(rest) if json.loads(line).get("UNIT") == MASTER
              and json.loads(line).get("MESSAGE", "").startswith("Stopping"))
    return "\n".join(rest[:at + 1] + own + rest[at + 1:]) + "\n"


def test_a_static_unit_without_required_by_fails_the_teardown_order() -> None:
    text = _as_without_required_by(JOURNAL.read_text(), "static@bond0.service")
    failed = {c.name for c in stop_order(parse_unit_events(text), master=MASTER, slaves=SLAVES, configs=CONFIGS)
              if not c.ok}
    assert failed == {"static@bond0.service stopped as part of the master's stop (RequiredBy=)",
                      "static@bond0.service stopped before enp3s0@bond0.service began to stop",
                      "static@bond0.service stopped before wlp2s0@bond0.service began to stop"}


def test_a_unit_missing_from_the_journal_fails_with_where_it_was_looked_for() -> None:
    text = "\n".join(line for line in JOURNAL.read_text().splitlines()
                     if json.loads(line).get("UNIT") != "dhcp6c@bond0.service")
    checks = {c.name: c for c in stop_order(parse_unit_events(text), master=MASTER, slaves=SLAVES,
                                            configs=CONFIGS)}
    bad = checks["dhcp6c@bond0.service stopped as part of the master's stop (RequiredBy=)"]
    assert not bad.ok and "not in the journal" in bad.detail


def test_plain_text_job_messages_count_too_and_other_lines_are_ignored() -> None:
    text = "\n".join([
        "-- No entries --",
        json.dumps({"MESSAGE": "Stopping dhclient@bond0.service - ISC dhclient on interface bond0...",
                    "__MONOTONIC_TIMESTAMP": "1000000"}),
        json.dumps({"MESSAGE": "dhclient@bond0.service: Deactivated successfully.", "UNIT": "dhclient@bond0.service"}),
        "{not json",
        json.dumps({"MESSAGE": "Stopped dhclient@bond0.service - ISC dhclient on interface bond0.",
                    "__MONOTONIC_TIMESTAMP": "3500000"}),
    ])
    events = parse_unit_events(text)
    assert [(e.unit, e.kind) for e in events] == [("dhclient@bond0.service", "stopping"),
                                                 ("dhclient@bond0.service", "stopped")]
    assert span(events, ["dhclient@bond0.service"], "stopping", "stopped") == 2.5
    assert span(events, ["master@bond0.service"], "stopping", "stopped") is None


def test_unit_states_as_systemctl_show_gives_them() -> None:
    out = ("Id=dhclient@bond0.service\nActiveState=inactive\nSubState=dead\n\n"
           "Id=master@bond0.service\nActiveState=active\nSubState=exited\n")
    assert parse_unit_states(out, ["master@bond0.service", "dhclient@bond0.service", "x.service"]) == {
        "master@bond0.service": "active/exited", "dhclient@bond0.service": "inactive/dead", "x.service": "missing"}


# --- network.conf: its routes, the edit -----------------------------------------------------------

def test_route_words_and_presence_as_ip_json_shows_routes() -> None:
    words = ops.route_words('"to 198.51.100.0/24 via 192.168.0.1" "to default via 192.168.0.1 metric 100"'
                            ' "to ::/0 via fe80::1"')
    assert words == [["to", "198.51.100.0/24", "via", "192.168.0.1"],
                     ["to", "default", "via", "192.168.0.1", "metric", "100"], ["to", "::/0", "via", "fe80::1"]]
    routes = [{"dst": "198.51.100.0/24", "gateway": "192.168.0.1", "dev": "bond0"},
              {"dst": "default", "gateway": "192.168.0.1", "dev": "bond0"},
              {"dst": "192.168.0.0/24", "dev": "bond0", "protocol": "kernel"}]
    assert ops.route_present(words[0], routes) and ops.route_present(words[1], routes)
    assert not ops.route_present(words[2], routes)
    assert ops.route_present(words[2], [{"dst": "default", "gateway": "fe80::1"}])
    assert not ops.route_present(["to", "198.51.100.0/24", "via", "192.168.0.9"], routes)
    assert ops.route_words("") == []


def test_the_spare_address_is_free_and_outside_the_labs_dhcp_range() -> None:
    plan = laptop_plan()
    spare = ops.spare_address(plan)
    low, high = _dhcp_range4(plan)
    assert spare.network == plan.subnet4 and str(spare) == "192.168.0.127/24"
    assert spare.ip not in {a.ip for a in plan.static4} | {plan.ap_addr4.ip}
    assert not (int(ops.ipaddress.ip_address(low)) <= int(spare.ip) <= int(ops.ipaddress.ip_address(high)))


def test_the_edit_of_network_conf_is_what_the_units_read(tmp_path: Path) -> None:
    render_overlay(load_profiles([LAPTOP]), tmp_path / "o", state=STATE)
    conf = tmp_path / "o" / "etc/conf.d/network.conf"
    for command in (ops.sed_set("bond0ADDRS", "192.168.0.2/24 192.168.0.127/24"),
                    ops.sed_set("bond0ROUTES", '"to 198.51.100.0/24 via 192.168.0.1"')):
        subprocess.run(["sh", "-c", command.replace(ops.NETWORK_CONF, str(conf))], check=True)
    script = '. "$1"; printf "%s|%s" "$bond0ADDRS" "$bond0ROUTES"'
    out = subprocess.run(["sh", "-c", script, "sh", str(conf)], check=True, capture_output=True, text=True).stdout
    assert out == '192.168.0.2/24 192.168.0.127/24|"to 198.51.100.0/24 via 192.168.0.1"'
    assert conf.read_text().count("bond0ADDRS=") == 1


@pytest.mark.parametrize("value", ["a'b", "x; rm -rf /", "$(id)", "a|b", "a\nb"])
def test_the_edit_refuses_a_value_it_would_not_write_literally(value: str) -> None:
    with pytest.raises(ValueError, match="not a network.conf line"):
        ops.sed_set("bond0ADDRS", value)


# --- dhclient's hook: a lease goes, static@'s addresses stay ---------------------------------------

def _hook_calls(tmp_path: Path, env: dict[str, str], *commands: str) -> list[str]:
    """Source the rendered hook as dhclient-script does, run commands, and return the ip calls that reached
    the ip binary (a stub that logs its arguments)."""
    render_overlay(load_profiles([LAPTOP]), tmp_path / "o", state=STATE)
    hook = tmp_path / "o" / "etc/dhcp/dhclient-enter-hooks.d/imagegen-leased-address-only"
    stub = tmp_path / "bin" / "ip"
    stub.parent.mkdir()
    log = tmp_path / "ip.log"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    script = f". {hook}\n" + "\n".join(commands)
    subprocess.run(["sh", "-c", script], check=True, env={**env, "PATH": f"{stub.parent}:{os.environ['PATH']}"})
    return log.read_text().splitlines() if log.exists() else []


def test_the_hook_makes_the_lease_flush_remove_the_leased_address_only(tmp_path: Path) -> None:
    env = {"reason": "RELEASE", "interface": "bond0", "old_ip_address": "192.168.0.130"}
    assert _hook_calls(tmp_path, env, "ip -4 addr flush dev bond0 label bond0", "ip -4 addr flush dev bond0",
                       "ip -4 addr flush dev bond0 label bond0:0", "ip link set dev bond0 up",
                       '${ip} -4 addr flush dev bond0 label bond0') == [
        "-4 addr flush dev bond0 label bond0 to 192.168.0.130/32",
        "-4 addr flush dev bond0 to 192.168.0.130/32",
        "-4 addr flush dev bond0 label bond0:0",
        "link set dev bond0 up",
        "-4 addr flush dev bond0 label bond0 to 192.168.0.130/32",
    ]


def test_the_hook_on_timeout_flushes_the_tried_lease_and_without_a_lease_nothing(tmp_path: Path) -> None:
    env = {"reason": "TIMEOUT", "interface": "bond0", "new_ip_address": "192.168.0.131"}
    assert _hook_calls(tmp_path, env, "ip -4 addr flush dev bond0") == ["-4 addr flush dev bond0 to 192.168.0.131/32"]
    (tmp_path / "ip.log").unlink()
    for p in ("o", "bin"):
        subprocess.run(["rm", "-rf", str(tmp_path / p)], check=True)
    assert _hook_calls(tmp_path, {"reason": "EXPIRE", "interface": "bond0"}, "ip -4 addr flush dev bond0 label bond0",
                       "ip -4 addr flush dev eth9 label eth9") == ["-4 addr flush dev eth9 label eth9"]


def test_the_hook_is_where_each_distributions_dhclient_script_reads_it(tmp_path: Path) -> None:
    render_overlay(load_profiles([LAPTOP]), tmp_path / "debian", state=STATE)
    assert (tmp_path / "debian/etc/dhcp/dhclient-enter-hooks.d/imagegen-leased-address-only").is_file()
    arch = tmp_path / "arch.toml"
    arch.write_text(LAPTOP.read_text().replace('distribution = "debian"', 'distribution = "arch"')
                    .replace('release = "trixie"', 'release = "rolling"'))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/laptop_checks.py").write_text("def test_x(machine, lab):\n    pass\n")
    render_overlay(load_profiles([arch]), tmp_path / "arch", state=STATE)
    assert (tmp_path / "arch/etc/dhclient-enter-hooks").is_file()


# --- Registered, and "not applicable" when it does not apply ----------------------------------------

def test_the_operations_run_on_the_main_vm_before_its_clean_shutdown_in_catalog_order() -> None:
    names = ["dhclient-release", "static-edit", "supplicant-restart", "master-restart"]
    assert MAIN_VM[-len(names) - 1:] == (*names, "clean-shutdown")
    order = [s.name for s in SCENARIOS]
    assert order[order.index("ap-lost") + 1:order.index("clean-shutdown")] == names
    assert all(BY_NAME[n].not_applicable(laptop_plan()) is None for n in names)


def test_a_scenario_that_does_not_apply_says_why() -> None:
    plan = replace(laptop_plan(), dhcp4=False, static4=())
    assert BY_NAME["dhclient-release"].not_applicable(plan) == (
        "bond0 has no DHCPv4 (dhcp4 = false): there is no dhclient@bond0 to stop")
    why = BY_NAME["static-edit"].not_applicable(plan)
    assert why is not None and "no static IPv4 address" in why


def _with_not_applicable() -> RunResult:
    return RunResult("examples/laptop.toml", "tcg", "TCG", "direct-kernel", (
        ScenarioResult("failover", "Failover", True, 3.0, (Check("x", True),)),
        ScenarioResult.not_applicable("dhclient-release", "dhclient", "bond0 has no DHCPv4 (dhcp4 = false)"),
    ))


def test_not_applicable_in_console_junit_json_and_the_stored_verdict(tmp_path: Path) -> None:
    result = _with_not_applicable()
    assert result.passed, "a scenario that does not apply fails nothing"
    console = Console(record=True, width=200)
    report = ConsoleReport(console)
    report.end_scenario(result.scenarios[1])
    report.summary(result)
    text = console.export_text()
    assert "N/A" in text and "n/a" in text and "not applicable: bond0 has no DHCPv4 (dhcp4 = false)" in text
    root = ET.fromstring(junit_xml(result).split("?>", 1)[1])
    case = next(c for c in root.iter("testcase") if c.get("name") == "dhclient-release")
    assert case.find("skipped").get("message") == "not applicable: bond0 has no DHCPv4 (dhcp4 = false)"
    assert root.get("skipped") == "1" and root.get("failures") == "0"
    write_json(result, tmp_path / "v.json")
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["scenarios"][1]["skipped"] is True
    assert data["scenarios"][1]["skip_reason"] == "not applicable: bond0 has no DHCPv4 (dhcp4 = false)"
    assert load_run_result(tmp_path / "v.json") == result


# --- On the public API: a failed call is the failed check ------------------------------------------

def _session(tmp_path: Path) -> LabSession:
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    lab = LabSession(Vm(files, accel="tcg", nics=LAB_NICS, run_dir=tmp_path / "run"), laptop_plan(), "dhcp6c")
    lab.artifacts = tmp_path / "artifacts"
    return lab


def test_a_call_that_fails_is_the_scenarios_failed_check_with_what_it_saw(tmp_path: Path) -> None:
    def scenario(machine, lab, rec):  # type: ignore[no-untyped-def]
        rec.check("first", True)
        raise CommandFailed("systemctl stop dhclient@bond0.service", 5, "", "Unit not loaded.")

    rec = Recorder()
    with pytest.raises(ScenarioFailed):
        on_public_api("dhclient-release", scenario)(_session(tmp_path), rec)
    assert rec.checks[0].ok and not rec.checks[1].ok
    assert rec.checks[1].name == "machine: `systemctl stop dhclient@bond0.service` exited 5, expected 0"
    assert "Unit not loaded." in rec.checks[1].detail
    assert "== dhclient-release" in (tmp_path / "artifacts" / "machine-calls.log").read_text()


def test_a_bug_in_a_scenario_fails_it_not_the_run(tmp_path: Path) -> None:
    def scenario(machine, lab, rec):  # type: ignore[no-untyped-def]
        return {}["missing"]

    rec = Recorder()
    with pytest.raises(ScenarioFailed):
        on_public_api("static-edit", scenario)(_session(tmp_path), rec)
    assert [(c.name, c.ok) for c in rec.checks] == [("static-edit raised KeyError", False)]
    assert "Traceback" in (tmp_path / "artifacts" / "machine-calls.log").read_text()


def test_a_scenario_that_applied_in_no_run_is_n_a_in_the_repeat_table() -> None:
    console = Console(record=True, width=200)
    ConsoleReport(console).repeat_summary([_with_not_applicable(), _with_not_applicable()])
    row = next(line for line in console.export_text().splitlines() if "dhclient-release" in line)
    assert "n/a" in row and "0/0" not in row


def test_removing_one_configurations_address_keeps_the_others_on_the_subnet(tmp_path: Path) -> None:
    # Found by static-edit in the VM: stopping static@ removed the DHCPv4 lease too, as the fail-safe
    # address was the subnet's primary one and the kernel deletes the secondaries with it.
    render_overlay(load_profiles([LAPTOP]), tmp_path / "o", state=STATE)
    conf = (tmp_path / "o" / "etc/sysctl.d/50-imagegen-promote-secondaries.conf").read_text()
    assert "net.ipv4.conf.all.promote_secondaries = 1" in conf.splitlines()
