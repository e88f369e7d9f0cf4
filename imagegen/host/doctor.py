"""What imagegen finds on this host: every tool it uses, its version, KVM, and the fix for what is missing."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import CommandError
from imagegen.host.setup import MKOSI_VERSION
from imagegen.image.mkosi import mkosi_command
from imagegen.run import run


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # KVM is optional: without it guests run under TCG.
    required: bool = True


def _first_version(text: str) -> str:
    m = re.search(r"\d+(\.\d+)+", text)
    return m.group(0) if m else text.strip().splitlines()[0] if text.strip() else "?"


def tool_check(name: str, argv: list[str], fix: str) -> Check:
    if shutil.which(argv[0]) is None:
        return Check(name, False, "not found", fix)
    try:
        proc = run(argv)
    except CommandError as e:
        return Check(name, False, f"fails: {e.output.strip().splitlines()[-1:] or e.returncode}", fix)
    return Check(name, True, _first_version(proc.stdout))


def mkosi_check() -> Check:
    proc = run([*mkosi_command(), "--version"], check=False)
    if proc.returncode != 0:
        return Check("mkosi", False, "not importable by this Python", "run `imagegen setup`")
    version = proc.stdout.split()[-1]
    if version != MKOSI_VERSION:
        return Check("mkosi", False, f"{version} (imagegen is pinned to {MKOSI_VERSION})", "run `imagegen setup`")
    return Check("mkosi", True, version)


def ovmf_check() -> Check:
    for path in ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd",
                 "/usr/share/edk2/x64/OVMF_CODE.4m.fd"):
        if Path(path).is_file():
            return Check("OVMF", True, path)
    return Check("OVMF", False, "no OVMF firmware found", "run `imagegen setup` (installs ovmf)")


def kvm_check(kernel: Path | None) -> Check:
    """KVM works only if a guest really boots; /dev/kvm alone proves nothing on these hosts."""
    present = os.path.exists("/dev/kvm")
    try:
        from imagegen.vm.accel import probe_kvm
    except ImportError:
        state = "present" if present else "absent"
        return Check("KVM", False, f"/dev/kvm {state}; probe not available", "guests run under TCG",
                     required=False)
    if kernel is None or not kernel.is_file():
        state = "present" if present else "absent"
        return Check("KVM", False, f"/dev/kvm {state}; no image kernel to probe with",
                     "build an image first (imagegen build), then run doctor again; guests run under TCG",
                     required=False)
    ok, why = probe_kvm(kernel)
    return Check("KVM", ok, why, "" if ok else "guests run under TCG (slower, but works)", required=False)


def host_checks(kernel: Path | None = None) -> list[Check]:
    return [
        tool_check("python", [sys.executable, "--version"], "install Python >= 3.11"),
        mkosi_check(),
        tool_check("qemu-system-x86_64", ["qemu-system-x86_64", "--version"],
                   "run `imagegen setup` (installs qemu-system-x86)"),
        tool_check("qemu-img", ["qemu-img", "--version"], "run `imagegen setup` (installs qemu-utils)"),
        ovmf_check(),
        tool_check("apt-get", ["apt-get", "--version"], "mkosi bootstraps its Debian tools tree with apt"),
        tool_check("dpkg", ["dpkg", "--version"], "mkosi bootstraps its Debian tools tree with dpkg"),
        tool_check("losetup", ["losetup", "--version"], "install util-linux (used to inspect images)"),
        tool_check("tesseract", ["tesseract", "--version"],
                   "run `imagegen setup` (installs tesseract-ocr: the test API reads the screen with it)"),
        kvm_check(kernel),
    ]
