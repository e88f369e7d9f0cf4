"""The lab VM as a test sees it: commands, waits, files, the console, the screen and the keyboard.

Commands run through the guest agent (guest-exec of `sh -c CMD`), the screen and the keyboard through
QMP, the console is the serial log QEMU writes on the host. Every call is logged with its duration
(CallLog); a check that does not hold raises a TestFailure that says what was asked and what was seen.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from imagegen.errors import CommandError, ImagegenError
from imagegen.testing import screen
from imagegen.testing.calls import CallLog
from imagegen.testing.errors import CommandFailed, TestFailure, UnitFailed
from imagegen.testing.keys import chord, combo
from imagegen.testing.screen import Box, Color
from imagegen.testing.waits import REAL_CLOCK, Clock, wait_until
from imagegen.vm.agent import AgentError, ExecResult

DEFAULT_TIMEOUT = 900.0
# One OCR run may take this long at most (tesseract takes seconds; far more means a host too busy).
OCR_TIMEOUT = 120.0
# systemd and the kernel colour and redraw console lines.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Agent(Protocol):
    """What the test API needs of the guest agent (imagegen.vm.agent.GuestAgent)."""

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult: ...

    def read_file(self, path: str) -> bytes: ...


class Monitor(Protocol):
    """What it needs of QMP (imagegen.vm.qmp.Monitor)."""

    def cmd(self, command: str, /, **args: Any) -> Any: ...


class Power(Protocol):
    """What it needs of the QEMU process (imagegen.vm.machine.Machine)."""

    @property
    def running(self) -> bool: ...

    def powerdown(self, timeout: float) -> float: ...

    def reboot(self, timeout: float) -> float: ...

    def wait_exit(self, timeout: float) -> bool: ...


class Shell:
    """Shell commands on one side of the lab. Machine is the guest; Peer is the lab's other side."""

    def __init__(self, agent: Agent, calls: CallLog, *, name: str, prefix: tuple[str, ...] = (),
                 clock: Clock = REAL_CLOCK, alive: Callable[[], bool] = lambda: True) -> None:
        self._agent = agent
        self._calls = calls
        self._prefix = prefix
        self._clock = clock
        self._alive = alive
        self.name = name

    def _exec(self, command: str, timeout: float) -> ExecResult:
        return self._agent.exec([*self._prefix, "sh", "-c", command], timeout=timeout)

    def _poll(self, argv: list[str], timeout: float) -> ExecResult:
        """One poll of a wait: an agent that does not answer in time (a busy emulated guest) is a poll
        that saw nothing, unless the VM is gone, which ends the wait."""
        try:
            return self._agent.exec(argv, timeout=timeout)
        except AgentError as e:
            if not self._alive():
                raise
            return ExecResult(tuple(argv), -1, "", f"(no answer from the guest agent: {e})")

    def execute(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """Run command with `sh -c` and return (exit status, stdout). A command still running after
        timeout seconds is killed (status 124). stderr is kept in the call log."""
        with self._calls.call(f"{self.name}.execute `{command}`") as c:
            r = self._exec(command, timeout)
            c.detail = f"exit {r.rc}" + (f"; stderr: {r.stderr.strip()[-200:]}" if r.stderr.strip() else "")
            return r.rc, r.stdout

    def succeed(self, *commands: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run each command in turn; each must exit 0, else CommandFailed (command, status, stdout,
        stderr). Returns their stdout, concatenated."""
        out = []
        for command in commands:
            with self._calls.call(f"{self.name}.succeed `{command}`") as c:
                r = self._exec(command, timeout)
                if r.rc != 0:
                    raise CommandFailed(command, r.rc, r.stdout, r.stderr, where=self.name)
                c.detail = _summary(r.stdout)
                out.append(r.stdout)
        return "".join(out)

    def fail(self, *commands: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run each command in turn; each must exit non-zero, else CommandFailed. Returns their stdout."""
        out = []
        for command in commands:
            with self._calls.call(f"{self.name}.fail `{command}`") as c:
                r = self._exec(command, timeout)
                if r.rc == 0:
                    raise CommandFailed(command, r.rc, r.stdout, r.stderr, where=self.name, expected="non-zero")
                c.detail = f"exit {r.rc}"
                out.append(r.stdout)
        return "".join(out)

    def _wait_status(self, command: str, timeout: float, want_zero: bool, verb: str) -> str:
        with self._calls.call(f"{self.name}.{verb} `{command}`") as c:
            seen: list[ExecResult] = []
            deadline = self._clock.now() + timeout

            def attempt() -> str | None:
                # Each try is bounded by what is left of the wait, and by a minute.
                left = max(1.0, min(60.0, deadline - self._clock.now()))
                r = self._poll([*self._prefix, "sh", "-c", command], left)
                seen[:] = [r]
                return r.stdout if (r.rc == 0) == want_zero else None

            def last() -> str:
                r = seen[-1] if seen else None
                return f"exit {r.rc}\nstdout: {r.stdout}\nstderr: {r.stderr}" if r else ""

            waited = wait_until(f"`{command}` to {'succeed' if want_zero else 'fail'}", attempt, timeout,
                                last=last, clock=self._clock)
            c.detail = f"after {waited.seconds:.1f} s ({waited.polls} tries)"
            return waited.value

    def wait_until_succeeds(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run command until it exits 0, with back-off between tries; returns its stdout. WaitTimeout
        (with the last try's status and output) when timeout seconds pass first."""
        return self._wait_status(command, timeout, True, "wait_until_succeeds")

    def wait_until_fails(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run command until it exits non-zero; returns its stdout. WaitTimeout when it does not."""
        return self._wait_status(command, timeout, False, "wait_until_fails")


def _summary(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    if not lines:
        return ""
    first = lines[0][:120]
    return first + (f" … ({len(lines)} lines)" if len(lines) > 1 else "")


class Peer(Shell):
    """The other side of the lab's network: a shell in the AP's network namespace (`ip netns exec ap`),
    where hostapd and dnsmasq run. Commands here reach the guest over the bond, as a LAN host would."""


class Machine(Shell):
    """The booted lab VM.

    Timeouts are seconds of wall-clock time, not scaled to the accelerator: under TCG the guest is many
    times slower than under KVM, so give waits room (the default, 900 s, is NixOS's too).
    """

    def __init__(self, agent: Agent, qmp: Monitor, power: Power, calls: CallLog, *, serial_log: Path,
                 artifacts: Path, clock: Clock = REAL_CLOCK) -> None:
        super().__init__(agent, calls, name="machine", clock=clock, alive=lambda: power.running)
        self._qmp = qmp
        self._power = power
        self.serial_log = serial_log
        self.artifacts = artifacts
        self._console_cursor = 0
        self._timeouts = 0  # screens kept by waits that timed out, each under its own name

    # Waits.

    def _unit_properties(self, unit: str) -> dict[str, str]:
        r = self._poll(["systemctl", "show", "--property=LoadState,ActiveState,SubState", "--", unit], 60)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def wait_for_unit(self, unit: str, timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wait until unit is active (`systemctl show -p ActiveState,SubState`); returns the seconds
        waited. A unit in state failed ends the wait at once with UnitFailed quoting `systemctl status`."""
        with self._calls.call(f"machine.wait_for_unit {unit}") as c:
            seen: list[dict[str, str]] = []

            def attempt() -> dict[str, str] | None:
                props = self._unit_properties(unit)
                seen[:] = [props]
                state = props.get("ActiveState", "")
                if state == "failed":
                    status = self._agent.exec(["systemctl", "status", "--no-pager", "--full", "--lines=20",
                                               "--", unit], timeout=60)
                    raise UnitFailed(unit, status.stdout + status.stderr)
                return props if state == "active" else None

            def last() -> str:
                p = seen[-1] if seen else {}
                return (f"LoadState={p.get('LoadState', '?')} ActiveState={p.get('ActiveState', '?')} "
                        f"SubState={p.get('SubState', '?')}")

            waited = wait_until(f"unit {unit} to be active", attempt, timeout, last=last, clock=self._clock)
            c.detail = f"active/{waited.value.get('SubState', '?')} after {waited.seconds:.1f} s ({waited.polls} polls)"
            return waited.seconds

    def _wait_argv(self, title: str, what: str, argv: list[str], timeout: float) -> float:
        with self._calls.call(title) as c:
            seen: list[ExecResult] = []

            def attempt() -> bool:
                r = self._poll(argv, 30)
                seen[:] = [r]
                return r.rc == 0

            def last() -> str:
                return f"exit {seen[-1].rc} {seen[-1].stderr.strip()}" if seen else ""

            waited = wait_until(what, attempt, timeout, last=last, clock=self._clock)
            c.detail = f"after {waited.seconds:.1f} s ({waited.polls} polls)"
            return waited.seconds

    def wait_for_open_port(self, port: int, addr: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wait until a TCP connection to addr:port in the guest is accepted; returns the seconds waited."""
        script = f"exec 3<>/dev/tcp/{addr}/{int(port)}"
        return self._wait_argv(f"machine.wait_for_open_port {addr}:{port}", f"TCP port {addr}:{port} to accept",
                               ["timeout", "5", "bash", "-c", script], timeout)

    def wait_for_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wait until path exists in the guest; returns the seconds waited."""
        return self._wait_argv(f"machine.wait_for_file {path}", f"file {path} to exist", ["test", "-e", path],
                               timeout)

    def console_text(self) -> str:
        """The serial console so far, without colour codes."""
        try:
            return _ANSI.sub("", self.serial_log.read_bytes().decode(errors="replace"))
        except FileNotFoundError:
            return ""

    def wait_for_console_text(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until the serial console shows a match of regex (Python re, multi-line) after the end of
        the previous call's match (from boot on, the first time); returns the matched text."""
        pattern = re.compile(regex, re.MULTILINE)
        with self._calls.call(f"machine.wait_for_console_text {regex!r}") as c:
            def attempt() -> re.Match[str] | None:
                return pattern.search(self.console_text(), self._console_cursor)

            def last() -> str:
                return self.console_text()[self._console_cursor:][-400:]

            waited = wait_until(f"console text matching {regex!r}", attempt, timeout, last=last, clock=self._clock)
            self._console_cursor = waited.value.end()
            c.detail = f"{waited.value.group(0)[:80]!r} after {waited.seconds:.1f} s"
            return waited.value.group(0)

    # Files and the screen, into the artifacts.

    def _artifact(self, name: str) -> Path:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"{name!r}: name a file inside the artifacts directory (relative, no '..')")
        dest = self.artifacts / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def copy_from_vm(self, path: str, dest: str | None = None) -> Path:
        """Copy a guest file into the artifacts directory (as dest, a relative name; default: its base
        name), read through the guest agent. The copy is private to its owner (0600): it may be a secret.
        Returns the copy's path."""
        with self._calls.call(f"machine.copy_from_vm {path}") as c:
            data = self._agent.read_file(path)
            target = self._artifact(dest or PurePosixPath(path).name)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.touch(mode=0o600)
            tmp.write_bytes(data)
            tmp.replace(target)
            c.detail = f"{len(data)} bytes → {target.relative_to(self.artifacts)} in the artifacts"
            return target

    def _dump(self, target: Path) -> None:
        try:
            # QEMU 7.1 and later write PNG themselves when built with libpng.
            self._qmp.cmd("screendump", filename=str(target.resolve()), format="png")
        except ImagegenError:
            _screendump_ppm(self._qmp, target)

    def screenshot(self, name: str) -> Path:
        """Save the VM's display (a virtio-gpu screen) as artifacts/NAME.png (QMP screendump); returns
        the file."""
        with self._calls.call(f"machine.screenshot {name}") as c:
            target = self._artifact(name if name.endswith(".png") else f"{name}.png")
            self._dump(target)
            c.detail = str(target)
            return target

    def _keep_screen(self, png: Path, what: str) -> str:
        """A wait that timed out keeps the last screen it saw, for the person who reads the failure."""
        self._timeouts += 1
        kept = screen.keep(png, self._artifact(f"{what}-timeout-{self._timeouts}.png"))
        return f"(that screen: {kept.relative_to(self.artifacts)} in the artifacts)"

    def get_screen_text(self, timeout: float = OCR_TIMEOUT) -> str:
        """The text on the screen as OCR (Debian's tesseract-ocr) reads it: slow (seconds) and not
        always exact, so match it loosely. wait_for_text waits for a text; wait_for_console_text,
        screen_color and wait_for_screen_change are cheaper where they do."""
        with self._calls.call("machine.get_screen_text") as c, \
                tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
            png = Path(tmp) / "screen.png"
            self._dump(png)
            text = screen.ocr(png, timeout)
            c.detail = _summary(text)
            return text

    def wait_for_text(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until OCR reads a match of regex (Python re, multi-line) on the screen; returns the
        matched text. Each poll takes a screenshot; OCR runs only when the screen changed since the
        last one it read (by more than a blinking cursor), and each run is bounded by what is left of
        timeout. WaitTimeout says what OCR read last and keeps that screen in the artifacts."""
        pattern = re.compile(regex, re.MULTILINE)
        with self._calls.call(f"machine.wait_for_text {regex!r}") as c, \
                tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
            screen.tesseract_binary()  # a host without OCR fails now, not at the timeout
            png, was_read = Path(tmp) / "screen.png", Path(tmp) / "read.png"
            deadline = self._clock.now() + timeout
            read = _Reading()

            def attempt() -> re.Match[str] | None:
                self._dump(png)
                if not was_read.exists() or screen.differs(png, was_read):
                    left = max(5.0, min(OCR_TIMEOUT, deadline - self._clock.now()))
                    read.runs += 1
                    try:
                        read.text, read.note = screen.ocr(png, left), ""
                    except CommandError as e:
                        if e.returncode != -1:
                            raise
                        read.note = f"(OCR took longer than {left:.0f} s)"  # the next poll tries again
                    else:
                        screen.keep(png, was_read)
                return pattern.search(read.text)

            def last() -> str:
                kept = self._keep_screen(png, "wait_for_text") if png.exists() else ""
                return "\n".join(x for x in (f"OCR read ({read.runs} runs):", read.text or "(nothing)",
                                              read.note, kept) if x)

            waited = wait_until(f"screen text matching {regex!r}", attempt, timeout, last=last, clock=self._clock)
            c.detail = (f"{waited.value.group(0)[:80]!r} after {waited.seconds:.1f} s "
                        f"({waited.polls} screenshots, {read.runs} OCR runs)")
            return waited.value.group(0)

    def screen_color(self, box: Box | None = None) -> Color:
        """The average colour (red, green, blue; 0–255) of box = (left, top, right, bottom) on the screen,
        in pixels (None: all of it). Milliseconds, where OCR takes seconds: e.g. whether an app has
        painted its background."""
        with self._calls.call(f"machine.screen_color {box or 'screen'}") as c, \
                tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
            png = Path(tmp) / "screen.png"
            self._dump(png)
            color = screen.mean_color(png, box)
            c.detail = f"rgb{color} on the {'×'.join(map(str, screen.size(png)))} screen"
            return color

    def wait_for_screen_color(self, color: Color, box: Box | None = None, tolerance: int = 16,
                              timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wait until box's average colour is within tolerance (per channel, 0–255) of color; returns the
        seconds waited."""
        return self._wait_screen(f"machine.wait_for_screen_color rgb{tuple(color)} {box or 'screen'}",
                                 f"the screen's {box or 'whole'} region to be rgb{tuple(color)} ±{tolerance}",
                                 lambda png: screen.color_distance(screen.mean_color(png, box), color) <= tolerance,
                                 lambda png: f"rgb{screen.mean_color(png, box)}", timeout)

    def wait_for_screen_change(self, box: Box | None = None, timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wait until box (None: the whole screen) differs from how it looked when the call began by more
        than one character cell (the console's blinking cursor is no change); returns the seconds waited.
        E.g. a kiosk's app has drawn over the console."""
        with tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
            before = Path(tmp) / "before.png"
            self._dump(before)
            return self._wait_screen(f"machine.wait_for_screen_change {box or 'screen'}",
                                     f"the screen's {box or 'whole'} region to change",
                                     lambda png: screen.differs(before, png, box), lambda png: "unchanged", timeout)

    def _wait_screen(self, title: str, what: str, holds: Callable[[Path], bool], seen: Callable[[Path], str],
                     timeout: float) -> float:
        with self._calls.call(title) as c, tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
            png = Path(tmp) / "screen.png"

            def attempt() -> bool:
                self._dump(png)
                try:
                    return holds(png)
                except ValueError:  # the box is off this screen (e.g. a smaller one during boot)
                    return False

            def last() -> str:
                if not png.exists():
                    return ""
                try:
                    now = seen(png)
                except ValueError as e:
                    now = str(e)
                return f"{now} {self._keep_screen(png, 'wait_for_screen')}"

            waited = wait_until(what, attempt, timeout, last=last, clock=self._clock)
            c.detail = f"after {waited.seconds:.1f} s ({waited.polls} screenshots)"
            return waited.seconds

    # The keyboard.

    def send_key(self, keys: str, hold_ms: int = 100) -> None:
        """Press keys together, e.g. "ctrl-alt-delete", "ret", "f2" (QEMU's qcode names)."""
        with self._calls.call(f"machine.send_key {keys}"):
            self._qmp.cmd("send-key", keys=[{"type": "qcode", "data": k} for k in combo(keys)],
                          **{"hold-time": hold_ms})

    def send_chars(self, text: str, delay: float = 0.01) -> None:
        """Type text, one key (with shift where needed) at a time, delay seconds apart."""
        with self._calls.call(f"machine.send_chars {text!r}"):
            for char in text:
                self._qmp.cmd("send-key", keys=[{"type": "qcode", "data": k} for k in chord(char)])
                self._clock.sleep(delay)

    # Power.

    @property
    def is_up(self) -> bool:
        """Whether QEMU still runs."""
        return self._power.running

    def shutdown(self, timeout: float = 300.0) -> float:
        """Press the ACPI power button and wait until the VM has powered off; returns the seconds it
        took. The lab's later checks then find no VM."""
        with self._calls.call("machine.shutdown") as c:
            seconds = self._power.powerdown(timeout)
            c.detail = f"off after {seconds:.1f} s"
            return seconds

    def reboot(self, timeout: float = DEFAULT_TIMEOUT) -> float:
        """Reboot the guest (`systemctl reboot`) and wait until its agent answers again; returns the
        seconds that took. The same VM comes back: its disk keeps what was written, the serial console
        goes on (wait_for_console_text sees the new boot's lines after the old ones), the lab's links
        stay as they were set. Under TCG a reboot takes about as long as the first boot."""
        with self._calls.call("machine.reboot") as c:
            seconds = self._power.reboot(timeout)
            c.detail = f"agent answered {seconds:.1f} s after the reboot began"
            return seconds

    def crash(self) -> None:
        """End QEMU at once, as pulling the plug would (QMP quit)."""
        with self._calls.call("machine.crash"):
            try:
                self._qmp.cmd("quit")
            except (ImagegenError, EOFError, OSError):
                pass  # QEMU closes the socket as it exits
            if not self._power.wait_exit(30):
                raise TestFailure("QEMU still runs 30 s after QMP quit")


@dataclass
class _Reading:
    """What a wait_for_text has read so far."""

    text: str = ""
    runs: int = 0
    note: str = ""


def _screendump_ppm(qmp: Monitor, target: Path) -> None:
    from PIL import Image  # Pillow, which matplotlib brings; only this fallback needs it

    with tempfile.TemporaryDirectory(prefix="imagegen-screen-") as tmp:
        ppm = Path(tmp) / "screen.ppm"
        qmp.cmd("screendump", filename=str(ppm))
        with Image.open(ppm) as image:
            image.save(target, "PNG")

