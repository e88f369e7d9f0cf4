"""Choose KVM or TCG by booting, not by looking at /dev/kvm.

/dev/kvm can exist while KVM guests hang or abort (QEMU 7.2 on some hosts: "failed to set MSR 0x10a").
The probe boots the image's own kernel with no root file system and panic=-1: a working accelerator
reaches the panic and QEMU exits by itself (-no-reboot) within seconds; a broken one aborts or hangs.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imagegen.errors import CommandError, UsageError
from imagegen.run import run
from imagegen.vm.qemu import Accel, qemu_binary

AccelRequest = Literal["auto", "kvm", "tcg"]

PROBE_TIMEOUT = 20.0
PANIC_MARK = "Kernel panic"


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str

    @property
    def agent_timeout(self) -> float:
        """How long a lab boot may take to a guest agent that answers: emulation is several times slower."""
        return 900.0 if self.accel == "tcg" else 300.0


def probe_kvm(kernel: Path, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot kernel under KVM until its panic; True when that works, with what was seen."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="imagegen-kvm-probe-") as tmp:
        log = Path(tmp) / "serial.log"
        argv = [qemu_binary(), "-machine", "q35,accel=kvm", "-cpu", "max", "-m", "256", "-smp", "1",
                "-nodefaults", "-display", "none", "-no-reboot",
                "-serial", f"file:{log}", "-kernel", str(kernel),
                "-append", "console=ttyS0 panic=-1 loglevel=4"]
        start = time.monotonic()
        try:
            run(argv, timeout=timeout)
        except CommandError as e:
            first = e.output.strip().splitlines()[:1] if e.returncode != -1 else []
            detail = first[0] if first else f"no panic within {timeout:.0f} s (guest hung)"
            return False, f"a short KVM boot failed: {detail}"
        elapsed = time.monotonic() - start
        text = log.read_text(errors="replace") if log.exists() else ""
        if PANIC_MARK not in text:
            return False, "a short KVM boot ended without reaching the kernel"
        return True, f"a short KVM boot reached the kernel's panic in {elapsed:.1f} s"


def choose_accel(request: AccelRequest, kernel: Path | None) -> AccelChoice:
    """Resolve --accel: kvm must work when asked for; auto takes KVM only when the probe boot worked."""
    if request == "tcg":
        return AccelChoice("tcg", "TCG (software emulation) as requested; boots take about a minute")
    if kernel is None:
        if request == "kvm":
            raise UsageError("--accel kvm needs the image's kernel to prove KVM works",
                             "use direct kernel boot (no --uefi) or --accel tcg")
        return AccelChoice("tcg", "TCG (software emulation): no kernel to probe KVM with")
    ok, why = probe_kvm(kernel)
    if ok:
        return AccelChoice("kvm", f"KVM: {why}")
    if request == "kvm":
        raise UsageError(f"KVM does not work on this host: {why}", "use --accel tcg or --accel auto")
    return AccelChoice("tcg", f"TCG (software emulation, slow): KVM unusable here, {why}")
