"""User test files: plain Python files whose functions `test_…(machine, lab)` run on the lab VM after
the built-in scenarios, each one a result of its own.

A file is imported once, before anything is built or booted, so that a syntax error or a missing test
is a usage error at once; its test functions run in the order the file defines them. A failing function
does not stop the others. Its result names the file and line that failed (the deepest frame of the
traceback in that file), the statement, and what the call that failed saw.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import linecache
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

from imagegen.errors import ImagegenError, UsageError
from imagegen.profile.load import script_problem
from imagegen.scenarios.catalog import Scenario
from imagegen.scenarios.session import LabSession
from imagegen.testing.calls import CallLog
from imagegen.testing.lab import Lab
from imagegen.testing.machine import Machine
from imagegen.testing.results import CheckFailed, NotApplicable, Results

CALL_LOG = "machine-calls.log"
# (machine, lab) or (machine, lab, results)
TestFn = Callable[..., object]


@dataclass(frozen=True)
class TestFunction:
    script: Path  # as the profile or --script named it
    name: str
    line: int
    doc: str
    fn: TestFn
    wants_results: bool = False  # it takes a third argument, the Results of its named checks and figures

    @property
    def id(self) -> str:
        """The result's name: FILE::FUNCTION."""
        return f"{self.script.name}::{self.name}"


def _where_in(tb: TracebackType | None, script: Path) -> tuple[int, str] | None:
    """The line of script's deepest frame in tb, and its source text."""
    target = script.resolve()
    found = None
    for frame, line in traceback.walk_tb(tb):
        if Path(frame.f_code.co_filename).resolve() == target:
            found = line
    if found is None:
        return None
    return found, linecache.getline(str(script), found).strip()


def _import(path: Path) -> ModuleType:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"imagegen_user_tests.{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported as a Python file", "name a .py file")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: dataclasses and pickling in the file look their module up here.
    sys.modules[name] = module
    linecache.checkcache(str(path))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise UsageError(f"{path}:{e.lineno}: {e.msg}", "fix the syntax at that line") from None
    except Exception as e:
        sys.modules.pop(name, None)
        where = _where_in(e.__traceback__, path)
        at = f"{path}:{where[0]}" if where else str(path)
        raise UsageError(f"{at}: importing the test file raised {type(e).__name__}: {e}",
                         "a test file's top level only defines functions and constants") from None
    return module


def _takes(fn: Callable[..., object], count: int) -> bool:
    try:
        inspect.signature(fn).bind(*(object() for _ in range(count)))
    except TypeError:
        return False
    return True


def load_script(path: Path) -> tuple[TestFunction, ...]:
    """The test functions of one file, in the order it defines them."""
    why = script_problem(path)
    if why:
        raise UsageError(f"{path}: {why}")
    module = _import(path)
    tests = []
    for name, value in vars(module).items():
        if not (name.startswith("test_") and inspect.isfunction(value) and value.__module__ == module.__name__):
            continue
        line = value.__code__.co_firstlineno
        wants_results = _takes(value, 3)
        if not (_takes(value, 2) or wants_results):
            raise UsageError(f"{path}:{line}: {name} must take two arguments, (machine, lab), or three, "
                             "(machine, lab, results)", f"write def {name}(machine, lab):")
        doc = (inspect.getdoc(value) or "").strip().splitlines()
        tests.append(TestFunction(path, name, line, doc[0] if doc else name, value,
                                  wants_results=wants_results and not _takes(value, 2)))
    if not tests:
        raise UsageError(f"{path}: defines no test function", "name each check def test_NAME(machine, lab):")
    return tuple(sorted(tests, key=lambda t: t.line))


def load_scripts(paths: Sequence[Path]) -> tuple[TestFunction, ...]:
    """The test functions of every file, file after file; a file named twice runs once."""
    seen: dict[Path, Path] = {}
    for path in paths:
        seen.setdefault(path.resolve(), path)
    tests: list[TestFunction] = []
    for path in seen.values():
        tests += load_script(path)
    ids: dict[str, TestFunction] = {}
    for t in tests:
        if t.id in ids:
            raise UsageError(f"{t.script} and {ids[t.id].script} both define {t.id}",
                             "rename one of the files or the function: results are named FILE::FUNCTION")
        ids[t.id] = t
    return tuple(tests)


def failure(test: TestFunction, error: BaseException) -> tuple[str, str]:
    """The failed check of a test that raised error: (FILE:LINE: statement, what was seen)."""
    where = _where_in(error.__traceback__, test.script)
    line, source = where if where else (test.line, f"def {test.name}(…)")
    # A failed check or assert says what it saw; anything else is a bug in the test, named by its type.
    seen = str(error) if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}"
    seen = seen or f"{type(error).__name__} (the assert has no message)"
    return f"{test.script}:{line}: {source}", seen


def bind(session: LabSession, calls: CallLog) -> tuple[Machine, Lab]:
    """The Machine and the Lab of a booted lab session, their calls logged to calls."""
    if session.artifacts is None:
        raise ImagegenError("the lab session has no artifacts directory")
    machine = Machine(session.agent, session.qmp, session.machine, calls,
                      serial_log=session.machine.sockets.serial_log, artifacts=session.artifacts)
    return machine, Lab(session, machine, calls)


def run_test(test: TestFunction, machine: Machine, lab: Lab, results: Results) -> None:
    """Run one test function on a booted lab. What it raises is recorded as a failed check naming its
    file and line (the lab run records each call it made as a passed check before it)."""
    try:
        if test.wants_results:
            test.fn(machine, lab, results)
        else:
            test.fn(machine, lab)
    except (CheckFailed, NotApplicable):
        raise  # a failed required check of its own (already recorded), or a test that does not apply here
    except Exception as e:
        name, seen = failure(test, e)
        machine.log("".join(traceback.format_exception(e)))
        results.require(name, False, seen)
    if not results.checks:
        results.check(f"{test.name} returned", True, "without a machine or lab call")


def user_scenarios(tests: Sequence[TestFunction]) -> tuple[Scenario, ...]:
    """Each test function as a scenario of the lab run."""
    def runner(test: TestFunction) -> Callable[[Machine, Lab, Results], None]:
        return lambda machine, lab, results: run_test(test, machine, lab, results)

    return tuple(Scenario(t.id, t.doc, runner(t), calls_as_checks=True) for t in tests)
