"""The one way imagegen runs an external command: logged, checked, with a clear error.

run() waits for a command to finish; spawn() starts one that runs beside imagegen (QEMU, mkosi) and hands
back the Child that owns it until it is reaped. No process started here outlives imagegen: each gets
PR_SET_PDEATHSIG(SIGKILL), so the kernel ends it when imagegen dies, even by SIGKILL; spawn()'s children
lead a process group of their own, which terminate() ends as a whole (imagegen.interrupt makes SIGTERM
and SIGHUP take the clean-up path of Ctrl-C).

The parent-death signal fires when the *thread* that started the child exits, not the process: start
children from the thread that owns them for their whole life (in imagegen, the main thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, overload

from imagegen import reaper
from imagegen.errors import CommandError

log = logging.getLogger("imagegen.run")

# The end of a child's stderr that is kept for its error message.
TAIL_BYTES = 8192
TAIL_LINES = 20


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = True,
    input: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv and return the finished process.

    With capture, stdout and stderr are merged into .stdout so a failure shows both in order.
    With log_file, output goes to that file (appended) instead, for long runs whose log is kept.
    """
    args = [os.fspath(a) for a in argv]
    log.info("+ %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    preexec = reaper.death_signal_preexec(signal.SIGKILL)
    try:
        if log_file is not None:
            with log_file.open("a") as f:
                proc = subprocess.run(
                    args, cwd=cwd, env=full_env, input=input, text=True, timeout=timeout,
                    stdout=f, stderr=subprocess.STDOUT, preexec_fn=preexec,
                )
            output = ""
        else:
            proc = subprocess.run(
                args, cwd=cwd, env=full_env, input=input, text=True, timeout=timeout,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None, preexec_fn=preexec,
            )
            output = proc.stdout or ""
    except FileNotFoundError as e:
        raise CommandError(args, 127, f"{args[0]}: not found ({e})") from e
    except subprocess.TimeoutExpired as e:
        out = e.output.decode() if isinstance(e.output, bytes) else (e.output or "")
        raise CommandError(args, -1, f"timed out after {timeout} s\n{out}") from e
    if check and proc.returncode != 0:
        if log_file is not None:
            output = log_file.read_text(errors="replace")
        raise CommandError(args, proc.returncode, output)
    return proc


@dataclass(frozen=True)
class ExitStatus:
    """How a child ended: its return code as subprocess gives it (-N: killed by signal N) and the last
    lines of its stderr (of its log file, when it had one)."""

    returncode: int
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """"exited with status 1", "was killed by SIGKILL"."""
        if self.returncode >= 0:
            return f"exited with status {self.returncode}"
        try:
            name = signal.Signals(-self.returncode).name
        except ValueError:
            name = f"signal {-self.returncode}"
        return f"was killed by {name}"

    def last_words(self, lines: int = 3) -> str:
        """The last lines of its stderr on one line, "" if it said nothing."""
        return " / ".join(line.strip() for line in self.stderr_tail.strip().splitlines()[-lines:])

    def __str__(self) -> str:
        words = self.last_words()
        return f"{self.describe()}: {words}" if words else self.describe()


def _tail(f: IO[bytes]) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - TAIL_BYTES))
    lines = f.read().decode(errors="replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:] if size <= TAIL_BYTES else lines[1:][-TAIL_LINES:])


class Child:
    """One long-lived process, owned by this object from launch() until it has been reaped.

    Lifecycle (as QEMU's python/qemu machine has it): launch(); then poll() or wait() for its end, or
    terminate() it — SIGTERM to its process group, SIGKILL after `grace` seconds — and kill() as the last
    resort. Every way out reaps it; as a context manager it is terminated on leaving the block.

    stdout and stderr go to log_file (appended) when given; otherwise stdout is discarded and stderr
    kept in a private temporary file. Either way the end of it is in the ExitStatus.

    With reap_tree, the command runs under imagegen/reaper.py, a subreaper that ends every process the
    command started, even one that left the process group, when the command ends or imagegen dies: for
    commands such as mkosi whose own children are not in a PID namespace that would die with them.
    pass_fds stay open in the child (with reap_tree, in the reaper alone): a lock whose descriptor is
    passed is held until the child has ended, even if imagegen dies first.

    poll(), wait() and terminate() may be called from two threads at once (a thread waiting for a guest
    asks whether QEMU still runs while the run's thread shuts it down): the child is reaped once.
    """

    def __init__(self, argv: Sequence[str | os.PathLike[str]], *, name: str | None = None,
                 cwd: Path | None = None, env: Mapping[str, str] | None = None, log_file: Path | None = None,
                 grace: float = 5.0, reap_tree: bool = False, pass_fds: Sequence[int] = ()) -> None:
        self.argv = [os.fspath(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.cwd = cwd
        self.env = env
        self.log_file = log_file
        self.grace = grace
        self.reap_tree = reap_tree
        self.pass_fds = tuple(pass_fds)
        self.status: ExitStatus | None = None  # set once reaped
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._output: IO[bytes] | None = None
        # Held while the child is reaped and its descriptors closed, which happen once, on whichever
        # thread first sees it ended.
        self._reaping = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def launch(self) -> Child:
        if self._popen is not None:
            raise RuntimeError(f"{self.name} was launched already")
        log.info("+ %s", shlex.join(self.argv))
        argv = self.argv
        if self.reap_tree:
            argv = [sys.executable, "-I", "-S", reaper.__file__, str(self.grace), "--", *argv]
        full_env = None if self.env is None else {**os.environ, **self.env}
        if self.log_file is not None:
            self._output = self.log_file.open("ab")
            stdout: IO[bytes] | int = self._output
        else:
            self._output = tempfile.TemporaryFile("w+b", prefix=f"imagegen-{self.name}-stderr-")
            stdout = subprocess.DEVNULL
        try:
            # Ctrl-C or SIGTERM between the fork and the end of launch() would leave a child nobody owns:
            # they wait until the child is ours, then raise here, and the child is ended on the way out.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, reaper.STOP_SIGNALS)
            try:
                self._popen = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._output, cwd=self.cwd,
                    env=full_env,
                    # Its own group: terminate() reaches what it started, and Ctrl-C on a terminal reaches
                    # only imagegen, which then ends its children in its own order (QMP quit first).
                    process_group=0, pass_fds=self.pass_fds,
                    preexec_fn=reaper.death_signal_preexec(signal.SIGKILL),
                )
                self._pidfd = os.pidfd_open(self._popen.pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            log.debug("%s runs as PID %d", self.name, self._popen.pid)
        except FileNotFoundError as e:
            self._close()
            raise CommandError(self.argv, 127, f"{self.argv[0]}: not found ({e})") from e
        except BaseException:
            if self._popen is not None:
                self.kill()
            self._close()
            raise
        return self

    def _read_tail(self) -> str:
        try:
            if self.log_file is not None:
                with self.log_file.open("rb") as f:
                    return _tail(f)
            return _tail(self._output) if self._output is not None else ""
        except OSError as e:
            return f"(its output could not be read: {e})"

    def _close(self) -> None:
        # Each is let go of before it is closed: a close cut short by Ctrl-C is never repeated on a
        # descriptor number that may name another file by then.
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            os.close(pidfd)
        output, self._output = self._output, None
        if output is not None:
            output.close()

    def poll(self) -> ExitStatus | None:
        """The child's ExitStatus once it has ended (reaping it), None while it runs."""
        if self.status is not None:
            return self.status
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never launched")
        with self._reaping:
            if self.status is not None:  # reaped by another thread while this one waited for the lock
                return self.status
            pid = self._popen.pid
            # Reaped already, by a poll that a Ctrl-C cut short before its status was recorded (while it
            # read the output's tail, say): its PID may name another process now.
            reaped = self._popen.returncode is not None
            if not reaped:
                try:
                    if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                        return None
                except ChildProcessError:
                    reaped = True
            if not reaped:
                # Ended but not reaped: its PID still names its process group and cannot be reused, so
                # whatever is left of the group is ours to end.
                self._signal_group(signal.SIGKILL)
            returncode = self._popen.wait()
            try:
                tail = self._read_tail()
            finally:
                self._close()
            self.status = ExitStatus(returncode, tail)
        log.debug("%s (PID %d) %s", self.name, pid, self.status.describe())
        return self.status

    @property
    def running(self) -> bool:
        return self._popen is not None and self.poll() is None

    @overload
    def wait(self, timeout: None = None) -> ExitStatus: ...
    @overload
    def wait(self, timeout: float) -> ExitStatus | None: ...

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Wait for the child's end; None if it still runs after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if (pidfd := self._pidfd) is not None:
                # A pidfd turns readable when the process ends. Another thread that reaps the child
                # closes it, and its number may then name another file: so the wait is bounded and a
                # closed descriptor only ends it early; poll() above tells.
                with contextlib.suppress(OSError, ValueError):
                    select.select([pidfd], [], [], 0.5 if left is None else min(left, 0.5))
            else:
                time.sleep(0.05 if left is None else min(left, 0.05))
        return status

    def _signal_group(self, sig: int) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def send_signal(self, sig: int) -> None:
        """Signal the child's whole process group (nothing once it has been reaped)."""
        if self.poll() is None:
            self._signal_group(sig)

    def terminate(self, grace: float | None = None) -> ExitStatus | None:
        """End the child: SIGTERM, then SIGKILL if it still runs after grace seconds; always reaped.
        None only if it was never launched."""
        if self._popen is None:
            return None
        if (status := self.poll()) is not None:
            return status
        grace = self.grace if grace is None else grace
        try:
            if self.reap_tree:
                # The reaper sends the SIGTERM to the group itself, once, and kills the tree after grace.
                os.kill(self._popen.pid, signal.SIGTERM)
                grace += 10.0
            else:
                self._signal_group(signal.SIGTERM)
            if (status := self.wait(grace)) is not None:
                return status
            log.warning("%s (PID %d) still runs %g s after SIGTERM: killing it", self.name, self._popen.pid,
                        grace)
        except BaseException:
            # Interrupted while waiting (a second Ctrl-C): it must not be left behind.
            self.kill()
            raise
        return self.kill()

    def kill(self) -> ExitStatus:
        """SIGKILL the child's process group and reap the child."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never launched")
        self.send_signal(signal.SIGKILL)
        return self.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.terminate()


def spawn(argv: Sequence[str | os.PathLike[str]], *, name: str | None = None, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, log_file: Path | None = None, grace: float = 5.0,
          reap_tree: bool = False, pass_fds: Sequence[int] = ()) -> Child:
    """Start argv beside imagegen and return the Child that owns it (see Child); use it in a `with`."""
    return Child(argv, name=name, cwd=cwd, env=env, log_file=log_file, grace=grace, reap_tree=reap_tree,
                 pass_fds=pass_fds).launch()
