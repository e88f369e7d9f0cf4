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
    # Why a skipped scenario did not run, e.g. "not applicable: bond0 has no DHCPv4 (dhcp4 = false)".
    # A scenario is never left out of the results silently: one that does not apply says why.
    skip_reason: str | None = None

    @classmethod
    def not_applicable(cls, name: str, title: str, why: str) -> ScenarioResult:
        """The result of a scenario that does not apply to the profile: skipped, with the reason."""
        return cls(name, title, passed=False, seconds=0.0, skipped=True, skip_reason=f"not applicable: {why}")

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
