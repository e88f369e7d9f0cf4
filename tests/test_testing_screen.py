"""The screen in the test API: OCR with the real tesseract on pictures Pillow draws, the colour and change
checks, the run's last screenshot, reboot, and --debug's prompt at the first failure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import ImagegenError
from imagegen.profile import load_profiles
from imagegen.report.console import ConsoleReport
from imagegen.scenarios.catalog import Scenario
from imagegen.scenarios.runner import LabRun, _Group
from imagegen.scenarios.runner import TestOptions as Options
from imagegen.scenarios.session import LabSession, Recorder
from imagegen.testing import screen
from imagegen.testing.calls import CallLog
from imagegen.testing.errors import WaitTimeout
from imagegen.testing.machine import Machine
from imagegen.testing.scripts import CALL_LOG
from imagegen.testing.waits import Clock
from imagegen.vm.accel import AccelChoice
from imagegen.vm.lab import LAB_NICS, plan_lab
from imagegen.vm.machine import ImageFiles
from imagegen.vm.machine import Machine as Vm

REPO = Path(__file__).resolve().parents[1]
LAPTOP = REPO / "examples" / "laptop.toml"
GREY = (170, 170, 170)  # the Linux console's white


def console(*lines: str, size: tuple[int, int] = (1280, 800), fg: tuple[int, int, int] = GREY,
            bg: tuple[int, int, int] = (0, 0, 0), cursor: bool = False) -> Image.Image:
    """A picture like a text console's: small light letters on black, one line per 16 pixels; with
    cursor, the console's underline cursor in the cell after the last line."""
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    for i, line in enumerate(lines):
        draw.text((0, 16 * i), line, fill=fg, font=font)
    if cursor:
        row = max(len(lines) - 1, 0)
        x = round(draw.textlength(lines[-1] if lines else "", font=font)) + 2
        draw.rectangle((x, 16 * row + 13, x + 7, 16 * row + 14), fill=fg)
    return image


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


class Screens:
    """QMP whose screendump writes the next of the given pictures (the last one stays on the screen)."""

    def __init__(self, *frames: Image.Image) -> None:
        self.frames = list(frames)
        self.dumps = 0

    def cmd(self, command: str, /, **args: Any) -> Any:
        assert command == "screendump" and args["format"] == "png", (command, args)
        frame = self.frames[min(self.dumps, len(self.frames) - 1)]
        self.dumps += 1
        frame.save(args["filename"], "PNG")
        return {}


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, sleep=self.sleep)

    def sleep(self, s: float) -> None:
        self.t += s


def machine_with(qmp: Any, tmp_path: Path, power: Any = None, log: Path | None = None) -> Machine:
    return Machine(None, qmp, power, CallLog(log), serial_log=tmp_path / "serial.log",  # type: ignore[arg-type]
                   artifacts=tmp_path / "artifacts", clock=FakeClock().clock())


# --- OCR --------------------------------------------------------------------------------------------

def test_ocr_reads_a_console_login_prompt(tmp_path: Path) -> None:
    png = save(console("", "Debian GNU/Linux forky/sid laptop tty1", "", "laptop login: "), tmp_path / "s.png")
    text = screen.ocr(png)
    assert "laptop login:" in text and "Debian GNU/Linux" in text, text


def test_a_picture_is_prepared_grey_dark_on_white_cropped_and_scaled(tmp_path: Path) -> None:
    image = console("", "", "laptop login:")
    ready = screen.prepare_for_ocr(image, scale=3)
    assert ready.mode == "L"
    # Cropped to the text (one line, a margin around it), then three times its size.
    assert ready.width < image.width and ready.height < 3 * 16 + 3 * 2 * screen.MARGIN + 3 * 16
    assert ready.getpixel((0, 0)) == 255, "the black background became white"
    assert ready.getextrema()[0] < 64, "the light letters became dark"
    assert screen.prepare_for_ocr(console(), scale=3).size == (3, 3), "a blank screen is a blank picture"


def test_without_tesseract_ocr_names_the_package_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(screen.OcrUnavailable, match="tesseract-ocr"):
        screen.ocr(save(console("x"), tmp_path / "s.png"))


def test_get_screen_text_reads_the_screen_once(tmp_path: Path) -> None:
    qmp = Screens(console("laptop login:"))
    assert "laptop login:" in machine_with(qmp, tmp_path).get_screen_text()
    assert qmp.dumps == 1


def test_wait_for_text_stops_at_the_first_match_and_reads_only_changed_screens(tmp_path: Path) -> None:
    blank, prompt = console(), console("", "laptop login:")
    booting, blinked = console("Starting the system"), console("Starting the system", cursor=True)
    qmp = Screens(blank, blank, booting, blinked, booting, prompt, console("later: no match"))
    log = tmp_path / "calls.log"
    matched = machine_with(qmp, tmp_path, log=log).wait_for_text(r"\w+ login:", timeout=60)
    assert matched == "laptop login:"
    assert qmp.dumps == 6, "no screenshot after the first match"
    # Six screenshots, three screens apart from the cursor's blinking: OCR ran three times.
    assert "(6 screenshots, 3 OCR runs)" in log.read_text(), log.read_text()


def test_wait_for_text_times_out_with_what_ocr_read_last_and_keeps_that_screen(tmp_path: Path) -> None:
    qmp = Screens(console("Starting the system"), console("Welcome to the kiosk"))
    with pytest.raises(WaitTimeout) as e:
        machine_with(qmp, tmp_path).wait_for_text("login:", timeout=5)
    message = str(e.value)
    assert "screen text matching 'login:'" in message and "Welcome to the kiosk" in message, message
    assert "OCR read (2 runs)" in message, "an unchanged screen is not read again"
    kept = tmp_path / "artifacts" / "wait_for_text-timeout-1.png"
    assert "wait_for_text-timeout-1.png" in message and kept.is_file()
    assert Image.open(kept).size == (1280, 800)


# --- The cheaper checks: colour and change ------------------------------------------------------------

def test_colour_of_a_region_and_boxes_off_the_screen(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 0, 200, 100))  # the right half white
    png = save(image, tmp_path / "s.png")
    assert screen.mean_color(png, (100, 0, 200, 100)) == (255, 255, 255)
    assert screen.mean_color(png, (0, 0, 100, 100)) == (0, 0, 0)
    assert screen.mean_color(png) == (128, 128, 128)
    with pytest.raises(ValueError, match="not inside the 200×100 screen"):
        screen.mean_color(png, (150, 0, 250, 100))
    assert screen.color_distance((255, 255, 255), (250, 240, 255)) == 15


def test_a_change_is_more_than_the_blinking_cursor(tmp_path: Path) -> None:
    def png(name: str, image: Image.Image) -> Path:
        return save(image, tmp_path / f"{name}.png")

    prompt = png("prompt", console("laptop login:"))
    blinked = png("blinked", console("laptop login:", cursor=True))
    typed = png("typed", console("laptop login: r", cursor=True))
    assert not screen.differs(prompt, prompt) and not screen.differs(prompt, blinked)
    assert screen.differs(blinked, typed), "a letter typed (and the cursor moved) is a change"
    assert screen.differs(prompt, png("app", console(bg=(255, 255, 255))))
    assert screen.differs(prompt, png("small", console("laptop login:", size=(640, 480)))), "a new mode"
    assert not screen.differs(prompt, typed, box=(0, 100, 1280, 800)), "only the box counts"


def test_screen_colour_waits(tmp_path: Path) -> None:
    dark, small, painted = console(), console(size=(640, 480)), console(bg=(0, 0, 170))
    qmp = Screens(small, dark, dark, painted)
    machine = machine_with(qmp, tmp_path)
    assert machine.screen_color((0, 0, 10, 10)) == (0, 0, 0)
    # A box off the smaller boot screen is "not yet", not an error.
    machine.wait_for_screen_color((0, 0, 170), box=(1000, 600, 1280, 800), timeout=30)
    assert qmp.dumps == 4
    with pytest.raises(WaitTimeout, match=r"rgb\(0, 0, 170\)") as e:
        machine.wait_for_screen_color((255, 255, 255), timeout=3)
    assert "wait_for_screen-timeout-1.png" in str(e.value)


def test_wait_for_screen_change_compares_with_the_screen_at_the_call(tmp_path: Path) -> None:
    qmp = Screens(console("a"), console("a"), console("a"), console("a", "a second line"))
    machine = machine_with(qmp, tmp_path)
    machine.wait_for_screen_change(timeout=30)
    assert qmp.dumps == 4
    # Only the box counts: the change below it is not one in the top line.
    qmp2 = Screens(console("a"), console("a", "a second line"))
    with pytest.raises(WaitTimeout, match="to change"):
        machine_with(qmp2, tmp_path).wait_for_screen_change(box=(0, 0, 100, 16), timeout=3)


# --- Reboot ----------------------------------------------------------------------------------------

class Rebooting:
    running = True

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def reboot(self, timeout: float) -> float:
        self.timeouts.append(timeout)
        return 42.5


def test_reboot_waits_for_the_agent_with_the_timeout_given_and_is_logged(tmp_path: Path) -> None:
    power = Rebooting()
    log = tmp_path / "calls.log"
    assert machine_with(None, tmp_path, power=power, log=log).reboot(timeout=600) == 42.5
    assert power.timeouts == [600]
    assert "machine.reboot" in log.read_text() and "agent answered 42.5 s after the reboot began" in log.read_text()


# --- The run: its last screenshot, --debug ------------------------------------------------------------

class Alive:
    """A QEMU child that runs (poll: None), for a lab session that is never booted."""

    pid = None

    def poll(self) -> None:
        return None


def lab_run(tmp_path: Path, qmp: Any, *, running: bool = True,
            debug: Any = None) -> tuple[LabRun, LabSession]:
    files = ImageFiles(tmp_path / "image.raw", tmp_path / "image.vmlinuz", None)
    vm = Vm(files, accel="tcg", nics=LAB_NICS, run_dir=tmp_path / "run")
    if running:
        vm.qemu = Alive()  # type: ignore[assignment]
    plan = plan_lab(load_profiles([LAPTOP]).profile)
    session = LabSession(vm, plan, "dhcp6c")
    session.qmp = qmp
    session.artifacts = tmp_path / "artifacts"
    options = Options(artifacts=tmp_path / "artifacts", debug=debug)
    run = LabRun(plan, "dhcp6c", files, AccelChoice("tcg", "test"), options, ConsoleReport())
    return run, session


def test_every_run_keeps_the_screen_and_a_screen_that_cannot_be_read_is_only_logged(tmp_path: Path) -> None:
    run, session = lab_run(tmp_path, Screens(console("laptop login:")))
    group = _Group("main", True, ())
    run._screenshot(group, session)
    assert (tmp_path / "artifacts" / "screen-main.png").is_file()

    class Broken:
        def cmd(self, command: str, /, **args: Any) -> Any:
            raise ImagegenError("QMP screendump failed: no surface")

    run, session = lab_run(tmp_path / "b", Broken())
    run._screenshot(_Group("wifi-only", False, ()), session)  # does not raise
    log = (tmp_path / "b" / "artifacts" / CALL_LOG).read_text()
    assert "machine.screenshot screen-wifi-only" in log and "FAILED" in log and "no surface" in log, log
    run, session = lab_run(tmp_path / "c", Broken(), running=False)
    run._screenshot(group, session)
    assert "not taken, the VM is off" in (tmp_path / "c" / "artifacts" / CALL_LOG).read_text()


def test_debug_opens_once_at_the_first_failed_check_while_the_scenario_runs(tmp_path: Path) -> None:
    checked: list[str] = []
    opened: list[tuple[str, ...]] = []

    def scenario(lab: LabSession, rec: Recorder) -> None:
        rec.check("first holds", True)
        rec.check("second fails", False, "as planned")
        checked.append("after the failed check")
        rec.check("third fails too", False)

    def debug(lab: LabSession) -> None:
        # The prompt opens inside the scenario, right after its failed check, before what follows it.
        opened.append((*checked, lab.plan.bond))

    run, session = lab_run(tmp_path, Screens(console()), debug=debug)
    run._run_one(Scenario("two-failures", "Two failures", scenario), session)
    run._run_one(Scenario("another", "Another", scenario), session)
    assert opened == [("bond0",)]
    assert not run.results["two-failures"].passed


def test_debug_opens_for_a_scenario_that_raises_and_not_when_the_vm_is_gone(tmp_path: Path) -> None:
    opened: list[LabSession] = []

    def broken(lab: LabSession, rec: Recorder) -> None:
        raise OSError("socket closed")

    run, session = lab_run(tmp_path, Screens(console()), debug=opened.append)
    run._run_one(Scenario("broken", "Broken", broken), session)
    assert opened == [session]
    run, session = lab_run(tmp_path / "b", Screens(console()), debug=opened.append, running=False)
    run._run_one(Scenario("broken", "Broken", broken), session)
    assert len(opened) == 1


def test_debug_cannot_be_repeated() -> None:
    result = CliRunner().invoke(app, ["test", str(LAPTOP), "--debug", "--repeat", "2"],
                                env={**os.environ, "COLUMNS": "200"})
    assert result.exit_code == 2 and "--debug" in result.output, result.output
