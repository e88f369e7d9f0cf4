"""Named checks and figures: what a scenario or a test function reports beyond passing or failing.

A check is a named verdict with what was seen; a failed one fails the result but the function goes on,
so that one run reports every check that does not hold. A required check stops the function there.
Figures are named measurements (seconds, milliseconds, counts, a file name) that the console, the JSON
and the benchmarks read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imagegen.report.model import Check, Figure
from imagegen.testing.errors import TestFailure


class NotApplicable(Exception):
    """The scenario does not apply to this profile (Results.not_applicable): reported with its reason,
    neither passed nor failed. Not a TestFailure: nothing that was checked failed."""


class CheckFailed(TestFailure):
    """A required check did not hold (Results.require); it is already recorded as a failed check."""

    def __init__(self, check: Check) -> None:
        self.check = check
        super().__init__(f"{check.name}: {check.detail}" if check.detail else check.name)


@dataclass
class Results:
    """The checks and figures of one scenario or test function, in the order they were recorded.

        results.check("bonding mode is active-backup", bond.mode == "active-backup", bond.mode)
        results.require("bond0 exists", bond is not None, "no /proc/net/bonding/bond0")
        results.figure("failover_gap_ms", outage.gap_ms)
    """

    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    # Shown as each check is recorded (the console's live list).
    on_check: Callable[[Check], object] | None = None

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record a check named name that holds when ok, with what was seen (detail); returns ok. A check
        that does not hold fails the result, and the function goes on."""
        c = Check(name, bool(ok), detail)
        self.checks.append(c)
        if self.on_check is not None:
            self.on_check(c)
        return c.ok

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        """As check, but one that does not hold ends the function (CheckFailed): what follows needs it."""
        if not self.check(name, ok, detail):
            raise CheckFailed(self.checks[-1])

    def not_applicable(self, reason: str) -> None:
        """End the function here, reported as not applicable to this profile, with the reason (the
        profile's key that makes it so, e.g. "bonds.bond0.dhcp4 is false: no lease to release")."""
        raise NotApplicable(reason)

    def figure(self, name: str, value: Figure) -> None:
        """Record a measurement under name (a later one of the same name replaces it)."""
        self.figures[name] = value

    @property
    def passed(self) -> bool:
        """Whether anything was checked and every check held."""
        return bool(self.checks) and all(c.ok for c in self.checks)
