"""diff_verdicts: which scenarios changed outcome, and how their figures moved."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.errors import UsageError

_PASSED = {"passed", "pass", "ok", "success"}
_FAILED = {"failed", "fail", "error", "failure"}


@dataclass(frozen=True)
class ScenarioChange:
    name: str
    old: str  # "passed", "failed", "skipped", "unknown", or "absent" (not in that verdict)
    new: str
    figures: tuple[tuple[str, Any, Any], ...]  # (figure, old, new); None where absent


@dataclass(frozen=True)
class VerdictDiff:
    scenarios: tuple[ScenarioChange, ...]

    def __bool__(self) -> bool:
        return bool(self.scenarios)

    def __str__(self) -> str:
        lines = []
        for change in self.scenarios:
            outcome = change.new if change.old == change.new else f"{change.old} -> {change.new}"
            lines.append(f"{change.name}: {outcome}")
            for figure, old, new in change.figures:
                delta = ""
                if _is_number(old) and _is_number(new):
                    delta = f" ({new - old:+g})"
                lines.append(f"  {figure}: {old} -> {new}{delta}")
        return "\n".join(lines)


def load_verdict(verdict: Mapping[str, Any] | Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """{scenario: (outcome, figures)} from a verdict in any of these shapes:

    {"scenarios": [{"name": ..., "passed": bool, "figures": {...}}, ...]},
    {"scenarios": {name: {"passed": bool, "figures": {...}}}}, or {name: {...}} directly;
    "status"/"result" strings ("passed", "failed", ...) stand in for "passed", "skipped": true
    wins over both; nested figures are flattened to dotted names. Run-wide "figures" next to
    "scenarios" (imagegen test --json) are compared as a scenario named "run".
    """
    source = str(verdict) if isinstance(verdict, Path) else "verdict"
    data = json.loads(verdict.read_text()) if isinstance(verdict, Path) else verdict
    scenarios = data.get("scenarios", data) if isinstance(data, Mapping) else None
    if isinstance(scenarios, (list, tuple)):
        items = []
        for index, item in enumerate(scenarios):
            if not isinstance(item, Mapping) or "name" not in item:
                raise UsageError(f"{source}: scenarios[{index}] has no name", "pass a verdict written by imagegen test")
            items.append((str(item["name"]), item))
    elif isinstance(scenarios, Mapping):
        items = [(str(k), v) for k, v in scenarios.items() if isinstance(v, Mapping)]
    else:
        raise UsageError(f"{source}: no scenarios", "pass a verdict written by imagegen test")
    found = {name: (_outcome(item), _flatten(item.get("figures") or {})) for name, item in items}
    # Figures of the whole run (e.g. boot time) sit next to the scenarios in imagegen's JSON.
    if "scenarios" in data and isinstance(data.get("figures"), Mapping) and data["figures"]:
        found.setdefault("run", ("passed" if data.get("passed", True) else "failed", _flatten(data["figures"])))
    return found


def _outcome(item: Mapping[str, Any]) -> str:
    if item.get("skipped") is True:
        return "skipped"
    passed = item.get("passed")
    if isinstance(passed, bool):
        return "passed" if passed else "failed"
    for key in ("status", "result", "outcome"):
        value = str(item.get(key, "")).lower()
        if value in _PASSED:
            return "passed"
        if value in _FAILED:
            return "failed"
    return "unknown"


def _flatten(figures: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def diff_verdicts(a: Mapping[str, Any] | Path, b: Mapping[str, Any] | Path) -> VerdictDiff:
    """Scenarios whose outcome or figures differ between two verdicts (parsed JSON or paths)."""
    old, new = load_verdict(a), load_verdict(b)
    changes = []
    for name in sorted(old.keys() | new.keys()):
        outcome_a, figures_a = old.get(name, ("absent", {}))
        outcome_b, figures_b = new.get(name, ("absent", {}))
        figures = tuple(
            (figure, figures_a.get(figure), figures_b.get(figure))
            for figure in sorted(figures_a.keys() | figures_b.keys())
            if figures_a.get(figure) != figures_b.get(figure)
        )
        if outcome_a != outcome_b or figures:
            changes.append(ScenarioChange(name, outcome_a, outcome_b, figures))
    return VerdictDiff(tuple(changes))
