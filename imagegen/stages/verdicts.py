"""Realise the test stage in the store: a verdict entry per (image, scenarios, parameters, version)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen.report.jsonout import write_json
from imagegen.report.junit import write_junit
from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.store import Derivation, Entry, Generation, Store

VERDICT_JSON = "verdict.json"
VERDICT_JUNIT = "junit.xml"
ARTIFACTS = "artifacts"


def load_run_result(path: Path) -> RunResult:
    """A RunResult back from the JSON imagegen test wrote (report.jsonout)."""
    data = json.loads(path.read_text())
    scenarios = tuple(
        ScenarioResult(
            name=s["name"], title=s["title"], passed=s["passed"], seconds=s["seconds"],
            checks=tuple(Check(**c) for c in s.get("checks", ())), figures=dict(s.get("figures") or {}),
            error=s.get("error"), skipped=s.get("skipped", False), skip_reason=s.get("skip_reason"),
        )
        for s in data["scenarios"]
    )
    return RunResult(profile=data["profile"], accel=data["accel"], accel_reason=data["accel_reason"],
                     boot=data["boot"], scenarios=scenarios, artifacts=data.get("artifacts"),
                     figures=dict(data.get("figures") or {}))


def summary(result: RunResult) -> dict[str, Any]:
    """What a generation records of a verdict: the outcome of each scenario and the run's figures."""
    return {
        "passed": result.passed,
        "scenarios": {s.name: {"passed": s.passed, "skipped": s.skipped, "figures": dict(s.figures),
                               **({"skip_reason": s.skip_reason} if s.skip_reason else {})}
                      for s in result.scenarios},
        "figures": dict(result.figures),
    }


def realise_verdict(
    store: Store, drv: Derivation, run: Callable[[Path], RunResult], *, rerun: bool = False
) -> tuple[Entry, RunResult]:
    """The verdict of drv: the stored one, or run(artifacts_dir) now (always with rerun).

    The entry holds verdict.json, junit.xml and, when something failed, artifacts/ (serial logs,
    journals). A run that is interrupted or crashes leaves no entry; a run whose scenarios fail is a
    verdict like any other and is kept.
    """
    final = store.path_of(drv)

    def test(work: Path) -> dict[str, Any]:
        result = run(work / ARTIFACTS)
        if result.artifacts is not None:
            result = dataclasses.replace(result, artifacts=str(final / ARTIFACTS))
        write_json(result, work / VERDICT_JSON)
        write_junit(result, work / VERDICT_JUNIT)
        return summary(result)

    entry = store.realise(drv, test, force=rerun)
    return entry, load_run_result(entry.path / VERDICT_JSON)


def attach_verdict(store: Store, host: str, image: Entry, profile_hash: str, verdict: Entry,
                   result: RunResult) -> Generation:
    """Record the verdict on the host's newest generation of this profile (profile_hash as
    derivations.profile_hash gives it); a generation of the tested image is added when no build of this
    profile is in the history yet."""
    recorded = store.keyed_digest(profile_hash)
    matching = [g for g in store.history(host) if g.profile_hash == recorded]
    generation = matching[-1] if matching else store.record_generation(host, image, recorded)
    return store.set_verdict(host, generation.number, summary(result), verdict)


def copy_verdict_file(entry: Entry, name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(entry.path / name, tmp)
    tmp.replace(dest)
