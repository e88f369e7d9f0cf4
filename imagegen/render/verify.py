"""Check rendered units with `systemd-analyze verify`, instance by instance."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imagegen.render.distro import Target
from imagegen.run import run

_ENABLED = re.compile(r"^(?P<template>[^/@]+)@(?P<instance>[^/]+)\.service$")
# The binaries are checked inside the built image; the machine that renders need not have them.
_NOT_EXECUTABLE = re.compile(r"Command (?P<path>\S+) is not executable")


@dataclass(frozen=True)
class Verification:
    checked: int
    findings: tuple[str, ...]
    skipped: str | None = None


def verify_units(root: Path, target: Target) -> Verification:
    """Verify every unit instance the overlay at root enables."""
    if shutil.which("systemd-analyze") is None:
        return Verification(0, (), skipped="systemd-analyze is not installed")
    unit_dir = root / "etc/systemd/system"
    instances = sorted({
        link.name for link in unit_dir.glob("*.*/*@*.service") if _ENABLED.match(link.name)
    })
    with tempfile.TemporaryDirectory(prefix="imagegen-verify-") as tmp:
        names = []
        for name in instances:
            m = _ENABLED.match(name)
            assert m is not None
            source = unit_dir / f"{m['template']}@.service"
            # A hard link, so that systemd takes %p and %i from this name.
            os.link(source, Path(tmp) / name)
            names.append(f"./{name}")
        if not names:
            return Verification(0, ())
        proc = run(
            ["systemd-analyze", "verify", "--man=no", "--generators=no", *names],
            cwd=Path(tmp), check=False, env={"SYSTEMD_LOG_LEVEL": "notice"},
        )
    binaries = set(target.layout.bin.values())
    findings = []
    for line in proc.stdout.splitlines():
        m = _NOT_EXECUTABLE.search(line)
        if m and m["path"] in binaries:
            continue
        if line.strip():
            findings.append(line.strip())
    return Verification(len(names), tuple(dict.fromkeys(findings)))
