"""A real QEMU, started paused (no guest code runs, so it takes a second): QMP plumbing and clean-up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagegen.run import run
from imagegen.vm.lab import LAB_NICS, WIRED_NIC
from imagegen.vm.machine import ImageFiles, Machine
from imagegen.vm.qemu import OVMF_CODE, OVMF_VARS

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not OVMF_CODE.exists() or not OVMF_VARS.exists(),
    reason="needs qemu-system-x86_64 and OVMF (imagegen setup installs them)")


@pytest.fixture
def image(tmp_path: Path) -> ImageFiles:
    raw = tmp_path / "image.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "16M"])
    return ImageFiles(raw, None, None)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_paused_vm_over_qmp_then_everything_removed(image: ImageFiles, tmp_path: Path) -> None:
    before = image.image.read_bytes()
    with Machine(image, accel="tcg", nics=LAB_NICS, uefi=True) as m:
        m.launch(paused=True)
        assert m.pid is not None and m.running
        pid, run_dir = m.pid, m.run_dir
        assert m.qmp.status() == "prelaunch"
        assert {WIRED_NIC.id, "nic-uplink"} <= set(m.qmp.devices())
        m.qmp.set_link(WIRED_NIC.id, False)
        m.qmp.set_link(WIRED_NIC.id, True)
        assert m.sockets.qmp.exists() and (run_dir / "disk.qcow2").exists()
    assert gone(pid)
    assert not run_dir.exists()
    # The image is only ever a backing file.
    assert image.image.read_bytes() == before


def test_an_exception_inside_still_stops_qemu(image: ImageFiles) -> None:
    machine = Machine(image, accel="tcg", nics=LAB_NICS, uefi=True)
    with pytest.raises(RuntimeError, match="scenario blew up"), machine:
        machine.launch(paused=True)
        pid = machine.pid
        raise RuntimeError("scenario blew up")
    assert pid is not None and gone(pid)
    assert not machine.run_dir.exists()


def test_bad_command_line_is_a_clear_error_and_leaves_nothing(image: ImageFiles, tmp_path: Path) -> None:
    missing = ImageFiles(image.image, tmp_path / "no-such-kernel", None)
    machine = Machine(missing, accel="tcg", nics=LAB_NICS)
    with pytest.raises(Exception, match="no-such-kernel"):
        machine.launch()
    assert not machine.run_dir.exists()
    assert not any(p.name.startswith("imagegen-vm-") and p == machine.run_dir for p in Path("/tmp").iterdir())
    assert os.path.exists(image.image)
