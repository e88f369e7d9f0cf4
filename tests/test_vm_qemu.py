from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.vm.accel import choose_accel
from imagegen.vm.lab import LAB_NICS, WIRED_NIC
from imagegen.vm.machine import DIRECT_BOOT_CMDLINE, ImageFiles, Machine
from imagegen.vm.qemu import Boot, Disk, Sockets, VmSpec, build_argv


def sockets(tmp: Path) -> Sockets:
    return Sockets(qmp=tmp / "qmp.sock", agent=tmp / "qga.sock", serial=tmp / "serial.sock",
                   serial_log=tmp / "serial.log")


def spec(tmp: Path, **kw) -> VmSpec:
    base = dict(accel="tcg", boot=Boot(kernel=tmp / "vmlinuz", initrd=tmp / "initrd", cmdline=DIRECT_BOOT_CMDLINE),
                disk=Disk(tmp / "image.raw", tmp / "disk.qcow2"), sockets=sockets(tmp), nics=LAB_NICS)
    base.update(kw)
    return VmSpec(**base)


def value_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_direct_kernel_boot_machine(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path))
    assert value_after(argv, "-machine") == ["q35,accel=tcg"]
    assert value_after(argv, "-cpu") == ["max"]
    assert value_after(argv, "-smp") == ["2"] and value_after(argv, "-m") == ["2048"]
    assert value_after(argv, "-kernel") == [str(tmp_path / "vmlinuz")]
    assert value_after(argv, "-initrd") == [str(tmp_path / "initrd")]
    append = value_after(argv, "-append")[0]
    for word in ("root=PARTLABEL=root-x86-64", "console=ttyS0", "systemd.firstboot=no"):
        assert word in append.split()
    assert "-S" not in argv
    assert not any("pflash" in a for a in argv)


def test_disk_is_the_overlay_never_the_image(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path))
    drives = value_after(argv, "-drive")
    assert drives == [f"if=none,id=root,format=qcow2,file={tmp_path / 'disk.qcow2'},discard=unmap"]
    assert not any(str(tmp_path / "image.raw") in a for a in argv)


def test_nics_on_root_ports_joined_by_one_hub(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path))
    devices = value_after(argv, "-device")
    netdevs = value_after(argv, "-netdev")
    for nic in LAB_NICS:
        assert f"pcie-root-port,id={nic.port},chassis={nic.chassis}" in devices
        assert f"virtio-net-pci,id={nic.id},netdev={nic.netdev},mac={nic.mac},bus={nic.port}" in devices
        assert f"hubport,id={nic.netdev},hubid=0" in netdevs
    # Root ports come before the NICs plugged into them.
    assert argv.index(f"pcie-root-port,id={WIRED_NIC.port},chassis=1") < argv.index(
        f"virtio-net-pci,id={WIRED_NIC.id},netdev={WIRED_NIC.netdev},mac={WIRED_NIC.mac},bus={WIRED_NIC.port}")


def test_control_channels(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path))
    chardevs = value_after(argv, "-chardev")
    assert f"socket,id=qmp0,path={tmp_path / 'qmp.sock'},server=on,wait=off" in chardevs
    assert "chardev=qmp0,mode=control" in value_after(argv, "-mon")
    assert f"socket,id=qga0,path={tmp_path / 'qga.sock'},server=on,wait=off" in chardevs
    assert "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0" in value_after(argv, "-device")
    assert any(c.startswith("socket,id=ser0,") and f"logfile={tmp_path / 'serial.log'}" in c for c in chardevs)
    # QEMU is imagegen's own child: no daemonizing, no pidfile to find it by.
    assert "-daemonize" not in argv and "-pidfile" not in argv


def test_display_is_virtio_gpu_without_a_host_window(tmp_path: Path) -> None:
    for s in (spec(tmp_path), spec(tmp_path, serial_on_stdio=True),
              spec(tmp_path, boot=Boot(uefi=True, ovmf_vars=tmp_path / "vars.fd"))):
        argv = build_argv(s)
        # -nodefaults adds no VGA card; -vga none says so explicitly, one virtio-gpu is the only screen.
        assert value_after(argv, "-vga") == ["none"]
        assert value_after(argv, "-display") == ["none"]
        assert [d for d in value_after(argv, "-device") if "gpu" in d or "vga" in d.lower()] == ["virtio-gpu-pci"]


def test_paused_start_and_uefi(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, start_paused=True,
                           boot=Boot(uefi=True, ovmf_vars=tmp_path / "vars.fd")))
    assert "-S" in argv
    assert "-kernel" not in argv
    drives = value_after(argv, "-drive")
    assert any(d.startswith("if=pflash") and "readonly=on" in d and "OVMF_CODE" in d for d in drives)
    assert any(d.startswith("if=pflash") and str(tmp_path / "vars.fd") in d for d in drives)


def test_replug_uses_the_same_properties_as_the_command_line() -> None:
    assert WIRED_NIC.device_args() == {"driver": "virtio-net-pci", "id": "nic-wired", "netdev": WIRED_NIC.netdev,
                                       "mac": WIRED_NIC.mac, "bus": WIRED_NIC.port}


def test_image_files_need_an_image(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no image"):
        ImageFiles.from_dir(tmp_path)
    (tmp_path / "image.raw").write_bytes(b"")
    files = ImageFiles.from_dir(tmp_path)
    assert files.kernel is None
    with pytest.raises(UsageError, match="no kernel"):
        Machine(files, accel="tcg", nics=LAB_NICS, run_dir=tmp_path / "run")


def test_accel_tcg_on_request_and_kvm_needs_a_kernel() -> None:
    assert choose_accel("tcg", None).accel == "tcg"
    assert choose_accel("auto", None).accel == "tcg"
    with pytest.raises(UsageError, match="--accel kvm"):
        choose_accel("kvm", None)


class RebootQmp:
    """QMP as QEMU answers a reboot: the guest's RESET event after `resets_after` waits for it."""

    def __init__(self, resets_after: int | None) -> None:
        self.resets_after = resets_after
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.events: list[object] = []
        self.waits = 0

    def cmd(self, command: str, /, **args: object) -> object:
        self.calls.append((command, args))
        return {}

    def wait_event(self, name: str, timeout: float, since: int = 0, **match: object) -> object:
        assert (name, match) == ("RESET", {"guest": True})
        self.waits += 1
        if self.resets_after is None or self.waits <= self.resets_after:
            raise TimeoutError("no RESET")
        return object()


class RebootAgent:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def cmd(self, command: str, /, timeout: float = 30.0, **args: object) -> object:
        self.calls.append(f"{command} {args.get('path')} {args.get('arg')}")
        return {"pid": 1}

    def close(self) -> None:
        self.calls.append("close")

    def wait_ready(self, timeout: float, alive: object = None) -> float:
        self.calls.append("wait_ready")
        return 1.0


class Child:
    def __init__(self) -> None:
        self.status: object = None
        self.pid = 1

    def poll(self) -> object:
        return self.status


def rebooting_vm(tmp_path: Path, qmp: RebootQmp) -> tuple[Machine, RebootAgent, Child]:
    (tmp_path / "image.raw").write_bytes(b"")
    vm = Machine(ImageFiles(tmp_path / "image.raw", tmp_path / "vmlinuz", None), accel="tcg", nics=LAB_NICS,
                 run_dir=tmp_path / "run")
    agent, child = RebootAgent(), Child()
    vm.qmp, vm.agent, vm.qemu = qmp, agent, child  # type: ignore[assignment]
    return vm, agent, child


def test_reboot_lets_one_guest_reset_through_then_guards_again(tmp_path: Path) -> None:
    qmp = RebootQmp(resets_after=2)
    vm, agent, _ = rebooting_vm(tmp_path, qmp)
    assert vm.reboot(timeout=60) >= 0
    # -no-reboot turns every reset into an exit: reset allowed for this one, and the guard back before
    # the new boot runs far.
    assert qmp.calls == [("set-action", {"reboot": "reset"}), ("set-action", {"reboot": "shutdown"})]
    assert agent.calls == ["guest-exec systemctl ['reboot']", "close", "wait_ready"]
    assert qmp.waits == 3


def test_a_qemu_that_ends_during_the_reboot_says_so(tmp_path: Path) -> None:
    from imagegen.run import ExitStatus
    from imagegen.vm.machine import QemuExited

    qmp = RebootQmp(resets_after=None)
    vm, agent, child = rebooting_vm(tmp_path, qmp)
    child.status = ExitStatus(1, "qemu: fatal")
    with pytest.raises(QemuExited, match="while the guest rebooted"):
        vm.reboot(timeout=60)
    assert qmp.calls == [("set-action", {"reboot": "reset"})], "a gone QEMU is not asked anything more"
