"""The test stage in the store: a verdict is kept per image, scenario set and parameters.

The VM is replaced by a LabRun that reports without booting (the real run is tests/test_vm_scenarios.py);
the store, derivations, generations and the CLI's report are real.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from store_fixtures import FakeMkosi, fake_mkosi, work
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.stages.verdicts import VERDICT_JSON, realise_verdict
from imagegen.store import Derivation, Store
from imagegen.vm.accel import AccelChoice

runner = CliRunner()


def run_result(passed: bool, names: tuple[str, ...] = ("failover",), artifacts: str | None = None) -> RunResult:
    scenarios = tuple(ScenarioResult(n, n.title(), passed, 1.0, (Check("bond fails over", passed),),
                                     {"failover_probes_sent": 99}) for n in names)
    return RunResult("laptop.toml", "tcg", "test", "direct-kernel", scenarios, artifacts)


class FakeLabRun:
    runs: list[tuple[str, ...]] = []
    overlaps: list[bool] = []

    def __init__(self, plan, dhcp6_unit, files, choice, options, report) -> None:  # type: ignore[no-untyped-def]
        self.options = options
        self.files = files

    def run(self, label: str) -> RunResult:
        assert self.files.image.name == "image.raw"
        names = self.options.only or ("boot-wired-primary", "failover")
        FakeLabRun.runs.append(names)
        FakeLabRun.overlaps.append(self.options.overlap)
        return run_result(True, names)


@pytest.fixture
def fake_lab(monkeypatch: pytest.MonkeyPatch) -> type[FakeLabRun]:
    FakeLabRun.runs, FakeLabRun.overlaps = [], []
    monkeypatch.setattr("imagegen.scenarios.runner.LabRun", FakeLabRun)
    monkeypatch.setattr("imagegen.vm.accel.choose_accel", lambda request, kernel: AccelChoice("tcg", "test"))
    return FakeLabRun


def test_verdict_is_reused_and_rerun_forces(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    drv = Derivation("laptop-verdict", "test", {"scenarios": ["failover"]})
    calls = []

    def run(evidence: Path) -> RunResult:
        calls.append(evidence)
        evidence.mkdir(parents=True)
        (evidence / "serial.log").write_text("boot\n")
        return run_result(False, artifacts=str(evidence))

    entry, result = realise_verdict(store, drv, run)
    assert not entry.reused and not result.passed and len(calls) == 1
    assert result.artifacts == str(entry.path / "artifacts"), "the evidence is named where it is kept"
    assert (entry.path / "artifacts/serial.log").read_text() == "boot\n"
    assert (entry.path / "junit.xml").is_file()
    again, cached = realise_verdict(store, drv, run)
    assert again.reused and len(calls) == 1 and cached == result
    _, _ = realise_verdict(store, drv, run, rerun=True)
    assert len(calls) == 2


def test_an_interrupted_run_leaves_no_verdict(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    drv = Derivation("laptop-verdict", "test", {"scenarios": ["failover"]})

    def run(evidence: Path) -> RunResult:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        realise_verdict(store, drv, run)
    assert store.lookup(drv) is None and store.entries() == []


def test_second_test_is_a_no_op_and_parameters_retest_only(work: Path, fake_mkosi: FakeMkosi,
                                                           fake_lab: type[FakeLabRun]) -> None:
    first = runner.invoke(app, ["test", "laptop.toml", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert not data["reused"] and data["passed"] and fake_mkosi.builds == 1 and len(fake_lab.runs) == 1
    assert "verdict: stored" in first.stderr

    second = runner.invoke(app, ["test", "laptop.toml", "--json"])
    assert second.exit_code == 0 and json.loads(second.stdout)["reused"]
    assert "lab image: reused" in second.stderr and "verdict: reused" in second.stderr
    assert len(fake_lab.runs) == 1 and fake_mkosi.builds == 1

    only = runner.invoke(app, ["test", "laptop.toml", "--scenario", "failover"])
    assert only.exit_code == 0 and "verdict: stored" in only.stderr
    assert fake_lab.runs[-1] == ("failover",) and fake_mkosi.builds == 1, "parameters alone re-test only"

    runner.invoke(app, ["test", "laptop.toml", "--rerun"])
    assert len(fake_lab.runs) == 3

    moved = runner.invoke(app, ["test", "moved.toml", "--json"])
    assert moved.exit_code == 0 and fake_mkosi.builds == 2 and len(fake_lab.runs) == 4
    assert json.loads(moved.stdout)["image_path"] != data["image_path"]

    history = json.loads(runner.invoke(app, ["history", "laptop", "--json"]).stdout)
    assert [g["verdict"]["passed"] for g in history] == [True, True]
    verdict = json.loads((Path(history[0]["verdict_path"]) / VERDICT_JSON).read_text())
    # The newest verdict of the profile wins: the --rerun of the whole set, after the one-scenario run.
    assert {s["name"] for s in verdict["scenarios"]} == {"boot-wired-primary", "failover"}


def test_sequential_changes_how_the_vms_are_started_not_the_verdict(work: Path, fake_mkosi: FakeMkosi,
                                                                   fake_lab: type[FakeLabRun]) -> None:
    first = runner.invoke(app, ["test", "laptop.toml", "--sequential"])
    assert first.exit_code == 0, first.output
    assert fake_lab.overlaps == [False]
    # One VM at a time proves the same things: the verdict is the one a run with overlapping boots stores.
    again = runner.invoke(app, ["test", "laptop.toml"])
    assert again.exit_code == 0 and "verdict: reused" in again.stderr and len(fake_lab.runs) == 1
    runner.invoke(app, ["test", "laptop.toml", "--rerun"])
    assert fake_lab.overlaps == [False, True]


def test_image_outside_the_store_runs_without_caching(work: Path, fake_lab: type[FakeLabRun]) -> None:
    outside = work / "image-dir"
    outside.mkdir()
    (outside / "image.raw").write_bytes(b"x")
    for _ in range(2):
        result = runner.invoke(app, ["test", "laptop.toml", "--image", str(outside), "--artifacts",
                                     str(work / "evidence")])
        assert result.exit_code == 0, result.output
    assert len(fake_lab.runs) == 2
    assert not (work / "store").exists() or not any(p.name.endswith("-verdict") for p in (work / "store").iterdir())
    shutil.rmtree(outside)


def test_repeat_boots_every_run_and_tallies_them(work: Path, fake_mkosi: FakeMkosi, fake_lab: type[FakeLabRun],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["test", "laptop.toml"]).exit_code == 0  # a verdict the store now holds
    outcomes = iter([True, False, True])

    def run(self: FakeLabRun, label: str) -> RunResult:
        FakeLabRun.runs.append(("repeat",))
        return run_result(next(outcomes))

    monkeypatch.setattr(FakeLabRun, "run", run)
    result = runner.invoke(app, ["test", "laptop.toml", "--repeat", "3", "--json-file", "repeat.json",
                                 "--artifacts", "evidence"])
    assert result.exit_code == 1, "one run of three failed"
    assert fake_lab.runs[1:] == [("repeat",)] * 3, "every run boots, the stored verdict is not one of them"
    data = json.loads(Path("repeat.json").read_text())
    assert (data["repeat"], data["runs_passed"], data["passed"]) == (3, 2, False) and len(data["runs"]) == 3
    tally = {s["name"]: s for s in data["scenarios"]}["failover"]
    assert (tally["passed"], tally["ran"], tally["failed_checks"]) == (2, 3, {"bond fails over": 1})
    assert "2/3 runs passed" in result.stderr
