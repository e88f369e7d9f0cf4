"""The QEMU command line of a lab VM, built from a frozen description and nothing else."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from imagegen.errors import UsageError

Accel = Literal["kvm", "tcg"]

# Debian's ovmf package; the 4M build is the one current systemd-boot images are tested with.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass(frozen=True)
class Nic:
    """A virtio NIC on its own PCIe root port, so that device_del can unplug it."""

    id: str
    mac: str
    netdev: str
    port: str
    chassis: int

    def device_args(self) -> dict[str, str]:
        """The properties of -device and of QMP device_add, which must agree for a replug."""
        return {"driver": "virtio-net-pci", "id": self.id, "netdev": self.netdev, "mac": self.mac,
                "bus": self.port}


@dataclass(frozen=True)
class Disk:
    """The image to boot and the copy-on-write overlay that keeps it unmodified."""

    image: Path
    overlay: Path


@dataclass(frozen=True)
class Boot:
    """Direct kernel boot (kernel + initrd + cmdline) or, with uefi, OVMF and the ESP."""

    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    uefi: bool = False
    ovmf_vars: Path | None = None  # a writable copy of OVMF_VARS, one per VM


@dataclass(frozen=True)
class Sockets:
    """Where the VM's control channels and logs live on the host."""

    qmp: Path
    agent: Path
    serial: Path
    serial_log: Path


@dataclass(frozen=True)
class VmSpec:
    accel: Accel
    boot: Boot
    disk: Disk | None
    sockets: Sockets
    nics: tuple[Nic, ...] = ()
    memory_mib: int = 2048
    cpus: int = 2
    # Interactive runs put the serial console on the terminal instead of a socket.
    serial_on_stdio: bool = False
    start_paused: bool = False
    extra: tuple[str, ...] = field(default=())


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise UsageError("qemu-system-x86_64 not found",
                         "install Debian's qemu-system-x86 (the project's setup command does)")
    return path


def _props(kind: str, props: dict[str, str]) -> str:
    return ",".join([kind, *(f"{k}={v}" for k, v in props.items())])


def build_argv(spec: VmSpec, binary: str = "qemu-system-x86_64") -> list[str]:
    """The full argv for spec; pure, so that tests can read it."""
    s = spec.sockets
    argv = [
        binary,
        "-name", "imagegen-lab",
        "-machine", f"q35,accel={spec.accel}",
        "-cpu", "max",
        "-smp", str(spec.cpus),
        "-m", str(spec.memory_mib),
        "-nodefaults",
        # A screen that QMP screendump reads and that Wayland compositors can drive: cage does not
        # start on QEMU's -vga std, virtio-gpu gives the guest a KMS device (NixOS's cage test uses it).
        # -display none: no window on the host; the screen exists for the guest and for screendump.
        "-vga", "none",
        "-device", "virtio-gpu-pci",
        "-display", "none",
        "-rtc", "base=utc",
        # QMP: the only way the test drives the VM.
        "-chardev", f"socket,id=qmp0,path={s.qmp},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
        # hostapd and the supplicant block on entropy early in boot without it.
        "-device", "virtio-rng-pci",
        # qemu-guest-agent's unit is started by udev when this named port shows up.
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=qga0,path={s.agent},server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    ]
    if spec.serial_on_stdio:
        # mux: Ctrl-A c reaches the monitor, Ctrl-A x quits; signal=off lets Ctrl-C reach the guest.
        argv += ["-chardev", f"stdio,id=ser0,mux=on,signal=off,logfile={s.serial_log}",
                 "-serial", "chardev:ser0", "-mon", "chardev=ser0,mode=readline"]
    else:
        argv += ["-chardev", f"socket,id=ser0,path={s.serial},server=on,wait=off,logfile={s.serial_log}",
                 "-serial", "chardev:ser0"]

    if spec.disk is not None:
        argv += ["-drive", f"if=none,id=root,format=qcow2,file={spec.disk.overlay},discard=unmap",
                 "-device", "virtio-blk-pci,drive=root,bootindex=1"]

    b = spec.boot
    if b.uefi:
        if b.ovmf_vars is None:
            raise ValueError("UEFI boot needs a writable copy of the OVMF variables")
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={b.ovmf_vars}"]
    elif b.kernel is not None:
        argv += ["-kernel", str(b.kernel)]
        if b.initrd is not None:
            argv += ["-initrd", str(b.initrd)]
        if b.cmdline:
            argv += ["-append", b.cmdline]

    for nic in spec.nics:
        argv += ["-device", _props("pcie-root-port", {"id": nic.port, "chassis": str(nic.chassis)}),
                 # One hub joins every NIC: wired and AP uplink share one L2 segment and nothing else.
                 "-netdev", f"hubport,id={nic.netdev},hubid=0",
                 "-device", _props(nic.device_args()["driver"],
                                   {k: v for k, v in nic.device_args().items() if k != "driver"})]
    if spec.start_paused:
        argv.append("-S")
    argv += list(spec.extra)
    return argv
