"""How the command line reports bad input and interruptions: one line, literal user text, the exit code."""

from __future__ import annotations

import gc
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from imagegen import render
from imagegen.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    return tmp_path / "laptop.toml"


def edited(laptop: Path, old: str, new: str) -> Path:
    text = laptop.read_text()
    assert old in text
    laptop.write_text(text.replace(old, new, 1))
    return laptop


def assert_one_error(result: Result, *literal: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback: a clean exit
    for text in literal:
        assert text in result.stderr, result.stderr


# --- User text is printed literally -------------------------------------------------------------

@pytest.mark.parametrize("key", ["[/x]", "[bold]", "[interfaces.eth9]"])
def test_a_key_with_markup_is_printed_as_written(laptop: Path, key: str) -> None:
    edited(laptop, 'hostname = "laptop"\n', f'hostname = "laptop"\n"{key}" = 1\n')
    result = runner.invoke(app, ["show", str(laptop)])
    assert_one_error(result, f"unknown key '{key}'")


@pytest.mark.parametrize("value", ["[/x]", "[bold]x"])
def test_a_value_with_markup_is_printed_as_written(laptop: Path, value: str) -> None:
    edited(laptop, 'hostname = "laptop"', f'hostname = "{value}"')
    result = runner.invoke(app, ["check", str(laptop), "--no-verify"])
    assert_one_error(result, f"hostname '{value}' is not a valid host name")


def test_a_table_name_in_a_message_is_not_eaten(laptop: Path) -> None:
    edited(laptop, 'members = ["enp3s0", "wlp2s0"]', 'members = ["enp3s0", "eth9"]')
    result = runner.invoke(app, ["show", str(laptop)])
    assert_one_error(result, "add [interfaces.eth9] with type")


def test_a_hint_with_user_text_is_printed_as_written(laptop: Path) -> None:
    out = laptop.parent / "[bold]mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    result = runner.invoke(app, ["render", str(laptop), "--out", str(out)])
    assert_one_error(result, f"hint: choose an empty or new directory, or remove {out} yourself")


# --- Profiles that are not profiles -------------------------------------------------------------

def test_random_bytes_are_not_a_utf8_toml_file(tmp_path: Path) -> None:
    profile = tmp_path / "noise.toml"
    profile.write_bytes(bytes([0xFF, 0xFE, 0x80]) + os.urandom(4093))
    result = runner.invoke(app, ["show", str(profile)])
    assert_one_error(result, f"{profile}: not a UTF-8 TOML file")
    assert len(result.stderr.splitlines()) == 1


def test_a_directory_as_profile_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(tmp_path)])
    assert_one_error(result, f"{tmp_path}: is a directory")
    assert len(result.stderr.splitlines()) == 1


def test_an_unreadable_profile_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    profile = tmp_path / "file" / "laptop.toml"  # a path through a regular file cannot be opened
    result = runner.invoke(app, ["show", str(profile)])
    assert_one_error(result, f"{profile}: cannot read")
    assert len(result.stderr.splitlines()) == 1


def imagegen_bounded(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own with 1 GiB of address space and a timeout: a command that reads
    without bound fails there instead of taking the machine's memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    return subprocess.run([sys.executable, "-c", "from imagegen.cli import app; app()", *args],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_dev_zero_as_profile_is_refused_not_read_to_the_end() -> None:
    done = imagegen_bounded("show", "/dev/zero")
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: /dev/zero: larger than 4 MiB, not a host profile; name a TOML file\n"


# --- Interruptions --------------------------------------------------------------------------------

def interrupt_in(monkeypatch: pytest.MonkeyPatch, name: str, error: BaseException) -> None:
    """Make the stage function `name` that the command calls raise error, as Ctrl-C would there."""
    def stage(*args: object, **kwargs: object) -> None:
        raise error
    monkeypatch.setattr(render, name, stage)


def test_ctrl_c_in_a_command_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, laptop: Path) -> None:
    interrupt_in(monkeypatch, "render_overlay", KeyboardInterrupt())
    result = runner.invoke(app, ["render", str(laptop), "--out", str(laptop.parent / "out")])
    assert result.exit_code == 130, result.output
    assert result.stderr == "interrupted: imagegen render (SIGINT)\n"


class Unhandled(Exception):
    pass


def test_sigterm_takes_the_same_path_with_exit_143(monkeypatch: pytest.MonkeyPatch, laptop: Path) -> None:
    def stage(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    def outside(signum: int, frame: object) -> None:
        raise Unhandled("SIGTERM reached the handler outside the command")

    monkeypatch.setattr(render, "render_overlay", stage)
    before = signal.signal(signal.SIGTERM, outside)
    try:
        result = runner.invoke(app, ["render", str(laptop), "--out", str(laptop.parent / "out")])
        # The command's handler is its own: afterwards SIGTERM means what it meant before.
        assert signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 143, result.output
    assert result.stderr == "interrupted: imagegen render (SIGTERM)\n"


def run_blocked_on_fifo(tmp_path: Path, signum: int) -> subprocess.CompletedProcess[str]:
    """`imagegen show FIFO` reads the FIFO (a profile may be `<(generate-profile)`); signal it while it waits."""
    fifo = tmp_path / "profile.toml"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", "from imagegen.cli import app; app()", "show", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # A non-blocking open for writing succeeds only once the command has the FIFO open for reading: from
    # then on it waits in read() for the profile, inside the command.
    deadline = time.monotonic() + 60
    while True:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "imagegen never opened the profile"
            time.sleep(0.02)
    try:
        time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(writer)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_process_interrupted_prints_one_line(tmp_path: Path, signum: int, code: int) -> None:
    done = run_blocked_on_fifo(tmp_path, signum)
    assert done.returncode == code, done.stderr
    assert done.stderr == f"interrupted: imagegen show ({signal.Signals(signum).name})\n"


def test_an_interrupted_qmp_command_leaves_no_task_exception_for_asyncio_to_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C during a QMP command, then the connection closed as the VM is stopped: asyncio must not
    print "Task exception was never retrieved … ExecInterruptedError('Disconnected')" afterwards."""
    from imagegen.vm.qmp import Monitor

    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    hang_up = threading.Event()

    def hung_qemu() -> None:
        # QEMU's greeting and its answer to the negotiation, then silence: a command that never returns.
        conn, _ = server.accept()
        conn.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}, '
                     b'"capabilities": []}}\n')
        conn.recv(4096)
        conn.sendall(b'{"return": {}}\n')
        conn.recv(4096)
        hang_up.wait(10)
        conn.close()

    peer = threading.Thread(target=hung_qemu)
    peer.start()

    def ctrl_c(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monitor = Monitor(path)
    monitor.connect(timeout=10)
    old = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt):
            monitor.cmd("query-status")
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            monitor.close()
            del monitor
            gc.collect()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        hang_up.set()
        peer.join()
        server.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_a_host_name_with_markup_in_history_is_printed_as_written(tmp_path: Path) -> None:
    result = runner.invoke(app, ["history", "[/x]", "--store", str(tmp_path / "store")])
    assert_one_error(result, "host name '[/x]' is not allowed")
