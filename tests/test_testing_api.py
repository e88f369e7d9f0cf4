"""The test API of imagegen test (imagegen.testing): user test files, their results, the profile option,
the verdict's hash, and the waits."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import re
import signal
import subprocess
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import ProfileError, UsageError
from imagegen.interrupt import Interrupted
from imagegen.profile import HostState, load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.report.jsonout import write_json
from imagegen.report.junit import junit_xml
from imagegen.report.model import RunResult, ScenarioResult
from imagegen.scenarios.runner import LabRun, _groups
from imagegen.scenarios.runner import TestOptions as Options
from imagegen.scenarios.session import LabSession
from imagegen.stages.derivations import verdict_derivation
from imagegen.store import Entry
from imagegen.testing import CheckFailed, Results, TestFailure
from imagegen.testing.calls import CallLog
from imagegen.testing.errors import CommandFailed, UnitFailed, WaitTimeout
from imagegen.testing.machine import Machine
from imagegen.testing.repl import interact
from imagegen.testing.scripts import CALL_LOG, bind, load_scripts, user_scenarios
from imagegen.testing.waits import Clock, delays, poll, wait_until
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import AgentError, ExecResult
from imagegen.vm.lab import LAB_NICS, lab_profile, plan_lab
from imagegen.vm.machine import ImageFiles
from imagegen.vm.machine import Machine as Vm

REPO = Path(__file__).resolve().parents[1]
LAPTOP = REPO / "examples" / "laptop.toml"
LAPTOP_PLAN = plan_lab(load_profiles([LAPTOP]).profile)
FAILING = REPO / "tests" / "data" / "failing_checks.py"
IMAGE = Entry(Path("/nowhere") / ("1" * 32 + "-laptop-lab-image"))


def laptop_naming(*scripts: str) -> str:
    """The laptop example's text with its tests.scripts replaced by scripts."""
    text = LAPTOP.read_text()
    own = 'scripts = ["tests/laptop_checks.py"]'
    assert own in text
    return text.replace(own, f"scripts = {json.dumps(list(scripts))}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


class HostShell:
    """A guest agent whose guest is this host: the commands of a test file really run, with real exit
    statuses and output (what is tested here is what the API makes of them, not the agent)."""

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
        return ExecResult(tuple(argv), p.returncode, p.stdout, p.stderr)

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()


def session(tmp_path: Path) -> LabSession:
    """A LabSession of the laptop's lab that is never booted, its agent a HostShell."""
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    lab = LabSession(Vm(files, accel="tcg", nics=LAB_NICS, run_dir=tmp_path / "run"),
                     plan_lab(load_profiles([LAPTOP]).profile), "dhcp6c")
    lab.agent = HostShell()  # type: ignore[assignment]
    lab.artifacts = tmp_path / "artifacts"
    return lab


# --- Loading test files -------------------------------------------------------------------------

def test_a_file_gives_its_test_functions_in_the_order_it_defines_them(tmp_path: Path) -> None:
    path = write(tmp_path / "checks.py", '''
        def test_b(machine, lab):
            """Second letter first"""

        def helper(machine, lab):
            pass

        def test_a(machine, lab):
            pass

        test_alias = None
    ''')
    tests = load_scripts([path])
    assert [(t.name, t.line, t.doc) for t in tests] == [("test_b", 2, "Second letter first"),
                                                       ("test_a", 8, "test_a")]
    assert tests[0].id == "checks.py::test_b"


@pytest.mark.parametrize(("text", "message"), [
    ("def test_x(machine, lab)\n    pass\n", "checks.py:1: expected ':'"),
    ("import os\nos.environ['NOPE_NOT_SET_ANYWHERE']\n", "checks.py:2: importing the test file raised KeyError"),
    ("def check(machine, lab):\n    pass\n", "checks.py: defines no test function"),
    ("def test_x(machine):\n    pass\n", "checks.py:1: test_x must take two arguments, (machine, lab)"),
])
def test_a_broken_file_is_a_usage_error_naming_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        load_scripts([write(tmp_path / "checks.py", text)])
    assert message in str(e.value)


def test_two_files_with_the_same_name_and_function_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "checks.py", "def test_x(machine, lab):\n    pass\n")
    b = write(tmp_path / "b" / "checks.py", "def test_x(machine, lab):\n    pass\n")
    assert len(load_scripts([a, a])) == 1, "a file named twice runs once"
    with pytest.raises(UsageError, match="both define checks.py::test_x"):
        load_scripts([a, b])


# --- Running them: results, JUnit, JSON -----------------------------------------------------------

def run_file(tmp_path: Path, path: Path) -> tuple[ScenarioResult, ...]:
    """Each test function as the lab run runs it: one Machine and Lab for all, a Results each."""
    lab = session(tmp_path)
    assert lab.artifacts is not None
    run = LabRun(lab.plan, "dhcp6c", lab.machine.files, AccelChoice("tcg", "test"), Options(artifacts=lab.artifacts),
                 ConsoleReport(Console(file=io.StringIO())))
    calls = CallLog(lab.artifacts / CALL_LOG)
    api = bind(lab, calls)
    scenarios = user_scenarios(load_scripts([path]))
    for scenario in scenarios:
        run._run_one(scenario, lab, api, calls)
    return tuple(run.results[s.name] for s in scenarios)


def test_a_failing_function_names_file_line_command_and_output_and_the_others_still_run(tmp_path: Path) -> None:
    results = run_file(tmp_path, FAILING)
    assert [(r.name, r.passed) for r in results] == [
        ("failing_checks.py::test_passes_first", True),
        ("failing_checks.py::test_fails_on_purpose", False),
        ("failing_checks.py::test_still_runs_after_the_failure", True),
    ]
    failed = results[1].failed_checks()
    assert len(failed) == 1
    line = next(i for i, text in enumerate(FAILING.read_text().splitlines(), 1) if "exit 3" in text)
    assert failed[0].name.startswith(f"{FAILING}:{line}: machine.succeed(")
    assert "exited 3" in failed[0].detail
    assert "visible-stdout" in failed[0].detail and "visible-stderr" in failed[0].detail
    # Passed calls are checks too, with their time in the call log.
    assert [c.name for c in results[0].checks] == ["machine.succeed `true`"]
    log = (tmp_path / "artifacts" / CALL_LOG).read_text()
    assert "== failing_checks.py::test_fails_on_purpose" in log and "Traceback" in log

    run_result = RunResult("laptop.toml", "tcg", "test", "direct-kernel", results)
    suite = ET.fromstring(junit_xml(run_result))
    case = suite.find("testcase[@name='failing_checks.py::test_fails_on_purpose']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    assert f"failing_checks.py:{line}:" in failure.get("message", "") and "visible-stdout" in failure.get("message", "")
    assert suite.get("failures") == "1" and suite.get("tests") == "3"
    write_json(run_result, tmp_path / "run.json")
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["passed"] is False
    assert f"failing_checks.py:{line}:" in data["scenarios"][1]["checks"][-1]["name"]


def test_a_plain_assert_names_its_statement_and_a_bug_its_exception(tmp_path: Path) -> None:
    path = write(tmp_path / "checks.py", '''
        def test_assert(machine, lab):
            out = machine.succeed("echo one")
            assert out == "two\\n", f"got {out!r}"

        def test_bug(machine, lab):
            machine.no_such_method()

        def test_nothing(machine, lab):
            pass
    ''')
    assert_, bug, nothing = run_file(tmp_path, path)
    assert assert_.failed_checks()[0].name == f"{path}:4: assert out == \"two\\n\", f\"got {{out!r}}\""
    assert assert_.failed_checks()[0].detail == "got 'one\\n'"
    assert bug.failed_checks()[0].name == f"{path}:7: machine.no_such_method()"
    assert bug.failed_checks()[0].detail.startswith("AttributeError:")
    assert nothing.passed and nothing.checks[0].name == "test_nothing returned"


def test_user_tests_run_on_the_main_vm_after_its_scenarios_and_before_its_shutdown(tmp_path: Path) -> None:
    extra = user_scenarios(load_scripts([FAILING]))
    main = _groups(Options(extra=extra), LAPTOP_PLAN)[0]
    names = [s.name for s in main.scenarios]
    assert names[-1] == "clean-shutdown" and names[-4:-1] == [s.name for s in extra]
    only = _groups(Options(only=("wifi-only-boot",), extra=extra), LAPTOP_PLAN)
    assert [g.name for g in only] == ["main", "wifi-only"] and only[0].scenarios == extra


def test_no_scenarios_boots_one_vm_for_the_user_tests_alone(tmp_path: Path) -> None:
    extra = user_scenarios(load_scripts([FAILING]))
    groups = _groups(Options(builtin=False, extra=extra), LAPTOP_PLAN)
    assert [g.name for g in groups] == ["main"] and groups[0].scenarios == extra
    # Not even the clean shutdown: the machine is stopped as after any run.
    assert _groups(Options(builtin=False), LAPTOP_PLAN) == []


def _run_alone(plan, name: str, tmp_path: Path):
    """The one result of a run of scenario `name` alone on plan's lab (no image: nothing may boot)."""
    run = LabRun(plan, "dhcp6c", None, AccelChoice("tcg", "test"),  # type: ignore[arg-type]
                 Options(artifacts=tmp_path, only=(name,)), ConsoleReport(Console(file=io.StringIO(), width=200)))
    (result,) = run.run("profile.toml").scenarios
    return result


def test_a_profile_runs_the_scenarios_of_its_shape_and_a_named_one_of_another_is_not_applicable(
    tmp_path: Path,
) -> None:
    plan = plan_lab(load_profiles([REPO / "examples" / "bridge.toml"]).profile)
    bridge = [s.name for g in _groups(Options(), plan) for s in g.scenarios]
    assert bridge == ["bridge-boot", "bridge-unplug", "dhclient-release", "static-edit", "master-restart",
                      "clean-shutdown"]
    bond = [s.name for g in _groups(Options(), LAPTOP_PLAN) for s in g.scenarios]
    assert "bridge-boot" not in bond and {"failover", "wifi-only-boot", "dhclient-release"} <= set(bond)
    # Named but of the bond's shape: reported with why, and no VM is booted for it (there is no image).
    failover = _run_alone(plan, "failover", tmp_path)
    assert failover.skipped and not failover.passed
    assert failover.error == "not applicable: it proves a bond master; the lab plays bridges.br0, a bridge"
    # A second bond's scenario runs where there is one, and is not applicable where there is none.
    dock = [s.name for g in _groups(Options(), plan_lab(lab_profile(load_profiles([REPO / "examples" / "dock.toml"]))))
            for s in g.scenarios]
    assert "two-masters" in dock and "two-masters" not in bond
    two = _run_alone(LAPTOP_PLAN, "two-masters", tmp_path)
    assert two.skipped and two.error == ("not applicable: it proves a second bond of two ethernet NICs beside "
                                         "bond0, and the profile declares none")
    # Wired 802.1X runs where the wired member runs a supplicant (the dock), and is not applicable elsewhere.
    assert "wired-8021x" in dock and "wired-8021x" not in bond
    port = _run_alone(LAPTOP_PLAN, "wired-8021x", tmp_path)
    assert port.skipped and port.error == ("not applicable: it proves wired 802.1X, and enp3s0 runs no supplicant "
                                           "(interfaces.enp3s0.supplicant is not true)")


def test_member_link_cuts_the_nic_that_plays_the_member_and_names_the_ones_there_are(tmp_path: Path) -> None:
    lab = session(tmp_path)
    lab.plan = plan_lab(lab_profile(load_profiles([REPO / "examples" / "dock.toml"])))

    class Links:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bool]] = []

        def set_link(self, device: str, up: bool) -> float:
            self.sent.append((device, up))
            return 1.0

    links = Links()
    lab.qmp = links  # type: ignore[assignment]
    _, api = bind(lab, CallLog(tmp_path / CALL_LOG))
    api.member_link("enp5s0", False)
    api.member_link("enp3s0", False)
    assert links.sent == [("nic-second-b", False), ("nic-wired", False)] and not lab.wired_link_up
    with pytest.raises(TestFailure, match="no lab NIC plays wlp2s0; the lab's NICs play enp3s0, enp4s0, enp5s0"):
        api.member_link("wlp2s0", True)


# --- The profile option and the verdict's hash ------------------------------------------------------

def test_tests_scripts_merge_across_layers_relative_to_each_file(tmp_path: Path) -> None:
    base = write(tmp_path / "fleet" / "base.toml", '[tests]\nscripts = ["checks/common.py"]\n')
    write(tmp_path / "fleet" / "checks" / "common.py", "def test_x(machine, lab):\n    pass\n")
    host = tmp_path / "host.toml"
    host.write_text(laptop_naming("mine.py"))
    write(tmp_path / "mine.py", "def test_y(machine, lab):\n    pass\n")
    loaded = load_profiles([base, host])
    assert loaded.test_scripts() == (tmp_path / "fleet" / "checks" / "common.py", tmp_path / "mine.py")


@pytest.mark.parametrize(("name", "make", "message"), [
    ("missing.py", None, "no such file"),
    ("checks.txt", "file", "not a Python file"),
    ("dir.py", "dir", "not a regular file"),
])
def test_a_script_that_is_no_python_file_is_refused_naming_file_and_key(
        tmp_path: Path, name: str, make: str | None, message: str) -> None:
    host = tmp_path / "host.toml"
    host.write_text(laptop_naming(name))
    if make == "file":
        (tmp_path / name).write_text("x")
    elif make == "dir":
        (tmp_path / name).mkdir()
    if name.endswith(".txt"):
        with pytest.raises(ProfileError, match="tests.scripts"):
            load_profiles([host])
        return
    with pytest.raises(ProfileError) as e:
        load_profiles([host]).test_scripts()
    assert str(e.value).startswith(f"{host}: tests.scripts[0]: ") and message in str(e.value)


def test_a_broken_script_on_the_command_line_exits_2_before_anything_is_built(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.py", "def test_x(machine, lab)\n")
    result = CliRunner().invoke(app, ["test", str(LAPTOP), "--script", str(bad), "--store",
                                      str(tmp_path / "store")])
    assert result.exit_code == 2, result.output
    assert f"{bad}:1:" in result.stderr
    assert not (tmp_path / "store").exists()


def test_the_verdict_hash_includes_the_scripts_contents(tmp_path: Path) -> None:
    plan = plan_lab(load_profiles([LAPTOP]).profile)
    state = HostState.generate()
    script = write(tmp_path / "checks.py", "def test_x(machine, lab):\n    pass\n")

    def h(*scripts: Path) -> str:
        return verdict_derivation(IMAGE, hostname="laptop", scenarios=("failover",), uefi=False, lab_plan=plan,
                                  dhcp6_unit="dhcp6c", state=state, scripts=scripts).hash

    with_script = h(script)
    assert with_script != h() and h(script) == with_script
    script.write_text("def test_x(machine, lab):\n    machine.succeed('true')\n")
    assert h(script) != with_script
    drv = verdict_derivation(IMAGE, hostname="laptop", scenarios=("failover",), uefi=False, lab_plan=plan,
                             dhcp6_unit="dhcp6c", state=state, scripts=(script,))
    plain = hashlib.sha256(script.read_bytes()).hexdigest()
    assert plain not in json.dumps(drv.inputs["scripts"]), "a script's content is hashed only keyed"
    assert drv.inputs["scripts"][0]["content"].startswith("hmac-sha256:")


# --- The waits -------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, sleep=self.sleep)

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_waits_back_off_from_a_tenth_of_a_second_to_two_and_stop_at_the_deadline() -> None:
    fake = FakeClock()
    with pytest.raises(WaitTimeout) as e:
        wait_until("the moon", lambda: None, 10.0, last=lambda: "no moon", clock=fake.clock())
    assert fake.sleeps[:4] == pytest.approx([0.1, 0.15, 0.225, 0.3375])
    assert max(fake.sleeps) == 2.0 and fake.t == pytest.approx(10.0)
    assert e.value.polls == len(fake.sleeps) + 1
    assert "waiting for the moon" in str(e.value) and "no moon" in str(e.value)
    assert list(zip(range(3), delays(1, 2, 3), strict=False)) == [(0, 1), (1, 2), (2, 3)]


def test_a_wait_returns_the_value_the_condition_gave_and_how_long_it_took() -> None:
    fake = FakeClock()
    answers = iter([None, False, "yes"])
    waited = wait_until("an answer", lambda: next(answers), 10.0, clock=fake.clock())
    assert (waited.value, waited.polls, waited.seconds) == ("yes", 3, pytest.approx(0.25))


class SystemdAgent:
    """A guest agent that answers systemctl as a unit going through the given states would."""

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.argvs: list[tuple[str, ...]] = []

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        self.argvs.append(tuple(argv))
        if argv[1] == "status":
            return ExecResult(tuple(argv), 3, "× web.service - Web\n   Active: failed (Result: exit-code)\n", "")
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        active, sub = state.split("/")
        return ExecResult(tuple(argv), 0, f"LoadState=loaded\nActiveState={active}\nSubState={sub}\n", "")

    def read_file(self, path: str) -> bytes:
        raise AssertionError("not used")


def machine_on(agent: SystemdAgent, fake: FakeClock, tmp_path: Path) -> Machine:
    return Machine(agent, qmp=None, power=None, calls=CallLog(), serial_log=tmp_path / "serial.log",  # type: ignore[arg-type]
                   artifacts=tmp_path, clock=fake.clock())


def test_wait_for_unit_polls_until_active(tmp_path: Path) -> None:
    fake = FakeClock()
    agent = SystemdAgent(["inactive/dead", "activating/start", "active/running"])
    assert machine_on(agent, fake, tmp_path).wait_for_unit("web.service", timeout=60) == pytest.approx(0.25)
    assert agent.argvs[0] == ("systemctl", "show", "--property=LoadState,ActiveState,SubState", "--",
                              "web.service")


def test_wait_for_unit_fails_at_once_on_a_failed_unit_quoting_its_status(tmp_path: Path) -> None:
    fake = FakeClock()
    with pytest.raises(UnitFailed) as e:
        machine_on(SystemdAgent(["activating/start", "failed/failed"]), fake, tmp_path).wait_for_unit(
            "web.service", timeout=900)
    assert "Active: failed (Result: exit-code)" in str(e.value)
    assert fake.t < 1.0, "no waiting for the timeout"


def test_wait_for_unit_times_out_naming_the_last_state(tmp_path: Path) -> None:
    fake = FakeClock()
    with pytest.raises(WaitTimeout, match="ActiveState=inactive SubState=dead"):
        machine_on(SystemdAgent(["inactive/dead"]), fake, tmp_path).wait_for_unit("web.service", timeout=5)


def test_succeed_quotes_command_status_stdout_and_stderr(tmp_path: Path) -> None:
    machine = Machine(HostShell(), qmp=None, power=None, calls=CallLog(), serial_log=tmp_path / "s",  # type: ignore[arg-type]
                      artifacts=tmp_path)
    assert machine.succeed("echo a", "echo b") == "a\nb\n"
    assert machine.execute("echo out; exit 4") == (4, "out\n")
    with pytest.raises(CommandFailed) as e:
        machine.succeed("echo out; echo err >&2; exit 5")
    assert (e.value.status, e.value.stdout, e.value.stderr) == (5, "out\n", "err\n")
    assert "`echo out; echo err >&2; exit 5` exited 5" in str(e.value)
    with pytest.raises(CommandFailed, match="exited 0, expected non-zero"):
        machine.fail("true")


def test_console_text_waits_consume_what_they_matched(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"\x1b[0;32m  OK  \x1b[0m] Started x.\r\nlaptop login: \n")
    fake = FakeClock()
    machine = Machine(HostShell(), qmp=None, power=None, calls=CallLog(), serial_log=log,  # type: ignore[arg-type]
                      artifacts=tmp_path, clock=fake.clock())
    assert machine.wait_for_console_text(r"OK  \] Started") == "OK  ] Started"
    assert machine.wait_for_console_text(r"\w+ login:") == "laptop login:"
    with pytest.raises(WaitTimeout):
        machine.wait_for_console_text(r"login:", timeout=3)
    out = machine.copy_from_vm(str(log), "copies/serial.txt")
    assert out == tmp_path / "copies" / "serial.txt" and out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        machine.copy_from_vm(str(log), "../outside")


# --- The interactive prompt ----------------------------------------------------------------------------

def test_the_prompt_runs_lines_with_machine_and_lab_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(['out = machine.succeed("echo hi")', 'print(out.strip() + "!", lab.plan.bond)',
                  'machine.succeed("echo gone >&2; exit 4")', 'print("still here")'])

    def read(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    interact(*bind(session(tmp_path), CallLog(tmp_path / CALL_LOG)), read=read)
    out, err = capsys.readouterr()
    assert "hi! bond0" in out and "still here" in out
    # A failed check is its message, not a traceback.
    assert "CommandFailed: machine: `echo gone >&2; exit 4` exited 4" in err and "Traceback" not in err
    assert "machine.succeed `echo hi`" in (tmp_path / CALL_LOG).read_text()


class SlowAgent(HostShell):
    """An agent that does not answer its first calls in time, as a busy emulated guest's does."""

    def __init__(self, misses: int) -> None:
        self.misses = misses

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        if self.misses:
            self.misses -= 1
            raise AgentError("guest agent did not answer guest-exec within 30 s")
        return super().exec(argv, timeout, input)


class Power:
    def __init__(self, running: bool) -> None:
        self.running = running


def test_a_wait_outlasts_an_agent_that_does_not_answer_but_not_a_vm_that_is_gone(tmp_path: Path) -> None:
    def machine(running: bool) -> Machine:
        return Machine(SlowAgent(2), qmp=None, power=Power(running), calls=CallLog(),  # type: ignore[arg-type]
                       serial_log=tmp_path / "s", artifacts=tmp_path, clock=FakeClock().clock())

    assert machine(True).wait_until_succeeds("echo up", timeout=30) == "up\n"
    with pytest.raises(AgentError):
        machine(False).wait_until_succeeds("echo up", timeout=30)


@pytest.mark.parametrize("during", ["typing", "running"])
def test_ctrl_c_drops_a_line_at_the_prompt_but_sigterm_ends_it(tmp_path: Path, during: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    term = Interrupted(signal.SIGTERM)
    stop: object = term if during == "typing" else (
        "import signal; from imagegen.interrupt import Interrupted; raise Interrupted(signal.SIGTERM)")
    lines = iter([KeyboardInterrupt(), 'print("after ctrl-c")', stop, 'print("never")'])

    def read(prompt: str) -> str:
        item = next(lines)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, str)
        return item

    with pytest.raises(Interrupted) as e:
        interact(*bind(session(tmp_path), CallLog()), read=read)
    assert e.value.signum == signal.SIGTERM
    out, err = capsys.readouterr()
    assert "after ctrl-c" in out and "never" not in out and "KeyboardInterrupt" in err


def test_the_laptop_example_names_its_own_checks() -> None:
    scripts = load_profiles([LAPTOP]).test_scripts()
    assert scripts == (LAPTOP.parent / "tests" / "laptop_checks.py",)
    assert len(load_scripts(scripts)) == 13


# --- The typed readings the scenarios use, and Results ----------------------------------------------

class GuestOf(HostShell):
    """A guest agent answering the typed readings from canned output, by the command's first word."""

    def __init__(self, answers: dict[str, str], now: float = 0.0) -> None:
        self.answers = answers
        self.now = now
        self.argvs: list[tuple[str, ...]] = []

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        self.argvs.append(tuple(argv))
        key = argv[0] if argv[0] != "cat" else argv[1]
        if key not in self.answers:
            return ExecResult(tuple(argv), 1, "", f"{key}: No such file or directory")
        return ExecResult(tuple(argv), 0, self.answers[key], "")

    def time(self) -> float:
        return self.now


BONDING = """\
Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)
Primary Slave: enp3s0 (primary_reselect always)
Currently Active Slave: wlp2s0
MII Status: up
MII Polling Interval (ms): 100

Slave Interface: wlp2s0
MII Status: up
Link Failure Count: 0
Permanent HW addr: 02:00:00:00:00:00
"""
UNITS = ("Id=master@bond0.service\nActiveState=active\nSubState=exited\n\n"
         "Id=dhclient@bond0.service\nActiveState=inactive\nSubState=dead\n")
DMESG = ("[   12.500000] bond0: (slave wlp2s0): making interface the new active one\n"
         "[   12.600000] bond1: (slave x): making interface the new active one\n"
         "[   20.000000] imagegen-clock 1700000020.250000\n")


def test_the_typed_readings_parse_what_the_guest_prints(tmp_path: Path) -> None:
    guest = GuestOf({"/proc/net/bonding/bond0": BONDING, "systemctl": UNITS, "bash": DMESG,
                     "ip": '[{"ifname": "bond0", "address": "52:54:00:12:00:01", "flags": ["UP"], '
                           '"addr_info": [{"family": "inet", "local": "192.168.0.2", "prefixlen": 24}]}]'},
                    now=1000.0)
    calls = CallLog(tmp_path / CALL_LOG)
    machine = Machine(guest, qmp=None, power=None, calls=calls, serial_log=tmp_path / "s",  # type: ignore[arg-type]
                      artifacts=tmp_path)
    bond = machine.bond("bond0")
    assert bond is not None and bond.active == "wlp2s0" and bond.fail_over_mac == "active"
    assert machine.bond("bond9") is None
    link = machine.link("bond0")
    assert link is not None and [str(a) for a in link.with_family(4)] == ["192.168.0.2/24"]
    assert machine.link("wlan9") is None
    assert machine.unit_states("master@bond0.service", "dhclient@bond0.service", "gone.service") == {
        "master@bond0.service": "active/exited", "dhclient@bond0.service": "inactive/dead",
        "gone.service": "missing"}
    # The clock mark ties printk's 20.0 s to the wall clock's …020.25: the switch at 12.5 s is 7.5 s before.
    (mark,) = machine.kernel_marks("bond0")
    assert (mark.kind, mark.slave) == ("active", "wlp2s0") and mark.time == pytest.approx(1700000012.75)
    offset = machine.clock_offset()
    # The guest's clock says 1000.0 now: the host's now, moved onto it, is that (within the round trip).
    assert offset.uncertainty >= 0 and offset.guest(time.time()) == pytest.approx(1000.0, abs=1.0)
    log = (tmp_path / CALL_LOG).read_text()
    assert "machine.bond bond0 (" in log and "active slave wlp2s0" in log and "machine.kernel_marks bond0" in log


def test_poll_answers_instead_of_raising_and_outlasts_a_busy_agent(tmp_path: Path) -> None:
    fake = FakeClock()
    polled = poll(lambda: None, 2.0, 0.5, clock=fake.clock())
    assert not polled and polled.value is None and polled.seconds > 2.0 and polled.polls == 6
    answers = iter([[], [], ["10.0.0.2/24"]])
    found = poll(lambda: next(answers), 10.0, 0.5, clock=fake.clock())
    assert found and found.value == ["10.0.0.2/24"] and found.polls == 3

    def machine(running: bool) -> Machine:
        return Machine(SlowAgent(2), qmp=None, power=Power(running), calls=CallLog(),  # type: ignore[arg-type]
                       serial_log=tmp_path / "s", artifacts=tmp_path, clock=FakeClock().clock())

    up = machine(True)
    assert up.poll(lambda: up.execute("echo up")[1], 30).value == "up\n"
    gone = machine(False)
    with pytest.raises(AgentError):
        gone.poll(lambda: gone.execute("echo up")[1], 30)


def test_results_record_checks_and_figures_and_a_required_check_stops(tmp_path: Path) -> None:
    seen: list[str] = []
    results = Results(on_check=lambda c: seen.append(c.name))
    assert not results.passed, "nothing checked is no pass"
    assert results.check("one", True, "fine") and not results.check("two", False, "broken")
    results.figure("gap_ms", 12.5)
    with pytest.raises(CheckFailed, match="three: needed"):
        results.require("three", False, "needed")
    assert seen == ["one", "two", "three"] and results.figures == {"gap_ms": 12.5} and not results.passed


def test_a_test_function_may_take_results_for_its_own_checks_and_figures(tmp_path: Path) -> None:
    path = write(tmp_path / "checks.py", '''
        def test_measures(machine, lab, results):
            """Records a figure and a named check"""
            out = machine.succeed("echo 42")
            results.figure("answer", int(out))
            results.check("the answer is 42", out.strip() == "42", out.strip())

        def test_checks_softly(machine, lab, results):
            results.check("first holds", True)
            results.check("second does not", False, "as written")
            machine.succeed("true")

        def test_requires(machine, lab, results):
            results.require("needed", False, "missing")
            machine.succeed("never runs")
    ''')
    measures, softly, requires = run_file(tmp_path, path)
    assert measures.passed and measures.figures == {"answer": 42}
    assert [c.name for c in measures.checks] == ["machine.succeed `echo 42`", "the answer is 42"]
    assert not softly.passed and [c.name for c in softly.checks] == [
        "first holds", "second does not", "machine.succeed `true`"], "a failed check does not stop the function"
    assert not requires.passed and [c.name for c in requires.checks] == ["needed"]


def test_a_test_function_that_does_not_apply_says_why_and_is_neither_passed_nor_failed(tmp_path: Path) -> None:
    path = write(tmp_path / "checks.py", '''
        def test_needs_a_bridge(machine, lab, results):
            machine.succeed("true")
            results.not_applicable("the profile declares no [bridges]")
            machine.succeed("never runs")

        def test_fails_then_gives_up(machine, lab, results):
            results.check("held", False)
            results.not_applicable("too late")
    ''')
    skipped, failed = run_file(tmp_path, path)
    assert skipped.skipped and not skipped.passed
    assert skipped.error == "not applicable: the profile declares no [bridges]"
    assert [c.name for c in skipped.checks] == ["machine.succeed `true`"]
    assert not failed.skipped and not failed.passed, "a failed check is not hidden by a later not_applicable"


def test_every_scenario_is_a_function_of_the_public_objects() -> None:
    # The built-in scenarios take (machine, lab, results) and reach nothing else of the lab.
    from imagegen.scenarios import catalog

    source = Path(catalog.__file__).read_text()
    for internal in ("LabSession", "session", ".qmp", ".agent", "._", "imagegen.vm", "imagegen.testing."):
        assert internal not in source, internal
    for s in catalog.SCENARIOS:
        assert list(inspect.signature(s.run).parameters) == ["machine", "lab", "results"], s.name


def test_the_scenarios_call_only_what_the_api_page_documents() -> None:
    from imagegen.scenarios import catalog
    from imagegen.testing import Lab, Probe

    page = (REPO / "docs" / "testing-api.md").read_text()
    source = Path(catalog.__file__).read_text()
    used = set(re.findall(r"\b(?:machine|lab|results|probe|probe6|peer)\.(\w+)", source))
    assert {"bond", "poll", "probe", "timeline", "kernel_marks", "figure"} <= used
    undocumented = {name for name in used if f"`{name}" not in page}
    assert not undocumented, f"the scenarios use {sorted(undocumented)}, which docs/testing-api.md does not list"
    for cls in (Machine, Lab, Probe, Results):
        public = {n for n in vars(cls) if not n.startswith("_")} - {"checks", "figures", "on_check", "passed"}
        missing = {n for n in public if f"`{n}" not in page}
        assert not missing, f"{cls.__name__}: {sorted(missing)} not in docs/testing-api.md"


def test_the_kiosk_example_names_its_own_checks() -> None:
    kiosk = LAPTOP.parent / "kiosk.toml"
    scripts = load_profiles([LAPTOP.parent / "base.toml", kiosk]).test_scripts()
    assert scripts == (LAPTOP.parent / "tests" / "kiosk_checks.py",)
    assert [t.name for t in load_scripts(scripts)] == [
        "test_cage_runs_in_a_logind_session_on_tty1", "test_the_page_is_on_the_screen",
        "test_the_kiosk_user_has_no_way_to_a_shell", "test_the_console_cannot_be_switched_away_from_the_kiosk"]
