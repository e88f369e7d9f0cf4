"""The build stage's commands: `imagegen setup`, `imagegen doctor`, `imagegen build`."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagegen.build.aptsources import mirror_from_url
from imagegen.build.config import BuildRequest
from imagegen.build.doctor import host_checks
from imagegen.build.hostsetup import host_family, os_release, setup_host
from imagegen.build.mkosi import BuildResult, build_image
from imagegen.profile import load_profiles
from imagegen.render import host_state_for, render_overlay
from imagegen.vm.lab import render_lab_overlay


def setup(
    mirror: Annotated[
        str | None, typer.Option(help="Debian archive URL to fetch mkosi from (default: the host's apt mirror)")
    ] = None,
) -> None:
    """Install QEMU, OVMF and mkosi 25.3 on this host (idempotent; the host's apt sources stay as they are)."""
    console = Console(stderr=True)
    setup_host(lambda line: console.print(f"setup: {line}"), mirror=mirror_from_url(mirror) if mirror else None)


def doctor(
    kernel: Annotated[
        Path | None, typer.Option(help="a kernel to prove KVM with (default: build/*/image.vmlinuz)")
    ] = None,
) -> None:
    """Report every tool imagegen uses, its version, and whether KVM really works."""
    if kernel is None:
        kernels = sorted(Path("build").glob("*/image.vmlinuz"))
        kernel = kernels[0] if kernels else None
    checks = host_checks(kernel)
    table = Table("tool", "state", "version / detail", "fix")
    for c in checks:
        state = "[green]ok[/]" if c.ok else "[red]missing[/]" if c.required else "[yellow]unusable[/]"
        table.add_row(c.name, state, c.detail, c.fix)
    Console().print(table)
    if any(not c.ok for c in checks if c.required):
        raise typer.Exit(1)


def profile_digest(merged: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()


def build(
    profiles: Annotated[list[Path], typer.Argument(help="host profile TOML files, later ones layered on top")],
    out: Annotated[Path | None, typer.Option(help="output directory (default: build/<hostname>[-lab])")] = None,
    lab: Annotated[bool, typer.Option(help="add the lab packages and overlay used by the VM tests")] = False,
    mirror: Annotated[str | None, typer.Option(help="package mirror URL (default: image.mirror, "
                                                   "else the host's Debian mirror)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="mkosi cache root (default: .cache/mkosi)")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="host state file (DUID, dhcp6c key); default: "
                                               "HOSTNAME.state.toml beside the last profile")] = None,
) -> None:
    """Render the profile and build a bootable disk image with mkosi (image.raw, vmlinuz, initrd, manifest)."""
    result = build_profile(profiles, out=out, lab=lab, mirror=mirror, cache_root=cache_dir, state_file=state)
    m = result.manifest
    typer.echo(f"image:   {result.image}")
    typer.echo(f"kernel:  {result.kernel}")
    typer.echo(f"initrd:  {result.initrd}")
    typer.echo(f"cmdline: {m.kernel_command_line}")
    typer.echo(f"cache:   {'reused' if m.cache_reused else 'rebuilt'} ({m.cache_reason})")


def build_profile(
    profiles: list[Path],
    *,
    out: Path | None = None,
    lab: bool = False,
    mirror: str | None = None,
    cache_root: Path | None = None,
    state_file: Path | None = None,
    console: Console | None = None,
) -> BuildResult:
    """Load, render and build: the whole `imagegen build` without the printing."""
    loaded = load_profiles(profiles)
    image = loaded.profile.image
    distribution = image.distribution or host_family(os_release())
    mirror = mirror or image.mirror
    if mirror is not None:
        mirror_from_url(mirror)  # a bad URL is a usage error before anything is rendered or built
    out_dir = out or Path("build") / (image.hostname + ("-lab" if lab else ""))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    overlay = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.overlay-", dir=out_dir.parent))
    try:
        render_overlay(loaded, overlay, state=host_state_for(loaded, state_file))
        if lab:
            # The lab's per-profile files (.link names for the lab NICs, the AP's configuration) join the
            # rendered overlay: one tree, so the overlay's hash covers them too.
            render_lab_overlay(loaded.profile, overlay)
        request = BuildRequest(
            overlay=overlay,
            out_dir=out_dir,
            distribution=str(distribution),
            release=image.release,
            mirror=mirror,
            lab=lab,
            hostname=image.hostname,
            root_password_hash=image.root_password_hash,
            profile_hash=profile_digest(loaded.merged),
            cache_root=cache_root,
        )
        return build_image(request, console=console)
    finally:
        shutil.rmtree(overlay, ignore_errors=True)
