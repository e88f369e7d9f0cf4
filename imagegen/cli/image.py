"""`imagegen build`, and this host's `setup` and `doctor`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegen.cli.options import JsonFlag, Profiles, StateFile, StoreOpt, SubstituteOnlyOpt, SubstituterOpt

if TYPE_CHECKING:
    from rich.console import Console

    from imagegen.image.mkosi import BuildResult
    from imagegen.stages.outcome import ImageBuild
    from imagegen.stages.unchanged import Request
    from imagegen.store import Entry, Store
    from imagegen.store.substitution import Substituter


def setup(
    mirror: Annotated[
        str | None, typer.Option(help="Debian archive URL to fetch mkosi from (default: the host's apt mirror)")
    ] = None,
) -> None:
    """Install QEMU, OVMF and mkosi 25.3 on this host (idempotent; the host's apt sources stay as they are)."""
    from rich.console import Console
    from rich.text import Text

    from imagegen.host.setup import setup_host
    from imagegen.image.aptsources import mirror_from_url

    console = Console(stderr=True)
    setup_host(lambda line: console.print(Text(f"setup: {line}")), mirror=mirror_from_url(mirror) if mirror else None)


def doctor(
    kernel: Annotated[
        Path | None, typer.Option(show_default=False,
                                  help="A kernel to prove KVM with. Default: the image.vmlinuz of a result-* link "
                                  "here, else of build/*, else of the newest image in the store, else this "
                                  "host's own /boot/vmlinuz-*.")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Report every tool imagegen uses, its version, and whether KVM really works."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from imagegen.host.doctor import host_checks
    from imagegen.stages.realise import open_store

    found = kernel_to_probe(open_store(store)) if kernel is None else KernelToProbe(kernel, "--kernel")
    checks = host_checks(found.path if found else None)
    table = Table("tool", "state", "version / detail", "fix")
    for c in checks:
        state = "[green]ok[/]" if c.ok else "[red]missing[/]" if c.required else "[yellow]unusable[/]"
        table.add_row(Text(c.name), state, Text(c.detail), Text(c.fix))
    console = Console()
    console.print(table)
    if found is not None:
        console.print(Text(f"KVM was probed with {found.path} ({found.source})"))
    if any(not c.ok for c in checks if c.required):
        raise typer.Exit(1)


@dataclass(frozen=True)
class KernelToProbe:
    path: Path
    source: str
    # A store entry's hold, kept while the kernel is booted so that gc leaves it alone.
    held: Entry | None = None


def kernel_to_probe(store: Store, here: Path = Path(), boot: Path = Path("/boot")) -> KernelToProbe | None:
    """A kernel that boots under QEMU, to prove KVM with: a result link's or an old build directory's
    here, else the newest image entry's in the store, else the host's own (where it is readable)."""
    import os

    local = sorted(here.glob("result-*/image.vmlinuz")) + sorted((here / "build").glob("*/image.vmlinuz"))
    if local:
        return KernelToProbe(local[0], "a build here")
    images = []
    for entry in store.entries():
        try:
            meta = entry.metadata()
        except (OSError, ValueError):
            continue
        if meta.get("derivation", {}).get("stage") == "build" and (entry.path / "image.vmlinuz").is_file():
            images.append((str(meta.get("created", "")), entry.path_name))
    for _, name in sorted(images, reverse=True):
        held = store.hold(name)
        if held is not None:
            return KernelToProbe(held.path / "image.vmlinuz", f"the newest image in {store.root}", held)
    host = [p for p in boot.glob("vmlinuz-*") if p.is_file() and os.access(p, os.R_OK)]
    if host:
        return KernelToProbe(max(host, key=lambda p: p.stat().st_mtime), "this host's kernel")
    return None


def build(
    profiles: Profiles,
    out_link: Annotated[Path | None, typer.Option("--out-link", show_default=False,
                                                  help="Symlink to leave pointing at the image's store entry. "
                                                  "Default: result-HOSTNAME[-lab].")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default=False,
                                             help="The same as --out-link DIR, kept for scripts: DIR becomes a "
                                             "link to the store entry (an older build's directory there is "
                                             "replaced).")] = None,
    lab: Annotated[bool, typer.Option(help="Add the lab packages and overlay used by the VM tests.")] = False,
    mirror: Annotated[str | None, typer.Option(help="Package mirror URL (default: image.mirror, else the host's "
                                               "Debian mirror); not part of the store hash.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="mkosi cache root (default: .cache/mkosi).")] = None,
    state: StateFile = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Build again without mkosi's cached packages, "
                                          "resolving them anew, and say whether the package set changed.")] = False,
    store: StoreOpt = None,
    as_json: JsonFlag = False,
    substituters: SubstituterOpt = None,
    substitute_only: SubstituteOnlyOpt = False,
) -> None:
    """Render the profile and build a bootable disk image with mkosi into the store (image.raw, vmlinuz,
    initrd, manifest); an unchanged profile is a no-op that names the stored image."""
    import json
    import sys

    from imagegen.stages import unchanged

    started = time.monotonic()
    # Taken before the stages' modules are imported: a record is written only if the code that ran is this.
    host = unchanged.host_inputs()
    request = unchanged.Request.of(profiles, lab=lab, mirror=mirror, state_file=state)
    built = None
    if not refresh and not substituters and not substitute_only and host is not None:
        built = _recorded_build(store, request, out_link or out, host)
    if built is None:
        built = _full_build(profiles, request, host, out_link=out_link or out, cache_dir=cache_dir, refresh=refresh,
                            store=store, substituters=substituters, substitute_only=substitute_only)
    m = built.manifest
    say = typer.echo if not as_json else (lambda text: typer.echo(text, err=True))
    if built.entry.substituted:
        say(f"substituted {built.entry.path} from {built.entry.substituted} ({time.monotonic() - started:.1f} s)")
    elif built.reused:
        say(f"reused {built.entry.path} (unchanged inputs; {time.monotonic() - started:.2f} s)")
    else:
        say(f"built {built.entry.path} in {time.monotonic() - started:.0f} s "
            f"(mkosi cache {'reused' if m.cache_reused else 'rebuilt'}: {m.cache_reason})")
    files = built.files()
    say(f"image:   {files['image']}")
    say(f"kernel:  {files['kernel']}")
    say(f"initrd:  {files['initrd']}")
    say(f"cmdline: {m.kernel_command_line}")
    if built.link is not None:
        say(f"link:    {built.link} -> {built.entry.path}")
    if built.generation is not None:
        say(f"generation: {built.generation.host}@{built.generation.number}")
    if built.refreshed is not None:
        say("refresh: the package set is unchanged" if not built.refreshed else
            f"refresh: the package set differs from the previous build:\n{built.refreshed}")
    if as_json:
        json.dump(built.to_json(), sys.stdout, indent=2)
        typer.echo()


def _recorded_build(store: Path | None, request: Request, link: Path | None,
                    host: dict[str, Any]) -> ImageBuild | None:
    """A no-op build as the store's record of an earlier one names it (stages/unchanged.py), or None."""
    import os

    from imagegen.cache.config import load_config
    from imagegen.stages.unchanged import recorded_build
    from imagegen.store import Store, resolve_store_root

    load_config(os.environ)  # a broken cache.toml fails a no-op build as it fails any other
    return recorded_build(Store(resolve_store_root(store, os.environ)), request, link=link, host=host)


def _full_build(profiles: list[Path], request: Request, host: dict[str, Any] | None, *, out_link: Path | None,
                cache_dir: Path | None, refresh: bool, store: Path | None, substituters: list[str] | None,
                substitute_only: bool) -> ImageBuild:
    """Load, render and build through the store; then leave the record a later no-op build reads."""
    from rich.console import Console

    from imagegen.cli.cache import substituter
    from imagegen.profile import load_profiles
    from imagegen.stages.outcome import default_link_name
    from imagegen.stages.realise import build_inputs, input_files, open_store
    from imagegen.stages.unchanged import remember

    state = Path(request.state_file) if request.state_file is not None else None
    loaded = load_profiles(profiles)
    files = input_files(loaded, state)
    link = out_link or default_link_name(loaded.profile.image.hostname, request.lab)
    console = Console(stderr=True)
    built = build_into_store(profiles, link=link, lab=request.lab, mirror=request.mirror, cache_root=cache_dir,
                             state_file=state, refresh=refresh, store=store, console=console,
                             substituter=substituter(substituters, substitute_only, console))
    target = open_store(store)
    remember(target, request, built, host, files,
             lambda: build_inputs(target, profiles, lab=request.lab, state_file=state))
    return built


def build_into_store(
    profiles: list[Path],
    *,
    link: Path | None = None,
    lab: bool = False,
    mirror: str | None = None,
    cache_root: Path | None = None,
    state_file: Path | None = None,
    refresh: bool = False,
    store: Path | None = None,
    record: bool = True,
    console: Console | None = None,
    substituter: Substituter | None = None,
) -> ImageBuild:
    """Load, render and build through the store: the whole `imagegen build` without the printing."""
    from imagegen.profile import load_profiles
    from imagegen.stages.realise import open_store, realise_image

    return realise_image(open_store(store, substituter), load_profiles(profiles), lab=lab, mirror=mirror,
                         cache_root=cache_root, state_file=state_file, refresh=refresh, link=link, record=record,
                         console=console)


def build_profile(
    profiles: list[Path],
    *,
    out: Path | None = None,
    lab: bool = False,
    mirror: str | None = None,
    cache_root: Path | None = None,
    state_file: Path | None = None,
    console: Console | None = None,
    store: Path | None = None,
) -> BuildResult:
    """Build through the store; with out, out becomes a link to the image entry and the result's out_dir."""
    return build_into_store(profiles, link=out, lab=lab, mirror=mirror, cache_root=cache_root,
                            state_file=state_file, store=store, console=console).result()
