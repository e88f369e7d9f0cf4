"""Several runs of the same scenarios: how often each passed, and the spread of its figures.

A scenario that passes in some runs and fails in others is flaky, which is a bug of the product or of
the scenario; `imagegen test --repeat N` is how to find it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.report.jsonout import is_json_report
from imagegen.report.model import RunResult
from imagegen.safeoutput import safe_replace


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:g} ({self.low:g}–{self.high:g})" if self.n > 1 else f"{self.median:g}"


@dataclass(frozen=True)
class ScenarioTally:
    name: str
    passed: int
    ran: int
    # Numeric figures only, in the order the scenario first reported them.
    figures: dict[str, Spread]
    failed_checks: dict[str, int]  # check name -> in how many runs it failed


def tally(results: list[RunResult]) -> list[ScenarioTally]:
    names: list[str] = []
    for r in results:
        names += [s.name for s in r.scenarios if s.name not in names]
    out = []
    for name in names:
        runs = [s for r in results for s in r.scenarios if s.name == name and not s.skipped]
        values: dict[str, list[float]] = {}
        failed: dict[str, int] = {}
        for s in runs:
            for k, v in s.figures.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    values.setdefault(k, []).append(float(v))
            for c in s.failed_checks():
                failed[c.name] = failed.get(c.name, 0) + 1
            if s.error:
                failed[f"error: {s.error}"] = failed.get(f"error: {s.error}", 0) + 1
        figures = {k: Spread(round(statistics.median(v), 2), min(v), max(v), len(v)) for k, v in values.items()}
        out.append(ScenarioTally(name, sum(s.passed for s in runs), len(runs), figures, failed))
    return out


def repeat_dict(results: list[RunResult]) -> dict[str, Any]:
    return {
        "repeat": len(results),
        "passed": all(r.passed for r in results),
        "runs_passed": sum(r.passed for r in results),
        "scenarios": [
            {"name": t.name, "passed": t.passed, "ran": t.ran, "failed_checks": t.failed_checks,
             "figures": {k: {"median": s.median, "min": s.low, "max": s.high, "n": s.n}
                         for k, s in t.figures.items()}}
            for t in tally(results)
        ],
        "runs": [r.to_dict() for r in results],
    }


def write_repeat_json(results: list[RunResult], path: Path, option: str = "--json") -> None:
    safe_replace(path, (json.dumps(repeat_dict(results), indent=2) + "\n").encode(), option=option,
                 ours=is_json_report)
