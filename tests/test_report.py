from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from imagegen.report.jsonout import write_json
from imagegen.report.junit import junit_xml, write_junit
from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.scenarios.catalog import stop_positions


def run_result() -> RunResult:
    return RunResult(
        profile="examples/laptop.toml", accel="tcg", accel_reason="TCG", boot="direct-kernel",
        scenarios=(
            ScenarioResult("failover", "Failover", True, 12.5, (Check("active slave becomes wlp2s0", True,
                                                                        "after 0.3 s"),),
                           {"failover_gap_ms": 120.0, "failover_probes_lost": 3}),
            ScenarioResult("failback", "Failback", False, 20.0, (Check("returns to enp3s0", False,
                                                                         "still wlp2s0"),)),
            ScenarioResult("hotplug", "Hot-plug", False, 1.0, error="AgentError: no answer"),
        ),
        figures={"main_vm_agent_ready_s": 64.2},
    )


def test_junit_has_a_case_per_scenario_with_failures_and_errors(tmp_path: Path) -> None:
    root = ET.fromstring(junit_xml(run_result()).split("?>", 1)[1])
    assert root.tag == "testsuite"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"failover", "failback", "hotplug"}
    assert cases["failover"].find("failure") is None and "failover_gap_ms = 120.0" in cases["failover"].findtext(
        "system-out")
    assert cases["failback"].find("failure").get("message") == "returns to enp3s0: still wlp2s0"
    assert cases["hotplug"].find("error").get("message") == "AgentError: no answer"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["accel"] == "tcg" and props["main_vm_agent_ready_s"] == "64.2"
    write_junit(run_result(), tmp_path / "r.xml")
    assert ET.parse(tmp_path / "r.xml").getroot().get("tests") == "3"


def test_json_round_trip(tmp_path: Path) -> None:
    write_json(run_result(), tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False
    assert data["scenarios"][0]["figures"]["failover_gap_ms"] == 120.0


def test_run_passes_only_when_every_scenario_passed() -> None:
    ok = ScenarioResult("a", "A", True, 1.0, (Check("x", True),))
    assert RunResult("p", "tcg", "", "direct-kernel", (ok,)).passed
    assert not RunResult("p", "tcg", "", "direct-kernel", ()).passed


CONSOLE = """\
         Stopping dhclient@bond0.service - ISC dhclient on interface bond0...
         Stopping static@bond0.service - Static Network Configuration on bond0...
[  OK  ] Stopped dhclient@bond0.service - ISC dhclient on interface bond0.
[  OK  ] Stopped static@bond0.service - Static Network Configuration on bond0.
         Stopping supplicant@wlp2s0.service - wpa_supplicant on wlp2s0...
         Stopping master@bond0.service - bond0 Interface Master...
"""


def test_stop_positions_read_the_console_order() -> None:
    d_stopping, d_stopped = stop_positions(CONSOLE, "dhclient@bond0.service")
    s_stopping, s_stopped = stop_positions(CONSOLE, "supplicant@wlp2s0.service")
    assert d_stopping is not None and d_stopped is not None and s_stopping is not None
    assert d_stopping < d_stopped < s_stopping
    assert s_stopped is None
    assert stop_positions(CONSOLE, "dhcp6c@bond0.service") == (None, None)


def _failover_run(gap: float, ok: bool) -> RunResult:
    checks = (Check("traffic continues over the wlan", ok, f"outage {gap} ms"),)
    return RunResult("laptop.toml", "tcg", "no kvm", "direct-kernel", (
        ScenarioResult("failover", "Failover", ok, 5.0, checks, {"failover_gap_ms": gap, "failover_timeline": "t.svg"}),
        ScenarioResult("hotplug", "Hot-plug", True, 9.0, (), {"readd_s": 4.0}),
    ))


def test_repeat_tally_counts_passes_and_spreads_numeric_figures(tmp_path: Path) -> None:
    from imagegen.report.repeat import tally, write_repeat_json

    runs = [_failover_run(110.0, True), _failover_run(3500.0, False), _failover_run(90.0, True)]
    by_name = {t.name: t for t in tally(runs)}
    fo = by_name["failover"]
    assert (fo.passed, fo.ran) == (2, 3)
    assert fo.failed_checks == {"traffic continues over the wlan": 1}
    spread = fo.figures["failover_gap_ms"]
    assert (spread.median, spread.low, spread.high, spread.n) == (110.0, 90.0, 3500.0, 3)
    assert "failover_timeline" not in fo.figures  # text figures have no spread
    assert (by_name["hotplug"].passed, by_name["hotplug"].ran) == (3, 3)

    path = tmp_path / "repeat.json"
    write_repeat_json(runs, path)
    data = json.loads(path.read_text())
    assert data["repeat"] == 3 and data["runs_passed"] == 2 and data["passed"] is False
    assert len(data["runs"]) == 3 and data["scenarios"][0]["figures"]["failover_gap_ms"]["max"] == 3500.0


def test_the_console_report_prints_guest_text_literally() -> None:
    from rich.console import Console

    from imagegen.report.console import ConsoleReport

    console = Console(record=True, width=200, force_terminal=False)
    report = ConsoleReport(console)
    odd = ScenarioResult("failover", "Failover", False, 1.0, (Check("link [/x]", False, "saw [bold]eth9[/]"),),
                         {"crash": "oops [/x]"}, error="AgentError: [interfaces.eth9] [/x]")
    report.check(odd.checks[0])
    report.end_scenario(odd)
    report.summary(RunResult("p [/x].toml", "tcg", "TCG [/x]", "direct-kernel", (odd,)))
    text = console.export_text()
    for literal in ("link [/x]", "saw [bold]eth9[/]", "crash=oops [/x]", "AgentError: [interfaces.eth9] [/x]",
                    "TCG [/x]", "p [/x].toml"):
        assert literal in text, literal
