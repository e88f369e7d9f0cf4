"""spawn(): a long-lived child is owned until reaped, ends with its owner however the owner ends, and says
how it ended. Plain processes only (sleep, sh, a Python child that forks), so these run in a second."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orphans import adopting, alive, living_descendants, wait_until_gone

from imagegen.errors import CommandError
from imagegen.run import Child, spawn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def adopted() -> Iterator[None]:
    with adopting():
        yield


def owner(code: str) -> subprocess.Popen[str]:
    """A Python process that owns children through spawn(), as imagegen does; it prints what it spawned."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def pids_from(proc: subprocess.Popen[str], count: int) -> list[int]:
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline()) for _ in range(count)]
    assert all(alive(p) for p in pids)
    return pids


GRANDCHILD = """\
import os, sys, time
pid = os.fork()
if pid == 0:
    {escape}
    time.sleep(300)
    os._exit(0)
print(pid, flush=True)
time.sleep(300)
"""


def forking_child(escape: str = "pass") -> list[str]:
    """A Python child that forks a grandchild and prints its PID (on stdout, or into a file)."""
    return [sys.executable, "-c", GRANDCHILD.format(escape=escape)]


def test_sigkill_of_the_owner_leaves_no_child() -> None:
    proc = owner("""
        import time
        from imagegen.run import Child, spawn
        child = spawn(["sleep", "300"])
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    (child,) = pids_from(proc, 1)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert wait_until_gone([child], 5) == [], living_descendants()


def test_sigkill_of_the_owner_leaves_nothing_of_a_reaped_tree(tmp_path: Path) -> None:
    # The grandchild leaves the process group and the session (as a daemon would): only the reaper can
    # find it once its parent is gone.
    pid_file = tmp_path / "grandchild"
    proc = owner(f"""
        import time
        from imagegen.run import Child, spawn
        argv = {forking_child(f"os.setsid(); open({str(pid_file)!r}, 'w').write(str(os.getpid()))")!r}
        child = spawn(argv, reap_tree=True, grace=1)
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    (reaper,) = pids_from(proc, 1)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the grandchild never started"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert alive(grandchild) and os.getsid(grandchild) != os.getsid(reaper)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert wait_until_gone([reaper, grandchild], 10) == [], living_descendants()


def test_terminate_ends_the_child_and_its_process_group() -> None:
    with spawn(forking_child(), log_file=None) as child:
        assert child.pid is not None
        deadline = time.monotonic() + 10
        while not (below := living_descendants(child.pid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = child.terminate()
    assert status is not None and status.returncode == -signal.SIGTERM
    assert status.describe() == "was killed by SIGTERM"
    assert wait_until_gone([child.pid, *below], 5) == []


def test_terminate_escalates_to_sigkill_after_the_grace() -> None:
    child = spawn([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', file=sys.stderr, flush=True); time.sleep(300)"])
    while "ready" not in _stderr_so_far(child):
        time.sleep(0.05)
    start = time.monotonic()
    status = child.terminate(grace=0.5)
    assert status is not None and status.returncode == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - start < 5
    assert not child.running


def _stderr_so_far(child: object) -> str:
    output = getattr(child, "_output")  # noqa: B009 - the test peeks at the kept stderr while the child runs
    output.seek(0)
    return output.read().decode()


def test_the_end_of_stderr_and_the_exit_status_are_reported() -> None:
    script = "for i in $(seq 1 40); do echo \"line $i\" >&2; done; echo 'not this: stdout'; exit 3"
    with spawn(["sh", "-c", script]) as child:
        status = child.wait(10)
    assert status is not None and status.returncode == 3 and not status.ok
    assert status.stderr_tail.splitlines()[-1] == "line 40"
    assert "line 1\n" not in status.stderr_tail, "the tail is bounded"
    assert "stdout" not in status.stderr_tail
    assert str(status) == "exited with status 3: line 38 / line 39 / line 40"


def test_with_a_log_file_both_streams_go_there_and_the_tail_comes_from_it(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("# header\n")
    with spawn(["sh", "-c", "echo out; echo err >&2; exit 1"], log_file=log) as child:
        status = child.wait(10)
    assert log.read_text() == "# header\nout\nerr\n"
    assert status is not None and status.returncode == 1 and status.stderr_tail.endswith("out\nerr")


def test_a_child_killed_by_a_signal_says_which() -> None:
    child = spawn(["sh", "-c", "kill -9 $$"])
    status = child.wait(10)
    assert status is not None and status.describe() == "was killed by SIGKILL"


def test_wait_with_a_timeout_returns_none_while_the_child_runs() -> None:
    with spawn(["sleep", "300"]) as child:
        start = time.monotonic()
        assert child.wait(0.3) is None
        assert 0.3 <= time.monotonic() - start < 2
        assert child.running and child.poll() is None
    assert not child.running and child.status is not None


def _ends_seen_by_four_threads(child: Child) -> list[object]:
    """What two threads waiting for child and two polling it saw of its end (or the error each ran into)."""
    seen: list[object] = []
    go = threading.Barrier(4)

    def watch(how: str) -> None:
        go.wait()
        try:
            if how == "wait":
                seen.append(child.wait(10))
            else:
                while child.running:
                    pass
                seen.append(child.poll())
        except Exception as e:  # what a second reaper ran into
            seen.append(e)

    threads = [threading.Thread(target=watch, args=(how,)) for how in ("wait", "wait", "poll", "poll")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return seen


def test_two_threads_that_wait_for_one_child_reap_it_once() -> None:
    # A thread waiting for a guest polls QEMU while the run's thread waits for it to end: both see the
    # same end, and neither fails on a child, a pidfd or a stderr file the other has already let go of.
    for _ in range(20):
        child = spawn(["sh", "-c", "echo bye >&2; exit 3"])
        seen = _ends_seen_by_four_threads(child)
        assert len(seen) == 4 and all(s is child.status for s in seen), seen
        assert child.status is not None and child.status.returncode == 3 and "bye" in child.status.last_words()


def test_a_reap_cut_short_by_ctrl_c_is_finished_by_the_clean_up_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C while poll() reads the tail of a child it has just reaped: the clean-up that follows
    # (terminate, as `with` calls it) must find the child ended, not wait for a PID that is no longer its.
    child = spawn(["sh", "-c", "exit 3"])
    assert child.pid is not None
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    read_tail = Child._read_tail

    def interrupted(self: Child) -> str:
        monkeypatch.setattr(Child, "_read_tail", read_tail)
        raise KeyboardInterrupt

    monkeypatch.setattr(Child, "_read_tail", interrupted)
    with pytest.raises(KeyboardInterrupt):
        child.poll()
    status = child.terminate()
    assert status is not None and status.returncode == 3 and not child.running


def test_a_missing_program_is_a_command_error() -> None:
    with pytest.raises(CommandError) as e:
        spawn(["no-such-program-anywhere"])
    assert e.value.returncode == 127


def test_the_reaper_ends_as_its_command_did_and_kills_what_it_left(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon"
    # A daemon of the command's own: double-forked and in a session of its own.
    script = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' & sleep 0.5; echo bye >&2; exit 3"
    with spawn(["sh", "-c", script], reap_tree=True) as child:
        status = child.wait(20)
    assert status is not None and status.returncode == 3 and status.stderr_tail.endswith("bye")
    assert wait_until_gone([int(pid_file.read_text())], 5) == []
    killed = spawn(["sh", "-c", "kill -TERM $$"], reap_tree=True).wait(20)
    assert killed is not None and killed.describe() == "was killed by SIGTERM"


def test_terminate_of_a_reaped_tree_gives_the_command_its_grace(tmp_path: Path) -> None:
    # mkosi removes its workspace on SIGTERM: the command must get the signal once and time to clean up.
    done = tmp_path / "cleaned"
    script = f"trap 'sleep 0.5; echo $((n+1)) > {done}; exit 0' TERM; n=0; echo ready >&2; " \
             "while :; do sleep 0.1; done"
    child = spawn(["sh", "-c", script], reap_tree=True, grace=10)
    while "ready" not in _stderr_so_far(child):
        time.sleep(0.05)
    status = child.terminate()
    assert status is not None and status.returncode == 0
    assert done.read_text() == "1\n"


def test_sigterm_of_the_owner_takes_the_clean_up_path_of_ctrl_c() -> None:
    proc = owner("""
        import time
        from imagegen.interrupt import terminate_as_interrupt
        from imagegen.run import Child, spawn
        terminate_as_interrupt()
        child = spawn(["sleep", "300"])
        try:
            with child:
                print(child.pid, flush=True)
                time.sleep(300)
        except KeyboardInterrupt as e:
            print(f"{type(e).__name__} {e}: sleep {child.status.describe()}", flush=True)
            time.sleep(300)  # still alive: a parent-death signal cannot be what ended the child
    """)
    (child,) = pids_from(proc, 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "Terminated SIGTERM: sleep was killed by SIGTERM"
    assert not alive(child)
    proc.kill()
    proc.wait()


def test_no_moment_of_ctrl_c_leaves_a_child_nobody_owns() -> None:
    # Ctrl-C between the fork and the child being owned (Popen still reading its exec pipe, spawn() not
    # yet returned) used to leave the child running. The owner stays alive afterwards, so that only its
    # clean-up, not a parent-death signal, can have ended each child.
    for attempt in range(12):
        proc = owner("""
            import sys, time
            from imagegen.run import Child, spawn
            print(0, flush=True)
            try:
                while True:
                    with spawn(["sleep", "300"]):
                        pass
            except KeyboardInterrupt:
                print(0, flush=True)
                time.sleep(300)
        """)
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.2 + attempt * 0.037)
        # CPython runs a signal's handler between bytecodes, and a KeyboardInterrupt raised while the
        # owner runs a finalizer (Popen.__del__ of the child before) is printed and dropped: that Ctrl-C
        # is lost to Python, not to imagegen. As a person would, press it again.
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            if select.select([proc.stdout], [], [], 10)[0]:
                break
        assert proc.stdout.readline() == "0\n", f"attempt {attempt}: the owner did not take Ctrl-C"
        assert proc.poll() is None, f"attempt {attempt}: the owner died, so its children's end proves nothing"
        left = {pid: cmd for pid, cmd in living_descendants(proc.pid).items()}
        proc.kill()
        proc.wait()
        assert left == {}, f"attempt {attempt}: {left}"


def test_a_lock_passed_to_a_reaped_tree_is_held_until_the_tree_has_ended(tmp_path: Path) -> None:
    # As the cache lock around mkosi: when imagegen is killed outright, the lock must not come free while
    # mkosi still cleans up. The command takes a second over its SIGTERM.
    lock = tmp_path / ".lock"
    proc = owner(f"""
        import fcntl, time
        from imagegen.run import Child, spawn
        f = open({str(lock)!r}, "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        script = "trap 'sleep 1; exit 0' TERM; echo $$; while :; do sleep 0.1; done"
        child = spawn(["sh", "-c", script], reap_tree=True, grace=10, pass_fds=(f.fileno(),))
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    (reaper,) = pids_from(proc, 1)
    deadline = time.monotonic() + 10
    while not (command := [p for p, cmd in living_descendants(reaper).items() if cmd.startswith("sh -c")]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not any(os.path.realpath(f"/proc/{command[0]}/fd/{fd}") == str(lock)
                   for fd in os.listdir(f"/proc/{command[0]}/fd")), "the command itself must not hold it"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with lock.open() as f:
        deadline = time.monotonic() + 20
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the lock was never released"
                time.sleep(0.02)
        assert not alive(command[0]), "the lock came free while the command still ran"
        # The reaper's descriptors close as it exits, a moment before it shows as ended.
        assert wait_until_gone([reaper], 2) == []


def test_a_second_sigterm_does_not_cut_the_clean_up_short() -> None:
    # A supervisor may send SIGTERM again while imagegen is still stopping its children.
    proc = owner("""
        import time
        from imagegen.interrupt import terminate_as_interrupt
        from imagegen.run import Child, spawn
        terminate_as_interrupt()
        try:
            with spawn(["sleep", "300"]) as child:
                print(child.pid, flush=True)
                time.sleep(300)
        except KeyboardInterrupt:
            try:
                print("cleaning up", flush=True)
                time.sleep(1.5)
                print("cleaned up", flush=True)
            except KeyboardInterrupt:
                print("cut short", flush=True)
    """)
    (child,) = pids_from(proc, 1)
    assert proc.stdout is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "cleaning up"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "cleaned up"
    assert proc.wait(10) == 0
    assert not alive(child)
