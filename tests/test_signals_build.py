"""SIGTERM and SIGKILL of `imagegen build` while mkosi installs packages: no process of mkosi's tree (its
sandboxed apt and dpkg included) is left, and the cache and store locks come free only after it is gone.

A fresh store and mkosi cache in the test's directory make mkosi start from nothing, so it is soon deep
in apt; the run is stopped there, long before the image would be done. "Ours" is exact as in
tests/test_signals_vm.py: the test process is a child subreaper while imagegen runs.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orphans import adopting, living_descendants

from imagegen.image.config import repo_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.geteuid() != 0, reason="mkosi image builds need root"),
]

EXAMPLE = repo_root() / "examples" / "laptop.toml"
# dpkg unpacking into the image being built, inside mkosi's sandbox (a few generations below mkosi, after
# the downloads): the moment a stray process would do the most harm.
DEEP = ("dpkg --root=",)


def in_mkosi_sandbox() -> list[str]:
    """The package tools running below a mkosi of ours."""
    mkosis = [pid for pid, cmd in living_descendants().items() if " -m mkosi " in cmd]
    return [cmd for m in mkosis for cmd in living_descendants(m).values() if any(d in cmd for d in DEEP)]


def free(lock: Path) -> bool:
    with lock.open() as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def locks(tmp: Path) -> list[Path]:
    return sorted([*(tmp / "cache").rglob(".lock"), *(tmp / "store").glob("*.lock")])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_mkosi_leaves_no_process_and_frees_the_locks_after(tmp_path: Path,
                                                                           sig: signal.Signals) -> None:
    (tmp_path / "laptop.toml").write_text(EXAMPLE.read_text())
    # mkosi puts its workspace under $XDG_CACHE_HOME/mkosi when that exists: here, where it can be checked.
    (tmp_path / "xdg" / "mkosi").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(repo_root()), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    log = tmp_path / "imagegen.log"
    with adopting(), log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from imagegen.cli import app; app()", "build", "laptop.toml", "--lab",
             "--store", str(tmp_path / "store"), "--cache-dir", str(tmp_path / "cache")],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)

        def said() -> str:
            return log.read_text(errors="replace")[-3000:]

        deadline = time.monotonic() + 600
        while not in_mkosi_sandbox():
            assert proc.poll() is None, said()
            assert time.monotonic() < deadline, f"mkosi never reached apt: {living_descendants()}"
            time.sleep(0.1)
        workspace = tmp_path / "xdg" / "mkosi"
        assert list(workspace.glob("mkosi-workspace-*")), "mkosi works in a workspace the test can check"
        held = locks(tmp_path)
        cache_lock = tmp_path / "cache" / "debian~trixie~lab" / ".lock"
        image_lock = next(lock for lock in held if lock.name.endswith("-image.lock"))
        assert not free(cache_lock) and not free(image_lock), (proc.poll(), said())

        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(10)
            # imagegen is gone at once; its reaper now ends mkosi, holding the cache lock until it has.
            until = time.monotonic() + 60
            while not free(cache_lock):
                assert time.monotonic() < until, living_descendants()
                time.sleep(0.02)
            assert living_descendants() == {}, "the cache lock came free while mkosi's tree still ran"
        else:
            sent = time.monotonic()
            proc.wait(120)
            print(f"imagegen build exited {time.monotonic() - sent:.1f} s after SIGTERM")
            assert proc.returncode != 0, said()
            # imagegen returned only after its children: nothing is left at the moment it exits.
            assert living_descendants() == {}, said()
            # mkosi had the time to clean up after itself.
            assert not list(workspace.glob("mkosi-workspace-*")), said()
        assert all(free(lock) for lock in locks(tmp_path)), said()
