"""Drive mkosi: one build of one rendered overlay into a bootable disk image with its manifest.

The build happens in a temporary directory beside the output directory, which replaces the output only when
everything is there: a reader of the output never sees half an image.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from imagegen.errors import CommandError, ImagegenError, UsageError
from imagegen.fsmove import move_file
from imagegen.image import cache, trees
from imagegen.image.aptsources import DebianMirror, debian_sources, host_debian_mirror, mirror_from_url
from imagegen.image.config import BuildRequest, MkosiInputs, mkosi_argv, repo_root, write_root_password_config
from imagegen.image.manifest import MANIFEST_NAME, OUTPUTS, BuildManifest, packages_from_mkosi_manifest, tree_hash
from imagegen.run import run, spawn
from imagegen.store.hashing import keyed_digest

LOG_NAME = "build.log"
# For QEMU's direct kernel boot of image.raw: mkosi's default partition table names the root partition so.
ROOT_PARTLABEL = "root-x86-64"
KERNEL_COMMAND_LINE = f"root=PARTLABEL={ROOT_PARTLABEL} rw console=ttyS0 systemd.firstboot=no"
# Written by a lab image's finalize script (mkosi.conf.d/50-lab-debian-initrd.finalize.chroot): the initrd for QEMU's
# direct kernel boot. It takes the place of mkosi's initrd among the outputs; mkosi's stays inside the UKI.
LAB_INITRD = "image.lab-initrd"
MKOSI_MANIFEST = "image.manifest"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_LINES = 25
# How long mkosi has after SIGTERM to remove its workspace before what is left of it is killed.
MKOSI_GRACE = 30.0


def take_lab_initrd(output_dir: Path, *, expected: bool, log: Path) -> None:
    """Put the lab's own initrd in place of mkosi's. A Debian lab build must have one (50-lab-debian.conf
    runs the script): without it the lab would quietly boot through mkosi's far slower initrd."""
    lab_initrd = output_dir / LAB_INITRD
    if lab_initrd.is_file():
        lab_initrd.replace(output_dir / OUTPUTS["initrd"])
    elif expected:
        raise ImagegenError(
            f"mkosi finished but the lab's finalize script did not write {LAB_INITRD}",
            hint=f"check FinalizeScripts= in mkosi.conf.d/50-lab-debian.conf and the log {log}",
        )


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: BuildManifest

    @property
    def image(self) -> Path:
        return self.out_dir / OUTPUTS["image"]

    @property
    def kernel(self) -> Path:
        return self.out_dir / OUTPUTS["kernel"]

    @property
    def initrd(self) -> Path:
        return self.out_dir / OUTPUTS["initrd"]


def mkosi_command() -> list[str]:
    return [sys.executable, "-m", "mkosi"]


def mkosi_version() -> str:
    """The version of the mkosi that `python -m mkosi` runs, read from its source without starting it
    (starting it costs most of a second); if the source does not say, mkosi is asked."""
    spec = importlib.util.find_spec("mkosi")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        source = Path(location) / "sandbox.py"
        if source.is_file():
            match = re.search(r'^__version__ = "([^"]+)"', source.read_text(), re.M)
            if match:
                return match[1]
    try:
        proc = run([*mkosi_command(), "--version"])
    except CommandError as e:
        raise ImagegenError("mkosi is not importable by this Python", hint="run `imagegen setup`") from e
    # "mkosi 25.3"
    return proc.stdout.split()[-1]


def debian_mirror(request: BuildRequest) -> DebianMirror:
    if request.distribution == "debian" and request.mirror is not None:
        return mirror_from_url(request.mirror)
    return host_debian_mirror()


def check_arch_mirror(request: BuildRequest) -> None:
    """Fail in one line, before minutes of tools-tree work, when no Arch repository can be reached."""
    if request.mirror is None:
        raise UsageError(
            "image.mirror: an Arch image needs an Arch mirror and this host's apt sources name none",
            hint="pass --mirror URL (an Arch mirror, e.g. http://HOST/archlinux) or set image.mirror",
        )
    url = f"{request.mirror.rstrip('/')}/core/os/x86_64/core.db"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
            pass
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ImagegenError(
            f"Arch mirror {request.mirror} is unreachable ({reason})",
            hint="pass --mirror with an Arch mirror this machine can reach",
        ) from e


def prepare_inputs(request: BuildRequest, work: Path, mirror: DebianMirror) -> MkosiInputs:
    config = work / "config"
    tools_release = "trixie"
    sandbox = None
    if request.distribution == "debian":
        sandbox = trees.write_sandbox_tree(config / "sandbox", mirror, request.resolved_release)
    tools_sandbox = trees.write_sandbox_tree(config / "tools-sandbox", mirror, tools_release)
    lab_tree = repo_root() / "overlays" / "lab"
    use_lab_tree = request.lab and lab_tree.is_dir()
    overlays = [request.overlay, *([lab_tree] if use_lab_tree else [])]
    policy = trees.write_policy_tree(config / "policy", overlays, request.distribution)
    # mkosi's output directory stays in the cache: the default tools tree is written there and reused
    # from there; the image files are moved out into the build's own directory afterwards.
    output_dir = request.cache_dir / "output"
    output_dir.mkdir(parents=True, exist_ok=True)
    # mkosi writes the image there first, with the Wi-Fi keys, the dhcp6c key and the root password hash.
    os.chmod(output_dir, 0o700)
    config.mkdir(parents=True, exist_ok=True)
    return MkosiInputs(
        output_dir=output_dir,
        cache_dir=request.cache_dir,
        overlay=request.overlay.resolve(),
        policy_tree=policy,
        sandbox_tree=sandbox,
        tools_sandbox_tree=tools_sandbox,
        lab_tree=lab_tree if use_lab_tree else None,
        root_password_config=write_root_password_config(request, config),
    )


class StageFollower:
    """Reads mkosi's log as it grows and keeps the current stage and the last lines."""

    # mkosi prints each step as "‣ <indent>Text", nested steps indented by one space per level:
    #   ‣ Building default image
    #   ‣  Installing Debian
    # Its notices share the prefix but not the capital ("‣ systemd-hwdb is not installed, …",
    # "‣ /usr/lib/firmware/… not found"), which is how they are kept out of the stage line.
    STEP = re.compile(r"^‣ (?P<indent> *)(?P<text>[A-Z].*)$")

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        # Bytes, not text: a read may end inside a multi-byte character such as "‣".
        self.partial = b""
        self.stages: list[str] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        # When each step of the first two levels began (monotonic clock), for the manifest's timings.
        self.started: list[tuple[float, str]] = []

    def poll(self) -> None:
        if not self.log.exists():
            return
        with self.log.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        now = time.monotonic()
        for raw in lines:
            line = ANSI.sub("", raw.decode(errors="replace")).rstrip()
            if not line:
                continue
            self.tail.append(line)
            m = self.STEP.match(line)
            if m:
                depth = len(m["indent"])
                self.stages = [*self.stages[:depth], m["text"].rstrip("…")]
                if depth <= 1:
                    self.started.append((now, self.stage))

    def timings(self, end: float) -> list[tuple[str, float]]:
        """Seconds spent in each step of the first two levels, in order (none: mkosi named no step, as
        when it fails reading its configuration)."""
        if not self.started:
            return []
        ends = [t for t, _ in self.started[1:]] + [end]
        return [(name, round(stop - start, 1)) for (start, name), stop in zip(self.started, ends, strict=True)]

    @property
    def stage(self) -> str:
        return " › ".join(self.stages) if self.stages else "starting mkosi"


def run_mkosi(argv: list[str], log: Path, console: Console, hold: tuple[int, ...] = ()) -> list[tuple[str, float]]:
    """Run mkosi with its whole output in `log`, showing the current stage and the elapsed time.

    mkosi is spawned under imagegen's reaper (see imagegen/reaper.py): Ctrl-C or SIGTERM of imagegen
    leaves this function only once every process of mkosi's tree, its sandboxed apt and dpkg included,
    has ended, so the cache lock held by the caller is released after them. If imagegen is killed
    outright, the reaper ends the tree by itself, and holds the locks whose descriptors are in `hold`
    until it has.
    """
    follower = StageFollower(log)
    start = time.monotonic()
    with spawn([*mkosi_command(), *argv], name="mkosi", log_file=log, reap_tree=True, grace=MKOSI_GRACE,
               pass_fds=hold) as mkosi, \
            Live(console=console, refresh_per_second=4, transient=True) as live:
        shown = ""
        while (status := mkosi.wait(0.25)) is None:
            follower.poll()
            elapsed = int(time.monotonic() - start)
            live.update(Text(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] mkosi: {follower.stage}"))
            # On a terminal that is not interactive (CI), print each top-level stage once.
            if not console.is_terminal and follower.stages and follower.stages[0] != shown:
                shown = follower.stages[0]
                console.print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {shown}")
    follower.poll()
    if not status.ok:
        raise MkosiFailed(log, list(follower.tail))
    return follower.timings(time.monotonic())


def overlay_digest(request: BuildRequest) -> str:
    """The overlay's digest as the manifest shows it: keyed when the request has a key (see BuildRequest)."""
    plain = tree_hash(request.overlay)
    return keyed_digest(request.digest_key, {"overlay": plain}) if request.digest_key else plain


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "<secret>") if secret else text


def redact_log(log: Path, secret: str | None) -> None:
    if secret and log.is_file():
        text = log.read_text(errors="replace")
        if secret in text:
            log.write_text(redact(text, secret))


def copy_private(source: Path, dest: Path) -> None:
    """Copy a log to dest as a new 0600 file of ours: a log names paths and the lines mkosi printed."""
    dest.unlink(missing_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as f:
        shutil.copyfileobj(f, out)


class MkosiFailed(ImagegenError):
    def __init__(self, log: Path, tail: list[str]) -> None:
        summary = explain_failure(tail)
        super().__init__(summary, hint=f"full log: {log}")
        self.log = log
        self.tail = tail


def explain_failure(tail: list[str]) -> str:
    """One line for the failures people meet; mkosi's own last line otherwise."""
    text = "\n".join(tail)
    if re.search(r"failed retrieving file|failed to synchronize all databases", text):
        return "mkosi could not download from the Arch mirror"
    if re.search(r"Could not resolve|Temporary failure resolving|Failed to fetch|Unable to connect", text):
        return "mkosi could not download packages from the Debian mirror"
    steps = [line for line in tail if line.startswith("‣")]
    return f"mkosi build failed: {(steps[-1] if steps else tail[-1] if tail else 'no output').lstrip('‣ ')}"


# apt's words for a name it cannot install (apt-private/private-install.cc, cacheset.cc).
_APT_UNKNOWN = re.compile(
    r"^E: (?:Unable to locate package (?P<name>\S+)|Package '(?P<quoted>[^']+)' has no installation candidate)$",
    re.M,
)


def unknown_packages(log_text: str) -> list[str]:
    """The package names apt refused in a build log, in the order it named them."""
    found = [m["name"] or m["quoted"] for m in _APT_UNKNOWN.finditer(ANSI.sub("", log_text))]
    return list(dict.fromkeys(found))


def unknown_package_error(request: BuildRequest, log_text: str, log: Path) -> UsageError | None:
    """One line naming the package and the profile file that asked for it, if apt refused a name of the
    profile's; None if the build failed for another reason."""
    content = request.content
    for name in unknown_packages(log_text):
        source = content.source_of(name)
        if source is None:
            continue
        key = "packages.install" if name in content.packages else "packages.remove"
        return UsageError(
            f"{source}: {key}: package {name!r} does not exist in {request.distribution} "
            f"{request.resolved_release}; fix the name (`apt-cache search` lists the archive's packages)",
            hint=f"full log: {log}",
        )
    return None


def was_cache_reused(log_text: str) -> bool:
    """Whether the image (not the tools tree) came from mkosi's cache, read from mkosi's log.

    A cold build logs "Installing cache copies" for the image it just installed; a reused one only
    "Copying cached trees". The tools tree is built first, so only the last build section counts.
    """
    clean = ANSI.sub("", log_text)
    sections = re.split(r"^‣ Building (?:default|main) image$", clean, flags=re.M)
    image_part = sections[-1] if len(sections) > 1 else clean
    return "Copying cached trees" in image_part and "Installing cache copies" not in image_part


def replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target`, then remove what was there; a reader never sees a partial target."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary(request: BuildRequest) -> str:
    """mkosi's own reading of the configuration a build would use, without building (`mkosi summary`)."""
    mirror = debian_mirror(request)
    with tempfile.TemporaryDirectory(prefix="imagegen-summary-") as tmp:
        inputs = prepare_inputs(request, Path(tmp), mirror)
        try:
            proc = run([*mkosi_command(), *mkosi_argv(request, inputs, verb="summary")])
        except CommandError as e:
            last = e.output.strip().splitlines()[-1:] or ["no output"]
            raise ImagegenError(f"mkosi rejects the configuration: {last[0].lstrip('‣ ')}") from e
    return proc.stdout


def build_image(
    request: BuildRequest, console: Console | None = None, *, into: Path | None = None, refresh: bool = False
) -> BuildResult:
    """Build one image from a rendered overlay into request.out_dir and return its manifest.

    With `into` (an empty directory, e.g. a store entry being built) the files are written there and nothing
    else is replaced: request.out_dir is then only where they will be found, as the manifest says.
    refresh drops mkosi's cached image first, so that the package set is resolved anew.
    """
    console = console or Console(stderr=True)
    if request.distribution == "arch":
        check_arch_mirror(request)
    version = mkosi_version()
    mirror = debian_mirror(request)
    out_dir = request.out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    repositories = (
        debian_sources(mirror, request.resolved_release)
        if request.distribution == "debian"
        else f"arch {request.mirror}"
    )
    with cache.locked(request.cache_dir, console.print) as lock:
        return _build_locked(request, console, version, mirror, out_dir, repositories, into, refresh, lock)


def _build_locked(
    request: BuildRequest, console: Console, version: str, mirror: DebianMirror, out_dir: Path, repositories: str,
    into: Path | None = None, refresh: bool = False, lock: int | None = None,
) -> BuildResult:
    key = cache.config_key(
        conf_dir=repo_root() / "mkosi.conf.d",
        distribution=request.distribution,
        release=request.resolved_release,
        variant=request.variant,
        mkosi_version=version,
        repositories=repositories,
        packages=request.content.packages + tuple(f"!{name}" for name in request.content.remove_packages),
    )
    decision = cache.decide(request.cache_dir, request.distribution, key)
    if refresh:
        decision = cache.CacheDecision(False, "--refresh: resolving the packages anew")
    if not decision.reuse:
        cache.drop_image_cache(request.cache_dir, request.distribution)
    console.print(
        f"cache: {'reusing' if decision.reuse else 'rebuilding'} the installed packages ({decision.reason})"
    )

    work = into or Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    log = work / LOG_NAME
    try:
        inputs = prepare_inputs(request, work, mirror)
        argv = mkosi_argv(request, inputs)
        log.write_text(f"# mkosi {version}: {' '.join(argv)}\n")
        start = time.monotonic()
        try:
            timings = run_mkosi(argv, log, console, hold=() if lock is None else (lock,))
        finally:
            # mkosi itself hands the hash to systemd-firstboot on its command line, and logs a command
            # line that fails: the log never keeps it.
            redact_log(log, request.root_password_hash)
        duration = time.monotonic() - start
        if inputs.root_password_config is not None:
            inputs.root_password_config.unlink()  # in /etc/shadow now; not kept beside the image

        missing = [name for name in OUTPUTS.values() if not (inputs.output_dir / name).is_file()]
        if missing:
            raise ImagegenError(
                f"mkosi finished but did not write {', '.join(missing)}",
                hint=f"check SplitArtifacts= in mkosi.conf.d/ and the log {log}",
            )
        take_lab_initrd(inputs.output_dir, expected=request.variant == "lab" and request.distribution == "debian",
                        log=log)
        # mkosi's output directory is in the cache, the store may be on another file system.
        for name in [*OUTPUTS.values(), MKOSI_MANIFEST]:
            if (inputs.output_dir / name).exists():
                move_file(inputs.output_dir / name, work / name)
        reused = was_cache_reused(log.read_text(errors="replace"))
        cache.record_key(request.cache_dir, key)
        manifest = BuildManifest(
            distribution=request.distribution,
            release=request.resolved_release,
            variant=request.variant,
            mkosi_version=version,
            profile_hash=request.profile_hash,
            overlay_hash=overlay_digest(request),
            config_hash=cache.key_hash(key),
            cache_reused=reused,
            cache_reason=decision.reason,
            duration_seconds=round(duration, 1),
            outputs={
                **{kind: str(out_dir / name) for kind, name in OUTPUTS.items()},
                "log": str(out_dir / LOG_NAME),
            },
            kernel_command_line=" ".join([KERNEL_COMMAND_LINE, *request.content.kernel_command_line]),
            stages=[list(t) for t in timings],
            packages=packages_from_mkosi_manifest(work / MKOSI_MANIFEST),
        )
        (work / MANIFEST_NAME).write_text(manifest.to_json())
        if into is None:
            replace_dir(work, out_dir)
    except MkosiFailed as e:
        # A store's work directory goes when the build fails: the log is kept beside mkosi's cache then.
        failed_log = (request.cache_dir / "failed-build.log" if into is not None
                      else out_dir.with_name(f"{out_dir.name}.failed.log"))
        copy_private(e.log, failed_log)
        if into is None:
            shutil.rmtree(work, ignore_errors=True)
        unknown = unknown_package_error(request, failed_log.read_text(errors="replace"), failed_log)
        if unknown is not None:
            raise unknown from e
        tail = [redact(line, request.root_password_hash) for line in e.tail]
        for line in tail:
            console.print(Text(line), highlight=False)
        raise MkosiFailed(failed_log, tail) from e
    except BaseException:
        if into is None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    console.print(
        f"built {out_dir / OUTPUTS['image']} in {manifest.duration_seconds:.0f} s "
        f"(cache {'reused' if reused else 'rebuilt'})"
    )
    return BuildResult(out_dir=out_dir, manifest=manifest)
