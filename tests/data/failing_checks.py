"""A user test file with one check that fails on purpose: imagegen test must name this file, the line of
the failing call, the command and its output, and still run the checks after it."""


def test_passes_first(machine, lab):
    machine.succeed("true")


def test_fails_on_purpose(machine, lab):
    machine.succeed("echo visible-stdout; echo visible-stderr >&2; exit 3")


def test_still_runs_after_the_failure(machine, lab):
    assert machine.execute("echo after")[1] == "after\n"
