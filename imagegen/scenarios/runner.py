"""Run the scenarios: boot the lab VMs they need, run each scenario, keep evidence of failures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from imagegen import reaper
from imagegen.errors import ImagegenError
from imagegen.interrupt import Terminated
from imagegen.report.artifacts import save_file
from imagegen.report.console import ConsoleReport
from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.scenarios.catalog import BY_NAME, SCENARIOS, Scenario
from imagegen.scenarios.session import LabSession
from imagegen.testing.calls import Call, CallLog
from imagegen.testing.lab import Lab
from imagegen.testing.machine import Machine as ApiMachine
from imagegen.testing.results import CheckFailed, NotApplicable, Results
from imagegen.testing.scripts import CALL_LOG, bind
from imagegen.vm.accel import AccelChoice
from imagegen.vm.agent import GuestAgent, GuestGone
from imagegen.vm.lab import LabPlan
from imagegen.vm.machine import ImageFiles, Machine, QemuExited

# Which scenarios share one boot. The wifi-only boot needs its own VM: the wired link is off from the start.
MAIN_VM = ("boot-wired-primary", "bridge-boot", "bridge-unplug", "wired-8021x", "failover", "failback", "hotplug",
           "ap-lost", "rfkill", "dhclient-release", "static-edit", "supplicant-restart", "master-restart",
           "card-insert", "two-masters", "clean-shutdown")
WIFI_ONLY_VM = ("wifi-only-boot",)
# What the guest kernel prints when its virtual CPUs get no host CPU for many seconds.
STARVATION_MARKS = ("BUG: soft lockup", "rcu_preempt detected stalls")
# Boots of one VM before its scenarios are failed: a guest that dies before its agent answers gets one
# more (see _run_group_once).
BOOT_ATTEMPTS = 2
# Scenarios that power their VM off: the run's last screenshot of that VM is taken before them.
POWERS_OFF = ("clean-shutdown",)


@dataclass(frozen=True)
class TestOptions:
    uefi: bool = False
    keep: bool = False
    artifacts: Path = Path("artifacts")
    only: tuple[str, ...] = ()
    # False (--no-scenarios): no built-in scenario at all, only the user's functions in extra.
    builtin: bool = True
    # The user's test functions (imagegen.testing.scripts), run on the main VM after its scenarios and
    # before its clean shutdown.
    extra: tuple[Scenario, ...] = ()
    # --debug: called with the lab at the run's first failure, while the VM still runs (a prompt).
    debug: Callable[[LabSession], None] | None = None
    # False (--sequential): each VM starts only when the one before it is shut down (one VM's memory at
    # a time); by default the next VM boots beside the scenarios of the one before.
    overlap: bool = True


@dataclass(frozen=True)
class _Group:
    name: str
    wired_link: bool
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True)
class _Ahead:
    """A group's VM started before its turn: its guest boots while the VM before it runs scenarios, and
    booted is the wait for its guest agent (on a thread of its own; seconds from its start)."""

    lab: LabSession
    booted: Future[float]


def _block_stop_signals() -> None:
    """The boot thread never takes Ctrl-C or SIGTERM: Child.launch blocks them on the run's thread while
    it forks QEMU, and a signal the kernel handed to this thread instead would interrupt that launch
    before the new QEMU has an owner. Python runs the handlers on the run's thread either way."""
    signal.pthread_sigmask(signal.SIG_BLOCK, reaper.STOP_SIGNALS)


def _wait_booted_here(lab: LabSession, agent_timeout: float, stop: threading.Event) -> float:
    """lab.wait_booted on a pool thread, with a connection and an event loop of its own, both closed here:
    the run's thread then connects its own, and shutting the VM down never touches this one. stop ends
    the wait as a dead VM does (the run is ending), whatever QEMU does about its quit."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    agent = GuestAgent(lab.machine.sockets.agent)
    try:
        return lab.wait_booted(agent_timeout, agent=agent,
                               alive=lambda: not stop.is_set() and lab.machine.running)
    finally:
        agent.close()
        asyncio.set_event_loop(None)
        loop.close()


def applicable(names: set[str], plan: LabPlan) -> set[str]:
    """The scenarios of names that prove something of this lab's shape (its kind of master, a second one)."""
    return {n for n in names if BY_NAME[n].applies(plan)}


def _groups(options: TestOptions, plan: LabPlan) -> list[_Group]:
    chosen = applicable(set(options.only or BY_NAME), plan) if options.builtin else set()
    main = tuple(BY_NAME[n] for n in MAIN_VM if n in chosen and not (options.keep and n == "clean-shutdown"))
    if options.extra:
        last = main[-1:] if main[-1:] == (BY_NAME["clean-shutdown"],) else ()
        main = main[:len(main) - len(last)] + options.extra + last
    wifi = tuple(BY_NAME[n] for n in WIFI_ONLY_VM if n in chosen)
    groups = [_Group("main", True, main), _Group("wifi-only", False, wifi)]
    if options.keep:
        # The VM that is kept must be the last one started.
        groups.reverse()
    return [g for g in groups if g.scenarios]


class LabRun:
    def __init__(self, plan: LabPlan, dhcp6_unit: str, files: ImageFiles, accel: AccelChoice,
                 options: TestOptions, report: ConsoleReport) -> None:
        self.plan = plan
        self.dhcp6_unit = dhcp6_unit
        self.files = files
        self.accel = accel
        self.options = options
        self.report = report
        self.results: dict[str, ScenarioResult] = {}
        self.figures: dict[str, float | int | str] = {}
        self.failed_any = False
        self.debugged = False
        # Whether a VM of this run booted beside another one (a CPU-starved guest may be the run's own doing).
        self.overlapped = False

    def _artifacts(self) -> Path:
        self.failed_any = True
        self.options.artifacts.mkdir(parents=True, exist_ok=True)
        return self.options.artifacts

    def run(self, profile_label: str) -> RunResult:
        groups = _groups(self.options, self.plan)
        # The scenarios of another shape than the profile's are reported not applicable, with why, rather
        # than dropped without a word; no VM boots for them.
        named = set(self.options.only or BY_NAME) if self.options.builtin else set()
        for s in SCENARIOS:
            if s.name in named and not s.applies(self.plan):
                self._not_applicable(s)
        with contextlib.ExitStack() as stack:
            # The pool's exit waits for its thread, so it is entered first: the VMs are shut down before
            # it (LIFO), which ends any wait for their agent.
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagegen-boot",
                                                          initializer=_block_stop_signals))
            ahead: dict[str, _Ahead] = {}

            def start_next(i: int) -> None:
                if i + 1 < len(groups) and self._overlap():
                    if (started := self._start_ahead(groups[i + 1], pool, stack)) is not None:
                        ahead[groups[i + 1].name] = started

            for i, group in enumerate(groups):
                keep = self.options.keep and i == len(groups) - 1
                self._run_group(group, keep, ahead.pop(group.name, None), functools.partial(start_next, i))
        ordered = tuple(self.results[s.name] for s in (*SCENARIOS, *self.options.extra) if s.name in self.results)
        return RunResult(profile=profile_label, accel=self.accel.accel, accel_reason=self.accel.reason,
                         boot="uefi" if self.options.uefi else "direct-kernel", scenarios=ordered,
                         artifacts=str(self.options.artifacts.resolve()) if self.failed_any else None,
                         figures=self.figures)

    def _not_applicable(self, scenario: Scenario) -> None:
        """A scenario of another shape than the profile's: reported, with why, and no VM booted for it."""
        p = self.plan
        if p.kind in scenario.shapes and scenario.needs_wired_auth and p.wired_auth is None:
            why = (f"it proves wired 802.1X, and {p.wired} runs no supplicant (interfaces.{p.wired}.supplicant "
                   "is not true)")
        elif p.kind in scenario.shapes:
            why = f"it proves a second bond of two ethernet NICs beside {p.bond}, and the profile declares none"
        else:
            why = f"it proves a {' or '.join(scenario.shapes)} master; the lab plays {p.section}.{p.bond}, a {p.kind}"
        result = ScenarioResult(scenario.name, scenario.title, passed=False, skipped=True, seconds=0.0,
                                error=f"not applicable: {why}")
        self.report.start_scenario(scenario.name, scenario.title)
        self.results[scenario.name] = result
        self.report.end_scenario(result)

    def _overlap(self) -> bool:
        """Whether the next group's VM boots while this one's scenarios run. Not with --sequential, nor
        with --keep-vm (the kept VM must be the last one started) or --debug (the prompt holds the run for
        as long as it likes)."""
        return self.options.overlap and not self.options.keep and self.options.debug is None

    def _start_ahead(self, group: _Group, pool: ThreadPoolExecutor,
                     stack: contextlib.ExitStack) -> _Ahead | None:
        """Start group's VM now, to boot beside the scenarios of the VM before it. Most of those wait on
        the guest (a lease, a timer, miimon), so the boot costs them little, and the run saves most of a
        boot. A VM that does not start is left to its turn, which then says why."""
        lab = self._session()
        link = "on" if group.wired_link else "off"
        try:
            lab.start(wired_link=group.wired_link)
        except ImagegenError as e:
            self.report.note(f"the {group.name} VM did not start ahead of its turn ({e}); it boots in its turn")
            return None
        stop = threading.Event()
        stack.callback(lab.machine.shutdown)
        stack.callback(stop.set)  # LIFO: the wait is told first, then the VM is shut down
        self.overlapped = True
        self.report.note(f"the {group.name} VM (wired link {link}) boots beside these scenarios")
        return _Ahead(lab, pool.submit(_wait_booted_here, lab, self.accel.agent_timeout, stop))

    def _session(self) -> LabSession:
        machine = Machine(self.files, accel=self.accel.accel, nics=self.plan.nics, uefi=self.options.uefi)
        lab = LabSession(machine, self.plan, self.dhcp6_unit)
        lab.artifacts = self.options.artifacts
        return lab

    def _run_group(self, group: _Group, keep: bool, ahead: _Ahead | None, booted: Callable[[], None]) -> None:
        """Boot the group's VM (or take the one started ahead) and run its scenarios; booted is called
        once its agent answers (to start the next VM)."""
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            if self._run_group_once(group, keep, attempt, ahead if attempt == 1 else None, booted):
                return

    def _run_group_once(self, group: _Group, keep: bool, attempt: int, ahead: _Ahead | None,
                        booted: Callable[[], None]) -> bool:
        """One boot of the group's VM and, once it is up, its scenarios. False: boot again."""
        lab = ahead.lab if ahead is not None else self._session()
        machine = lab.machine
        with machine:
            # A VM started ahead has been booting since its start, not since its turn came.
            start = lab.started if ahead is not None and lab.started is not None else time.monotonic()
            try:
                if ahead is not None:
                    self.report.step(f"waiting for the {group.name} VM's guest agent…")
                    lab.boot_seconds = ahead.booted.result()
                else:
                    link = "on" if group.wired_link else "off"
                    self.report.step(f"booting the {group.name} VM ({self.accel.accel.upper()}, wired link {link})…")
                    lab.boot_seconds = lab.boot(wired_link=group.wired_link, agent_timeout=self.accel.agent_timeout)
            except GuestGone as e:
                # The guest died before its userspace answered: under TCG the Debian kernel now and then
                # crashes while patching its own code at boot (an int3 oops in sched_clock_cpu), which
                # is the emulator's fault, not the image's. One more boot; a second death fails.
                save_file(machine.sockets.serial_log, self._artifacts(), f"serial-{group.name}-boot{attempt}.log")
                if attempt < BOOT_ATTEMPTS:
                    self.figures[f"{group.name}_vm_boot_retries"] = attempt
                    self.figures[f"{group.name}_vm_boot_crash"] = str(e)
                    self.report.note(f"{group.name} VM died while booting, booting it again: {e}")
                    return False
                self._boot_failed(group, lab, str(e), time.monotonic() - start)
                return True
            except ImagegenError as e:
                self._boot_failed(group, lab, str(e), time.monotonic() - start)
                return True
            self.figures[f"{group.name}_vm_agent_ready_s"] = round(lab.boot_seconds, 1)
            self.report.note(f"{group.name} VM: guest agent answered {lab.boot_seconds:.0f} s after start "
                             f"(timeouts ×{lab.scale:.1f})")
            booted()
            # One Machine and one Lab for all the VM's scenarios: the state they keep (the console read so
            # far, the radio removed) is the VM's. Every call goes into the one call log.
            calls = CallLog(self.options.artifacts / CALL_LOG)
            api = bind(lab, calls)
            shot = False
            for scenario in group.scenarios:
                if scenario.name in POWERS_OFF and not shot:
                    shot = self._screenshot(group, lab)
                self._run_one(scenario, lab, api, calls)
            if not shot:
                self._screenshot(group, lab)
            if any(not self.results[s.name].passed for s in group.scenarios):
                save_file(machine.sockets.serial_log, self._artifacts(), f"serial-{group.name}.log")
                self._explain_starvation(group, machine)
            if keep and machine.running:
                self._hold(machine)
        return True

    def _screenshot(self, group: _Group, lab: LabSession) -> bool:
        """The VM's screen as its scenarios left it, in every run's artifacts (screen-GROUP.png). A screen
        that cannot be read is a line in the call log, not a failed verdict."""
        calls = CallLog(self.options.artifacts / CALL_LOG)
        calls.section(f"the {group.name} VM's screen at the end of its scenarios")
        if not lab.machine.running:
            calls.write(f"machine.screenshot screen-{group.name}: not taken, the VM is off")
            return True
        machine, _ = bind(lab, calls)
        try:
            machine.screenshot(f"screen-{group.name}")
        except Exception:
            pass  # a screen that cannot be read is reported, not failed: the call log has the failed call
        return True

    def _debug(self, lab: LabSession, what: str) -> None:
        """--debug: the first failure of the run opens the prompt, the VM as the failure left it."""
        if self.options.debug is None or self.debugged or not lab.machine.running:
            return
        self.debugged = True
        self.report.pause()
        self.report.console.print(Text.assemble(("--debug", "bold"), f": {what} failed; the VM is as it left it."))
        self.options.debug(lab)

    def _explain_starvation(self, group: _Group, machine: Machine) -> None:
        """Say so when the guest kernel reported being starved of CPU: then the host was too busy for
        the emulated guest and the failures may be the host's, not the image's."""
        try:
            text = machine.sockets.serial_log.read_text(errors="replace")
        except OSError:
            return
        stalls = sum(text.count(mark) for mark in STARVATION_MARKS)
        if stalls:
            self.figures[f"{group.name}_vm_cpu_stall_reports"] = stalls
            self.report.note(f"{group.name} VM: the guest kernel reported {stalls} CPU stall(s) (soft lockup / "
                             "RCU stall): the host was too busy for the emulated guest; rerun on a quieter host"
                             + (", or with --sequential (this run had two VMs up at once)" if self.overlapped else ""))

    def _boot_failed(self, group: _Group, lab: LabSession, error: str, seconds: float) -> None:
        out = self._artifacts()
        save_file(lab.machine.sockets.serial_log, out, f"serial-{group.name}.log")
        self._explain_starvation(group, lab.machine)
        for s in group.scenarios:
            self.report.start_scenario(s.name, s.title)
            r = ScenarioResult(s.name, s.title, passed=False, seconds=seconds if s is group.scenarios[0] else 0,
                               error=f"the {group.name} VM did not boot: {error}")
            self.results[s.name] = r
            self.report.end_scenario(r)

    def _run_one(self, scenario: Scenario, session: LabSession, api: tuple[ApiMachine, Lab],
                 calls: CallLog) -> None:
        self.report.start_scenario(scenario.name, scenario.title)
        def on_check(check: Check) -> None:
            self.report.check(check)
            if not check.ok:
                self._debug(session, f"{scenario.name}: {check.name}")

        results = Results(on_check=on_check)
        calls.section(f"{scenario.name}: {scenario.title}")

        def as_check(call: Call) -> None:
            results.check(call.title, True, call.detail)
        calls.on_call = as_check if scenario.calls_as_checks else None
        start = time.monotonic()
        error: str | None = None
        told = False  # whether the error already says how QEMU ended
        not_applicable: str | None = None
        try:
            if (ended := session.machine.exit_status) is not None:
                raise QemuExited(ended, " before the scenario began")
            scenario.run(*api, results)
        except CheckFailed:
            pass  # the failed check is already recorded
        except NotApplicable as e:
            not_applicable = f"not applicable: {e}"
        except AssertionError as e:
            # A call that did not hold outside any named check (a command's status, a wait that ran out,
            # a TestFailure) or an assert: a failed check saying what was seen.
            first, _, rest = (str(e) or f"{type(e).__name__} (no message)").partition("\n")
            results.check(first, False, rest.strip())
        except QemuExited as e:
            error, told = str(e), True
        except (ImagegenError, TimeoutError, OSError, EOFError) as e:
            error = f"{type(e).__name__}: {e}"
        finally:
            calls.on_call = None
        if not_applicable is not None and all(c.ok for c in results.checks):
            # Not run, not failed: the profile has nothing this scenario proves (a check that failed before
            # it said so still fails the scenario, below).
            result = ScenarioResult(scenario.name, scenario.title, passed=False, skipped=True,
                                    seconds=round(time.monotonic() - start, 1), checks=tuple(results.checks),
                                    figures=dict(results.figures), error=not_applicable)
            self.results[scenario.name] = result
            self.report.end_scenario(result)
            return
        passed = error is None and results.passed
        if error is not None:
            self._debug(session, f"{scenario.name} ({error.splitlines()[0]})")
        if not passed and not told and (ended := session.machine.exit_status) is not None:
            # A VM that died under the scenario explains its failure better than a closed socket does.
            error = f"{error}; QEMU {ended}" if error else f"QEMU {ended}"
        result = ScenarioResult(scenario.name, scenario.title, passed=passed,
                                seconds=round(time.monotonic() - start, 1), checks=tuple(results.checks),
                                figures=dict(results.figures), error=error)
        self.results[scenario.name] = result
        if not passed:
            out = self._artifacts() / scenario.name
            if session.machine.running:
                self.report.step(f"saving evidence of {scenario.name}…")
                session.collect(out)
            save_file(session.machine.sockets.serial_log, out, "serial.log")
        self.report.end_scenario(result)

    def _hold(self, machine: Machine) -> None:
        """--keep-vm: the VM lives as long as this command does, so the command waits here until the guest
        powers off or Ctrl-C is pressed; then the run ends as usual, with its summary and reports."""
        s = machine.sockets
        # Paths are printed as they are (TMPDIR may hold anything rich would read as markup).
        self.report.console.print(Text.assemble(
            ("VM kept running", "bold"),
            f" (PID {machine.pid}, run dir {machine.run_dir}):\n"
            f"  serial console:  socat -,raw,echo=0 UNIX-CONNECT:{s.serial}\n"
            f"  QMP:             python -m qemu.qmp.qmp_shell {s.qmp}\n"
            f"  guest agent:     socket {s.agent}\n"
            f"  stop it:         Ctrl-C here, or power the guest off"))
        try:
            machine.wait_exit(None)
        except Terminated:
            raise
        except KeyboardInterrupt:
            self.report.note("stopping the kept VM")
