"""What a failed check raises: each message names what was asked, what the guest answered and how long
it took, so that a failure is explained by its one line in the report."""

from __future__ import annotations


def _quote(text: str, limit: int = 2000) -> str:
    text = text.rstrip("\n")
    if not text:
        return "(empty)"
    if len(text) > limit:
        text = "…" + text[-limit:]
    return "\n".join("    " + line for line in text.splitlines())


class TestFailure(AssertionError):
    """A check of the test API did not hold. An AssertionError, as a failed `assert` is."""

    __test__ = False  # not a pytest test class, whatever its name


class CommandFailed(TestFailure):
    """A command's exit status was not the one asked for (succeed: 0, fail: anything else)."""

    def __init__(self, command: str, status: int, stdout: str, stderr: str, *, where: str = "machine",
                 expected: str = "0") -> None:
        self.command = command
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.where = where
        super().__init__(f"{where}: `{command}` exited {status}, expected {expected}\n"
                         f"  stdout:\n{_quote(stdout)}\n  stderr:\n{_quote(stderr)}")


class WaitTimeout(TestFailure):
    """A wait ran out of time; `last` is what was seen at the last poll."""

    def __init__(self, what: str, seconds: float, polls: int, last: str = "") -> None:
        self.what = what
        self.seconds = seconds
        self.polls = polls
        self.last = last
        tail = f"; last seen:\n{_quote(last)}" if last else ""
        super().__init__(f"timed out after {seconds:.1f} s ({polls} polls) waiting for {what}{tail}")


class UnitFailed(TestFailure):
    """A unit that was waited for reached the `failed` state: waiting longer would not help."""

    def __init__(self, unit: str, status: str) -> None:
        self.unit = unit
        self.status = status
        super().__init__(f"unit {unit} failed; systemctl status:\n{_quote(status)}")
