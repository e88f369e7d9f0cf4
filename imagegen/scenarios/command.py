"""`imagegen test` and `imagegen vm`: boot the lab image of a profile and prove (or explore) its network."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from imagegen.build.command import build_profile, profile_digest
from imagegen.build.config import repo_root
from imagegen.errors import UsageError
from imagegen.profile import LoadedProfile, load_profiles
from imagegen.render import resolve_target
from imagegen.report.artifacts import default_artifacts_dir
from imagegen.report.console import ConsoleReport
from imagegen.report.jsonout import write_json
from imagegen.report.junit import write_junit
from imagegen.scenarios.catalog import BY_NAME
from imagegen.scenarios.runner import LabRun, TestOptions
from imagegen.vm import lab as lab_module
from imagegen.vm.accel import AccelRequest, choose_accel
from imagegen.vm.lab import LAB_NICS, plan_lab
from imagegen.vm.machine import ImageFiles, Machine

Profiles = Annotated[list[Path], typer.Argument(help="host profile TOML files, later ones layered on top",
                                                show_default=False)]
AccelOpt = Annotated[str, typer.Option("--accel", help="auto: KVM only if a short real boot works, else TCG; "
                                       "or kvm, tcg")]
ImageOpt = Annotated[Path | None, typer.Option("--image", help="build output directory with image.raw, "
                                               "image.vmlinuz, image.initrd (default: build/HOSTNAME-lab, "
                                               "built when missing or stale)")]
UefiOpt = Annotated[bool, typer.Option("--uefi", help="boot through OVMF and the image's ESP instead of "
                                       "direct kernel boot (slower)")]


def _accel_request(value: str) -> AccelRequest:
    if value not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel {value!r} is not one of auto, kvm, tcg", "use --accel auto")
    return value  # type: ignore[return-value]


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C does, so that the VM is stopped and cleaned up."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _newest_lab_source() -> float:
    """The latest change to what goes into every lab image besides the profile."""
    roots = [repo_root() / "overlays" / "lab", Path(lab_module.__file__).parent / "templates" / "lab"]
    return max((p.lstat().st_mtime for r in roots if r.is_dir() for p in r.rglob("*")), default=0.0)


def lab_image(loaded: LoadedProfile, profiles: list[Path], image: Path | None, console: Console) -> ImageFiles:
    """The lab image to test: the one given, else build/HOSTNAME-lab, (re)built when missing or stale."""
    if image is not None:
        return ImageFiles.from_dir(image)
    out = Path("build") / f"{loaded.profile.image.hostname}-lab"
    manifest = out / "manifest.json"
    digest = profile_digest(loaded.merged)
    stale = "missing"
    if (out / "image.raw").is_file() and manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("profile_hash")
        stale = "" if recorded == digest else "built from another version of the profile"
        if not stale and _newest_lab_source() > manifest.stat().st_mtime:
            stale = "older than the lab's files (overlays/lab, lab templates)"
    if stale:
        console.print(f"lab image {out}: {stale}; building it")
        build_profile(profiles, out=out, lab=True, console=console)
    return ImageFiles.from_dir(out)


def test(
    profiles: Profiles,
    accel: AccelOpt = "auto",
    junit: Annotated[Path | None, typer.Option("--junit", help="write JUnit XML here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="leave the VM running at the end and print how to "
                                       "attach (skips the clean-shutdown scenario)")] = False,
    uefi: UefiOpt = False,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", help="where a failure's evidence goes "
                                                   "(default: artifacts/HOSTNAME-TIME)")] = None,
    image: ImageOpt = None,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="run only this scenario "
                                                       f"(repeatable): {', '.join(BY_NAME)}")] = None,
) -> None:
    """Boot the profile's lab image under QEMU and prove its network: failover, failback, hot-plug, ..."""
    console = Console(stderr=True)
    for name in scenario or []:
        if name not in BY_NAME:
            raise UsageError(f"--scenario {name!r} is unknown", f"choose from {', '.join(BY_NAME)}")
    request = _accel_request(accel)
    loaded = load_profiles(profiles)
    plan = plan_lab(loaded.profile)
    dhcp6_unit = resolve_target(loaded.profile.image).layout.dhcp6_unit
    files = lab_image(loaded, profiles, image, console)
    report = ConsoleReport(console)
    report.step("choosing the accelerator (a short KVM boot)…")
    choice = choose_accel(request, None if uefi else files.kernel)
    report.note(f"accelerator: {choice.reason}")
    options = TestOptions(uefi=uefi, keep=keep,
                          artifacts=artifacts or default_artifacts_dir(loaded.profile.image.hostname),
                          only=tuple(scenario or ()))
    label = " ".join(str(p) for p in profiles)
    with _terminate_as_interrupt():
        result = LabRun(plan, dhcp6_unit, files, choice, options, report).run(label)
    report.summary(result)
    if junit is not None:
        write_junit(result, junit)
    if json_out is not None:
        write_json(result, json_out)
    if not result.passed:
        raise typer.Exit(1)


def vm(
    profiles: Profiles,
    accel: AccelOpt = "auto",
    uefi: UefiOpt = False,
    image: ImageOpt = None,
) -> None:
    """Boot the profile's lab image with its serial console on this terminal (Ctrl-A x quits)."""
    console = Console(stderr=True)
    loaded = load_profiles(profiles)
    plan_lab(loaded.profile)
    files = lab_image(loaded, profiles, image, console)
    choice = choose_accel(_accel_request(accel), None if uefi else files.kernel)
    console.print(f"accelerator: {choice.reason}")
    machine = Machine(files, accel=choice.accel, nics=LAB_NICS, uefi=uefi)
    s = machine.sockets
    console.print(f"QMP: {s.qmp}   guest agent: {s.agent}   serial log: {s.serial_log}\n"
                  f"wired NIC: QMP id {LAB_NICS[0].id}; Ctrl-A x quits, Ctrl-A c toggles the QEMU monitor")
    with _terminate_as_interrupt():
        rc = machine.interactive()
    if rc != 0:
        raise typer.Exit(rc)
