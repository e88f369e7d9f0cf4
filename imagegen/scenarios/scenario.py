"""What a scenario is: a name, a title, what it runs on a booted lab, and when it does not apply.

The first scenarios are written on the LabSession; later ones on the public test API (Machine, Lab),
as a user's check is, with a Recorder for their named checks and figures: on_public_api adapts them.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from imagegen.errors import ImagegenError
from imagegen.scenarios.session import LabSession, Recorder, ScenarioFailed
from imagegen.testing.calls import CALL_LOG, CallLog
from imagegen.testing.lab import Lab, bind
from imagegen.testing.machine import Machine
from imagegen.vm.lab import LabPlan

ScenarioFn = Callable[[LabSession, Recorder], None]
PublicFn = Callable[[Machine, Lab, Recorder], None]
# Why a scenario does not apply to a lab plan, or None when it does.
Applies = Callable[[LabPlan], str | None]


def always(plan: LabPlan) -> str | None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: ScenarioFn
    # A scenario that does not apply is reported as not applicable, with this reason; never left out.
    not_applicable: Applies = always


def on_public_api(name: str, fn: PublicFn) -> ScenarioFn:
    """fn as a scenario of the runner: its Machine and Lab calls go to the call log in the artifacts, and
    a call that fails (a command's status, a wait that ran out) is the scenario's failed check, with what
    the call saw."""
    def run(session: LabSession, rec: Recorder) -> None:
        calls = CallLog(session.artifacts / CALL_LOG if session.artifacts is not None else None)
        calls.section(name)
        machine, lab = bind(session, calls)
        try:
            fn(machine, lab, rec)
        except (ScenarioFailed, ImagegenError):
            raise  # a required check that failed, or the VM or its agent gone: the runner says which
        except AssertionError as e:
            # A TestFailure (a command's status, a wait that ran out) or an assert: what was seen.
            first, _, rest = (str(e) or "an assertion failed").partition("\n")
            rec.check(first, False, rest.strip())
            raise ScenarioFailed(first) from None
        except Exception as e:
            # A bug in the scenario fails it, not the run: the scenarios after it still run.
            calls.write("".join(traceback.format_exception(e)))
            rec.check(f"{name} raised {type(e).__name__}", False, str(e))
            raise ScenarioFailed(f"{type(e).__name__}: {e}") from None
    return run
