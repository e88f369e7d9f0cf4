"""Ctrl-C, SIGTERM and SIGKILL of `imagegen test` while its VM boots: no QEMU of ours is left 10 s later.

"Ours" is exact: the test process is a child subreaper for the run (tests/orphans.py), so every process
imagegen started is still below it after imagegen is gone, wherever the kernel reparented it; and QEMU's
command line names the run directory under this test's own TMPDIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from example_copy import copy_laptop
from orphans import adopting, cmdline, living_descendants

from imagegen.image.config import repo_root

pytestmark = [
    pytest.mark.vm,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab image build needs root"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed"),
]

EXAMPLE = repo_root() / "examples" / "laptop.toml"


def qemus(tmp: Path) -> dict[int, str]:
    """Every qemu-system process on the machine that belongs to this test: below it, or naming its TMPDIR."""
    below = {pid: cmd for pid, cmd in living_descendants().items() if "qemu-system" in cmd}
    named = {int(p): cmdline(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    return below | {pid: cmd for pid, cmd in named.items() if "qemu-system" in cmd and str(tmp) in cmd}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sig")
    copy_laptop(d, with_state=True)
    return d


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_boot_leaves_no_qemu(workdir: Path, tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root()), "TMPDIR": str(tmp_path)}
    with adopting():
        # Its own process group, as a shell gives a foreground job: SIGINT goes to the group, as Ctrl-C does.
        proc = subprocess.Popen(
            [sys.executable, "-c", "from imagegen.cli import app; app()", "test", "laptop.toml", "--rerun",
             "--accel", "tcg", "--scenario", "boot-wired-primary", "--artifacts", str(tmp_path / "artifacts")],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0)
        deadline = time.monotonic() + 1200  # the first run may build the lab image
        while not (seen := qemus(tmp_path)):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "QEMU never started"
            time.sleep(0.2)
        time.sleep(5)  # the guest's kernel is booting
        assert qemus(tmp_path) == seen, "the VM died by itself before the signal"
        if sig == signal.SIGINT:
            # gc while the VM boots: no generation or link keeps the lab image (--keep 0), but its hold
            # does, so not even a dry run lists it.
            kernel = Path(next(iter(seen.values())).split(" -kernel ", 1)[1].split(" ", 1)[0])
            gc = subprocess.run([sys.executable, "-c", "from imagegen.cli import app; app()", "gc", "--keep", "0",
                                 "--dry-run"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            assert gc.returncode == 0, gc.stdout + gc.stderr
            assert "-lab-image" in kernel.parent.name and kernel.parent.name not in gc.stdout, gc.stdout

        sent = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
        print(f"{sig.name}: imagegen exited {time.monotonic() - sent:.1f} s after the signal")
        time.sleep(max(0.0, sent + 10 - time.monotonic()))

        assert qemus(tmp_path) == {}, output[-3000:]
        assert living_descendants() == {}, output[-3000:]
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode != 0, output[-3000:]
            # The clean-up path ran: QEMU was stopped in order and its run directory removed.
            assert not list(tmp_path.glob("imagegen-vm-*")), output[-3000:]
