"""The wifi-only VM boots beside the main VM's scenarios: when it starts, when it does not, and that both
VMs end with the run whatever ends it. The VMs are stand-ins; the runner, its threads and its order are real."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from imagegen import reaper
from imagegen.errors import ImagegenError
from imagegen.profile import load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.report.model import ScenarioResult
from imagegen.scenarios import runner
from imagegen.scenarios.catalog import Scenario
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import AgentError, GuestGone
from imagegen.vm.lab import plan_lab
from imagegen.vm.machine import ImageFiles

LAPTOP = Path(__file__).parents[1] / "examples/laptop.toml"


class _World:
    """What the stand-in VMs did, in order, and how the next one started is to behave."""

    def __init__(self, tmp_path: Path) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.tmp_path = tmp_path
        self.start_fails = False
        # The wifi-only QEMU ignores its quit (and the run is cut short before it is killed).
        self.ignores_shutdown = False
        # The wifi-only guest started ahead dies while it boots.
        self.dies_booting = False
        self.threads: dict[str, str] = {}
        # The signals blocked on the thread that waited for each VM's agent.
        self.blocked: dict[str, set[int]] = {}
        # The wifi-only guest started ahead never answers its agent (the wait gives up at once).
        self.agent_silent = False

    def log(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


class _Machine:
    world: _World

    def __init__(self, files: object, **kwargs: object) -> None:
        self.name = ""
        self.off = threading.Event()
        log = self.world.tmp_path / "serial.log"
        log.touch()
        self.sockets = type("Sockets", (), {"serial_log": log, "agent": self.world.tmp_path / "qga.sock"})()
        self.exit_status = None

    @property
    def running(self) -> bool:
        return not self.off.is_set()

    def shutdown(self) -> None:
        if not self.off.is_set():
            self.world.log(f"{self.name}: shut down")
        if not (self.world.ignores_shutdown and self.name == "wifi-only"):
            self.off.set()

    def __enter__(self) -> _Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _Lab:
    """A LabSession whose guest answers its agent at once, except the wifi-only one started ahead: that
    one answers only once the test lets it (booting), or never (then only shutting it down ends the wait)."""

    world: _World
    answer = threading.Event()
    answered = threading.Event()

    def __init__(self, machine: _Machine, plan: object, dhcp6_unit: str) -> None:
        self.machine = machine
        self.artifacts: Path | None = None
        self.boot_seconds = 0.0
        self.scale = 1.0
        self.started: float | None = None

    def start(self, *, wired_link: bool = True) -> None:
        self.machine.name = "main" if wired_link else "wifi-only"
        if self.world.start_fails:
            self.world.log(f"{self.machine.name}: did not start")
            raise ImagegenError("QEMU exited at once")
        self.world.log(f"{self.machine.name}: started")
        self.started = time.monotonic()

    def wait_booted(self, agent_timeout: float = 900.0, agent: object = None,
                    alive: Callable[[], bool] | None = None) -> float:
        self.world.threads[self.machine.name] = threading.current_thread().name
        self.world.blocked[self.machine.name] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        alive = alive or (lambda: self.machine.running)
        if self.machine.name == "wifi-only" and agent is not None:
            if self.world.agent_silent:
                raise AgentError("guest agent not answering after 900 s")
            if self.world.dies_booting:
                self.world.log("wifi-only: died booting")
                raise GuestGone("QEMU was killed by SIGSEGV 3 s after start, before the guest agent answered")
            # Bounded, so that a run which leaves this VM running fails the test rather than hanging it.
            for _ in range(1000):
                if _Lab.answer.wait(0.01):
                    break
                if not alive():
                    raise GuestGone("QEMU exited before the guest agent answered")
            else:
                self.world.log("wifi-only: left running")
                raise GuestGone("the test gave up on this guest")
        self.world.log(f"{self.machine.name}: agent answered")
        if self.machine.name == "wifi-only":
            _Lab.answered.set()
        return 1.0

    def boot(self, *, wired_link: bool = True, agent_timeout: float = 900.0) -> float:
        self.start(wired_link=wired_link)
        return self.wait_booted(agent_timeout)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _World:
    w = _World(tmp_path)
    _Machine.world = _Lab.world = w
    _Lab.answer, _Lab.answered = threading.Event(), threading.Event()
    monkeypatch.setattr(runner, "Machine", _Machine)
    monkeypatch.setattr(runner, "LabSession", _Lab)
    monkeypatch.setattr(runner, "GuestAgent", lambda path: type("Agent", (), {"close": lambda self: None})())
    monkeypatch.setattr(runner, "bind", lambda session, calls: (None, None))
    monkeypatch.setattr(runner.LabRun, "_screenshot", lambda self, group, lab: True)
    monkeypatch.setattr(runner.LabRun, "_hold", lambda self, machine: w.log("held"))
    return w


def _scenario_runs(world: _World, monkeypatch: pytest.MonkeyPatch,
                   raises: type[BaseException] | None = None) -> None:
    """Each scenario logs itself and passes; the main VM's failover lets the wifi-only guest answer (or,
    with raises, ends the run there)."""

    def run_one(self: runner.LabRun, scenario: Scenario, session: _Lab, api: object, calls: object) -> None:
        world.log(f"{session.machine.name}: {scenario.name}")
        if scenario.name == "failover":
            if raises is not None:
                raise raises()
            _Lab.answer.set()
            if "wifi-only: started" in world.events and not (world.dies_booting or world.agent_silent):
                assert _Lab.answered.wait(10)
        self.results[scenario.name] = ScenarioResult(scenario.name, scenario.title, passed=True, seconds=0.0)

    monkeypatch.setattr(runner.LabRun, "_run_one", run_one)


def _run(tmp_path: Path, **options: object) -> tuple[runner.RunResult, str]:
    plan = plan_lab(load_profiles([LAPTOP]).profile)
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    out = io.StringIO()
    opts = runner.TestOptions(artifacts=tmp_path / "evidence", only=("failover", "wifi-only-boot"),
                              **options)  # type: ignore[arg-type]
    result = runner.LabRun(plan, "dhcp6c", files, AccelChoice("tcg", "test"), opts,
                           ConsoleReport(Console(file=out, width=200))).run("laptop.toml")
    return result, out.getvalue()


def test_the_wifi_only_vm_starts_once_the_main_agent_answers_and_boots_beside_its_scenarios(
        tmp_path: Path, world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    _scenario_runs(world, monkeypatch)
    result, out = _run(tmp_path)

    assert world.events == [
        "main: started", "main: agent answered",
        "wifi-only: started",  # before the main VM's first scenario, not after its last
        "main: failover", "wifi-only: agent answered",
        "main: shut down",
        "wifi-only: wifi-only-boot", "wifi-only: shut down"]
    assert world.threads["wifi-only"] != world.threads["main"], "the ahead VM is waited for on a thread of its own"
    # A Ctrl-C must reach the run's thread, which blocks it only while it forks QEMU (Child.launch).
    assert set(reaper.STOP_SIGNALS) <= world.blocked["wifi-only"]
    assert "the wifi-only VM (wired link off) boots beside these scenarios" in out
    assert all(s.passed for s in result.scenarios)
    assert result.figures["wifi-only_vm_agent_ready_s"] == 1.0


@pytest.mark.parametrize("options", [{"overlap": False}, {"keep": True}, {"debug": lambda lab: None}],
                         ids=["sequential", "keep-vm", "debug"])
def test_no_vm_boots_ahead_with_sequential_keep_vm_or_debug(tmp_path: Path, world: _World,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            options: dict[str, object]) -> None:
    _scenario_runs(world, monkeypatch)
    _Lab.answer.set()
    _, out = _run(tmp_path, **options)

    started = [e for e in world.events if e.endswith(": started")]
    assert len(started) == 2
    # Each VM starts only once the one before it has ended.
    for name in ("main", "wifi-only"):
        other = "wifi-only" if name == "main" else "main"
        if world.events.index(f"{name}: started") > world.events.index(f"{other}: started"):
            assert world.events.index(f"{other}: shut down") < world.events.index(f"{name}: started")
    assert "boots beside" not in out


def test_a_vm_that_does_not_start_ahead_boots_in_its_turn(tmp_path: Path, world: _World,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _scenario_runs(world, monkeypatch)

    def start_fails_once(self: runner.LabRun, *args: object) -> object:
        world.start_fails = True
        try:
            return original(self, *args)
        finally:
            world.start_fails = False

    original = runner.LabRun._start_ahead
    monkeypatch.setattr(runner.LabRun, "_start_ahead", start_fails_once)
    result, out = _run(tmp_path)

    assert world.events.count("wifi-only: did not start") == 1
    assert world.events.index("main: shut down") < world.events.index("wifi-only: started")
    assert "the wifi-only VM did not start ahead of its turn (QEMU exited at once); it boots in its turn" in out
    assert all(s.passed for s in result.scenarios)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_both_vms_end_with_a_run_that_is_interrupted(tmp_path: Path, world: _World,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     interrupt: type[BaseException]) -> None:
    _scenario_runs(world, monkeypatch, raises=interrupt)
    with pytest.raises(interrupt):
        _run(tmp_path)

    assert "wifi-only: started" in world.events
    assert {"main: shut down", "wifi-only: shut down"} <= set(world.events)
    assert "wifi-only: agent answered" not in world.events
    assert "wifi-only: left running" not in world.events
    assert not [t for t in threading.enumerate() if t.name.startswith("imagegen-boot")], \
        "the wait for the ahead VM's agent ended with the run"


def test_the_wait_for_a_vm_started_ahead_ends_with_the_run_even_if_its_qemu_does_not(
        tmp_path: Path, world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A QEMU that ignores its quit, and a second Ctrl-C before it is killed: the wait for its agent must
    # not hold the run's end (the pool's join) until the agent's timeout.
    world.ignores_shutdown = True
    _scenario_runs(world, monkeypatch, raises=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)

    assert "wifi-only: left running" not in world.events, "the wait went on after the run ended"
    assert not [t for t in threading.enumerate() if t.name.startswith("imagegen-boot")]


def test_a_vm_started_ahead_that_dies_booting_boots_again_in_its_turn(
        tmp_path: Path, world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.dies_booting = True
    _scenario_runs(world, monkeypatch)
    result, out = _run(tmp_path)

    assert world.events.count("wifi-only: started") == 2 and "wifi-only: died booting" in world.events
    # The second boot is an ordinary one, in its turn, after the main VM has gone.
    again = len(world.events) - 1 - world.events[::-1].index("wifi-only: started")
    assert world.events.index("main: shut down") < again
    assert world.events[again + 1:] == ["wifi-only: agent answered", "wifi-only: wifi-only-boot",
                                        "wifi-only: shut down"]
    assert "wifi-only VM died while booting, booting it again: QEMU was killed by SIGSEGV" in out
    assert result.figures["wifi-only_vm_boot_retries"] == 1
    assert all(s.passed for s in result.scenarios)


def test_a_vm_started_ahead_that_never_answers_fails_with_the_seconds_since_its_start(
        tmp_path: Path, world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.agent_silent = True
    _scenario_runs(world, monkeypatch)
    original = runner.LabRun._run_one

    def slow_main(self: runner.LabRun, scenario: Scenario, *args: object) -> None:
        time.sleep(0.5)  # the main VM's scenarios take their time while the other VM "boots"
        original(self, scenario, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.LabRun, "_run_one", slow_main)
    result, _ = _run(tmp_path)

    wifi = next(s for s in result.scenarios if s.name == "wifi-only-boot")
    assert not wifi.passed and wifi.error == "the wifi-only VM did not boot: guest agent not answering after 900 s"
    assert wifi.seconds >= 0.5, "counted from the VM's start, not from when its turn came"


@pytest.mark.parametrize("overlap", [True, False], ids=["beside", "sequential"])
def test_a_starved_guest_names_sequential_only_when_two_vms_were_up(
        tmp_path: Path, world: _World, monkeypatch: pytest.MonkeyPatch, overlap: bool) -> None:
    (tmp_path / "serial.log").write_text(f"[  61.2] watchdog: {runner.STARVATION_MARKS[0]} CPU#1 stuck for 23s\n")
    _scenario_runs(world, monkeypatch)
    _Lab.answer.set()
    passing = runner.LabRun._run_one

    def wifi_fails(self: runner.LabRun, scenario: Scenario, *args: object) -> None:
        passing(self, scenario, *args)  # type: ignore[arg-type]
        if scenario.name == "wifi-only-boot":  # a failed group has its console read for stalls
            self.results[scenario.name] = ScenarioResult(scenario.name, scenario.title, passed=False, seconds=0.0)

    monkeypatch.setattr(runner.LabRun, "_run_one", wifi_fails)
    _, out = _run(tmp_path, overlap=overlap)
    said = " ".join(out.split())  # the console wraps long notes

    assert "wifi-only VM: the guest kernel reported 1 CPU stall(s)" in said
    assert ("or with --sequential (this run had two VMs up at once)" in said) is overlap
