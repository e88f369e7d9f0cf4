"""One QEMU process whose lifetime is the Machine object's: launched, then always stopped and reaped.

QEMU is imagegen's own child, started by imagegen.run.spawn() (no -daemonize, no pidfile): the kernel
ends it if imagegen dies, and when it ends by itself its exit status and the end of its stderr say why.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imagegen.errors import ImagegenError, UsageError
from imagegen.run import Child, ExitStatus, run, spawn
from imagegen.vm.agent import GuestAgent
from imagegen.vm.qemu import OVMF_VARS, Accel, Boot, Disk, Nic, Sockets, VmSpec, build_argv, qemu_binary
from imagegen.vm.qmp import Monitor

log = logging.getLogger("imagegen.vm.machine")

ROOT_PARTLABEL = "root-x86-64"
# systemd.firstboot=no: firstboot would otherwise wait for input on the console of a fresh image.
# status_unit_format=name: the console's "Stopping/Stopped UNIT" lines, which the shutdown scenario
# reads for the stop order, then carry the unit's name untruncated instead of name and description.
DIRECT_BOOT_CMDLINE = (f"root=PARTLABEL={ROOT_PARTLABEL} rw console=ttyS0 systemd.firstboot=no "
                       "systemd.status_unit_format=name panic=-1")


@dataclass(frozen=True)
class ImageFiles:
    """What the build stage hands over: the disk and the kernel and initrd inside it."""

    image: Path
    kernel: Path | None
    initrd: Path | None

    @classmethod
    def from_dir(cls, out: Path) -> ImageFiles:
        image = out / "image.raw"
        if not image.is_file():
            raise UsageError(f"no image at {image}", "build it with `imagegen build PROFILE --lab`")
        kernel, initrd = out / "image.vmlinuz", out / "image.initrd"
        return cls(image, kernel if kernel.is_file() else None, initrd if initrd.is_file() else None)


class QemuExited(ImagegenError):
    """QEMU ended while it was needed: its exit status and last stderr lines say why."""

    def __init__(self, status: ExitStatus, when: str = "") -> None:
        words = status.last_words()
        super().__init__(f"QEMU {status.describe()}{when}" + (f": {words}" if words else ""))
        self.status = status


def cmdline_of(pid: int) -> str:
    """The command line of a process, arguments joined by spaces; "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def panic_line(serial_log: Path) -> str | None:
    """The guest kernel's panic message on the console, with the oops that caused it if there was one:
    e.g. "Oops: int3 ... RIP: 0010:sched_clock_cpu+0x9/0x1d0; Kernel panic - not syncing: Fatal exception"."""
    try:
        lines = serial_log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    def text(line: str) -> str:
        return line.split("] ", 1)[-1].strip()
    panic = next((text(line) for line in lines if "Kernel panic - not syncing" in line), None)
    if panic is None:
        return None
    oops = next((text(line) for line in lines if "Oops:" in line or "BUG:" in line), None)
    rip = next((text(line) for line in lines if " RIP: " in line or line.startswith("RIP: ")), None)
    return "; ".join(x for x in (oops, rip, panic) if x)


class Machine:
    """A lab VM. Use as a context manager, or call launch() and then shutdown() in a finally."""

    def __init__(self, files: ImageFiles, *, accel: Accel, nics: tuple[Nic, ...], uefi: bool = False,
                 memory_mib: int = 2048, cpus: int = 2, cmdline: str = DIRECT_BOOT_CMDLINE,
                 run_dir: Path | None = None) -> None:
        if not uefi and files.kernel is None:
            raise UsageError(f"no kernel next to {files.image}", "use --uefi or rebuild the image")
        self.files = files
        self.accel = accel
        self.nics = nics
        self.uefi = uefi
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.cmdline = cmdline
        self._own_run_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="imagegen-vm-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sockets = Sockets(qmp=self.run_dir / "qmp.sock", agent=self.run_dir / "qga.sock",
                               serial=self.run_dir / "serial.sock",
                               serial_log=self.run_dir / "serial.log")
        self.qmp = Monitor(self.sockets.qmp)
        self.agent = GuestAgent(self.sockets.agent)
        self.qemu: Child | None = None
        self.launched_at: float | None = None  # host wall clock when the guest CPUs started

    def nic(self, nic_id: str) -> Nic:
        for n in self.nics:
            if n.id == nic_id:
                return n
        raise KeyError(nic_id)

    def spec(self, *, start_paused: bool = False, serial_on_stdio: bool = False) -> VmSpec:
        overlay = self.run_dir / "disk.qcow2"
        boot = (Boot(uefi=True, ovmf_vars=self.run_dir / "OVMF_VARS.fd") if self.uefi else
                Boot(kernel=self.files.kernel, initrd=self.files.initrd, cmdline=self.cmdline))
        return VmSpec(accel=self.accel, boot=boot, disk=Disk(self.files.image, overlay),
                      sockets=self.sockets, nics=self.nics, memory_mib=self.memory_mib, cpus=self.cpus,
                      serial_on_stdio=serial_on_stdio, start_paused=start_paused,
                      # A guest panic (panic=-1) ends QEMU instead of rebooting in a loop: a boot that
                      # dies is seen at once (GuestGone), with its panic line. reboot() lets the one
                      # reset it asks for through.
                      extra=("-no-reboot",))

    def _prepare_disk(self) -> None:
        # The image itself is only ever a read-only backing file.
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
             "-b", str(self.files.image.resolve()), str(self.run_dir / "disk.qcow2")])
        if self.uefi:
            shutil.copyfile(OVMF_VARS, self.run_dir / "OVMF_VARS.fd")

    @property
    def pid(self) -> int | None:
        return self.qemu.pid if self.qemu is not None else None

    @property
    def exit_status(self) -> ExitStatus | None:
        """How QEMU ended; None while it runs or before it started."""
        return self.qemu.poll() if self.qemu is not None else None

    def launch(self, *, paused: bool = False) -> None:
        """Start QEMU and connect QMP. With paused, the CPUs wait for resume() (QMP set-up first).
        A QEMU that exits meanwhile (a bad command line, a kernel it cannot load) is a QemuExited."""
        if self.qemu is not None:
            raise ImagegenError("the machine was launched already")
        try:
            self._prepare_disk()
            self.qemu = spawn(build_argv(self.spec(start_paused=paused), qemu_binary()), name="QEMU")
            try:
                # The budget -daemonize had for QEMU to set up, now spent waiting for its QMP socket.
                self.qmp.connect(timeout=120, alive=lambda: self.running)
            except ImagegenError as e:
                if (status := self.exit_status) is not None:
                    raise QemuExited(status, " before QMP answered") from e
                raise
            if not paused:
                self.launched_at = time.time()
        except BaseException:
            self.shutdown()
            raise

    def resume(self) -> None:
        self.qmp.cont()
        self.launched_at = time.time()

    def interactive(self) -> int:
        """Run in the foreground with the serial console on this terminal, until QEMU exits."""
        self._prepare_disk()
        argv = build_argv(self.spec(serial_on_stdio=True), qemu_binary())
        try:
            return run(argv, check=False, capture=False).returncode
        finally:
            self._cleanup_files()

    @property
    def running(self) -> bool:
        return self.qemu is not None and self.qemu.poll() is None

    def wait_exit(self, timeout: float | None) -> bool:
        """Wait until QEMU has ended (None: however long that takes); False if it still runs."""
        return self.qemu is None or self.qemu.wait(timeout) is not None

    def powerdown(self, timeout: float) -> float:
        """ACPI power button; returns seconds until QEMU exited. Raises if it did not within timeout."""
        start = time.monotonic()
        self.qmp.system_powerdown()
        if not self.wait_exit(timeout):
            raise ImagegenError(f"the guest did not power off within {timeout:.0f} s")
        return time.monotonic() - start

    def reboot(self, timeout: float) -> float:
        """Reboot the guest (`systemctl reboot`) and wait until its agent answers again; returns the
        seconds from the request to that answer. The same QEMU, disk and serial log go on.

        Under -no-reboot every reset is a shutdown (QMP system_reset's too), and QEMU would exit. So the
        guest's reset is let through for this one reboot: QMP set-action reboot=reset until QEMU reports
        the reset (its RESET event), then reboot=shutdown again. A kernel panic still ends QEMU at every
        other time, the boot after this reset included; dropping -no-reboot for the lab would instead
        boot a panicking guest over and over until a timeout.
        """
        start = time.monotonic()
        deadline = start + timeout
        mark = len(self.qmp.events)
        self.qmp.cmd("set-action", reboot="reset")
        try:
            # guest-exec answers with a pid at once; systemctl only queues the reboot job.
            self.agent.cmd("guest-exec", path="systemctl", arg=["reboot"])
            while True:
                try:
                    self.qmp.wait_event("RESET", 2.0, since=mark, guest=True)
                    break
                except (TimeoutError, OSError, EOFError):
                    if not self.running:
                        raise QemuExited(self.exit_status or ExitStatus(-1), " while the guest rebooted") from None
                    if time.monotonic() > deadline:
                        raise ImagegenError(f"the guest did not reset for its reboot within {timeout:.0f} s") from None
        finally:
            if self.running:
                self.qmp.cmd("set-action", reboot="shutdown")
        self.agent.close()  # the old guest's agent is gone; its answers are not waited for
        self.agent.wait_ready(max(1.0, deadline - time.monotonic()), alive=lambda: self.running)
        return time.monotonic() - start

    def shutdown(self) -> None:
        """Stop QEMU now (QMP quit, then SIGTERM, then SIGKILL), reap it, close channels, remove the run dir."""
        self.agent.close()
        if self.running and self.qmp.connected:
            self.qmp.quit()
            self.wait_exit(5)
        self.qmp.close()
        if self.qemu is not None:
            self.qemu.terminate(grace=5)
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        for p in (self.sockets.qmp, self.sockets.agent, self.sockets.serial,
                  self.run_dir / "disk.qcow2", self.run_dir / "OVMF_VARS.fd"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if self._own_run_dir:
            # The serial log goes with the directory: save what you need (artifacts) before this.
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
