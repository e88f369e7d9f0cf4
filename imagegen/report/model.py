"""What a test run found, as plain frozen data that every output format reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Figure = float | int | str


@dataclass(frozen=True)
class Check:
    """One statement about the guest, true or not, with what was seen."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    title: str
    passed: bool
    seconds: float
    checks: tuple[Check, ...] = ()
    figures: dict[str, Figure] = field(default_factory=dict)
    error: str | None = None
    skipped: bool = False

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True)
class RunResult:
    profile: str
    accel: str
    accel_reason: str
    boot: str
    scenarios: tuple[ScenarioResult, ...]
    artifacts: str | None = None
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(s.passed or s.skipped for s in self.scenarios) and any(not s.skipped
                                                                          for s in self.scenarios)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d
