"""imagegen's benchmarks in one command: render, build, boot, failover and `imagegen test`.

Every figure is the median, min and max of several runs, and each is measured in the same run beside
its reference (runs alternate between the two), so that their ratio holds on a noisy machine.

    python bench/run.py                       # everything (an hour or more on 2 cores under TCG)
    python bench/run.py --quick               # fewer runs and cycles
    python bench/run.py --only render,boot    # some parts: startup, render, build, boot, mkosi-vm,
                                              # failover, test, seven, check
    python bench/run.py --json FILE           # default: bench/results.json (other parts in it are kept)

The heavy parts boot VMs and build images: run them on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import pty
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure this checkout, whatever imagegen an editable install elsewhere points at.
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from imagegen.image.config import BuildRequest, mkosi_argv  # noqa: E402
from imagegen.image.mkosi import OUTPUTS, debian_mirror, mkosi_command, prepare_inputs  # noqa: E402
from imagegen.profile import load_profiles  # noqa: E402
from imagegen.render import host_state_for, render_overlay, resolve_target  # noqa: E402
from imagegen.report.timeline import Timeline, plot_timeline  # noqa: E402
from imagegen.run import run  # noqa: E402
from imagegen.scenarios.session import LabSession  # noqa: E402
from imagegen.stages.realise import open_store, realise_image  # noqa: E402
from imagegen.store.fsutil import copy_out  # noqa: E402
from imagegen.testing.calls import CallLog  # noqa: E402
from imagegen.testing.scripts import bind  # noqa: E402
from imagegen.vm.accel import AccelChoice, choose_accel  # noqa: E402
from imagegen.vm.lab import LAB_NICS, lab_profile, plan_lab  # noqa: E402
from imagegen.vm.machine import ImageFiles, Machine, cmdline_of  # noqa: E402
from imagegen.vm.qemu import qemu_binary  # noqa: E402

PARTS = ("startup", "render", "build", "boot", "mkosi-vm", "failover", "test", "seven", "check")
EXAMPLE = ROOT / "examples" / "laptop.toml"
# The `imagegen` command of this checkout, as a process of its own.
CLI = [sys.executable, "-c", "import sys; from imagegen.cli import app; sys.argv[0] = 'imagegen'; app()"]
CLI_ENV = {"PYTHONPATH": str(ROOT)}
# The failover target of the project: a gap of at most miimon + 60 ms (the probe interval and the
# time the guest takes to act on the link change), in at least 19 of 20 cycles; never over 1 s.
SLACK_MS = 60.0
OUTAGE_LIMIT_MS = 1000.0

console = Console(stderr=True)


@dataclass
class Figure:
    """One measured quantity: its samples, and the name of the figure it is compared with."""

    part: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    reference: str | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def to_dict(self) -> dict[str, Any]:
        s = self.samples
        return {"part": self.part, "name": self.name, "unit": self.unit, "runs": len(s),
                "median": self.median, "min": min(s) if s else None, "max": max(s) if s else None,
                "samples": [round(x, 4) for x in s], "reference": self.reference, "note": self.note}


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, part: str, name: str, unit: str, reference: str | None = None, note: str = "") -> Figure:
        f = Figure(part, name, unit, reference=reference, note=note)
        self.figures.append(f)
        return f

    def by_name(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
                             "python": platform.python_version(),
                             "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
    try:
        facts["qemu"] = run([qemu_binary(), "--version"]).stdout.splitlines()[0]
    except Exception as e:  # a render-only run needs no QEMU
        facts["qemu"] = f"unavailable ({e})"
    return facts


# 0. Start-up: the command line as whole processes, beside `python -c pass` (bench/cli_startup.py).

def bench_startup(res: Results, runs: int) -> None:
    from cli_startup import measure

    figures = measure(runs, None, EXAMPLE)
    for name, f in figures.items():
        fig = res.add("startup", name, "ms", reference=None if name == "python -c pass" else "python -c pass",
                      note="whole process")
        fig.samples.extend(s * 1000 for s in f["samples"])
    res.details["startup"] = {"store": "a temporary store with a stand-in image entry (bench/cli_startup.py)"}


# 1. Render.

def synthetic_profile(bonds: int = 8, members: int = 4) -> str:
    """A host with `bonds` active-backup bonds of `members` NICs each (the last one wireless), every
    bond with a static address and DHCPv4 + DHCPv6: the renderer's work grows with each of them."""
    lines = ['[image]', 'hostname = "bench"', 'distribution = "debian"', 'release = "trixie"', '']
    for b in range(bonds):
        names = [f"en{b}p{m}" for m in range(members - 1)] + [f"wl{b}p0"]
        for n in names:
            lines += [f"[interfaces.{n}]", f'type = "{"wireless" if n.startswith("wl") else "ethernet"}"', ""]
        lines += [f"[bonds.bond{b}]", f"members = {json.dumps(names)}", f'primary = "{names[0]}"',
                  'mode = "active-backup"', "miimon = 100", 'fail_over_mac = "active"',
                  f'addresses = ["10.{b}.0.2/24", "fd00:{b}::2/64"]', "dhcp4 = true", "dhcp6 = true", ""]
    lines += ['[wireless]', 'country = "US"', '', '[[wireless.networks]]', 'ssid = "Bench"',
              'key_mgmt = "WPA-PSK"', 'passphrase = "bench-passphrase"', '']
    return "\n".join(lines)


def bench_render(res: Results, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imagegen-bench-render-") as tmp:
        work = Path(tmp)
        synthetic = work / "bench.toml"
        synthetic.write_text(synthetic_profile())
        profiles = {"laptop": EXAMPLE, "8x4": synthetic}
        loaded = {k: load_profiles([p]) for k, p in profiles.items()}
        # The synthetic host's state (DUID, control key) is made once, before anything is timed.
        states = {k: host_state_for(v) for k, v in loaded.items()}
        entries = {k: len(render_overlay(v, work / f"warm-{k}", state=states[k]).entries)
                   for k, v in loaded.items()}
        res.details["render"] = {"entries": entries, "synthetic_profile": "8 bonds x 4 members (3 ethernet + 1 "
                                 "wireless each), static IPv4+IPv6, DHCPv4+DHCPv6"}

        api = {k: res.add("render", f"render API {k}", "ms",
                          reference=None if k == "laptop" else "render API laptop",
                          note=f"{entries[k]} entries; load + render, in-process") for k in profiles}
        for i in range(runs):
            for k in profiles:
                def once(k: str = k, i: int = i) -> None:
                    lp = load_profiles([profiles[k]])
                    render_overlay(lp, work / f"api-{k}-{i}", state=states[k], target=resolve_target(lp.profile.image))
                api[k].samples.append(timed(once) * 1000)

        imports = res.add("render", "python -c 'import imagegen.cli'", "ms", note="interpreter start + imports")
        cli = {k: res.add("render", f"imagegen render {k} (process)", "ms",
                          reference="python -c 'import imagegen.cli'") for k in profiles}
        for i in range(runs):
            imports.samples.append(timed(lambda: run([sys.executable, "-c", "import imagegen.cli"],
                                                     env=CLI_ENV, cwd=ROOT)) * 1000)
            for k, p in profiles.items():
                argv = [*CLI, "render", str(p), "--out", str(work / f"cli-{k}-{i}")]
                cli[k].samples.append(timed(functools.partial(run, argv, env=CLI_ENV, cwd=ROOT)) * 1000)


# 2. Build.

def _set_address(profile: Path, old: str, new: str) -> None:
    text = profile.read_text()
    moved = text.replace(f'"{old}"', f'"{new}"', 1)
    if moved == text:
        raise RuntimeError(f"{profile}: no address {old} to change for a profile-only rebuild")
    profile.write_text(moved)


def bench_build(res: Results, runs: int, work: Path) -> None:
    profile = work / EXAMPLE.name
    shutil.copy(EXAMPLE, profile)
    state = EXAMPLE.with_name("laptop.state.toml")
    if state.exists():
        shutil.copy(state, work / state.name)
    cache = work / "mkosi-cache"
    store = work / "store"

    cold = res.add("build", "imagegen build, cold", "s", note="empty mkosi cache and store (tools tree, packages)")
    warm = res.add("build", "imagegen build, warm (profile-only change)", "s", reference="imagegen build, cold",
                   note="one address changed; mkosi's cached packages reused")
    console.print("build: cold imagegen build (minutes)…")
    b = realise_image(open_store(store), load_profiles([profile]), cache_root=cache, record=False, console=console)
    cold.samples.append(b.seconds)
    details: dict[str, Any] = {"cold_cache_reused": b.manifest.cache_reused, "warm_cache_reused": []}
    address = "192.168.0.2/24"
    for i in range(runs):
        _set_address(profile, address, f"192.168.0.{10 + i}/24")
        address = f"192.168.0.{10 + i}/24"
        console.print(f"build: warm rebuild {i + 1}/{runs}…")
        b = realise_image(open_store(store), load_profiles([profile]), cache_root=cache, record=False,
                          console=console)
        warm.samples.append(b.seconds)
        details["warm_cache_reused"].append(b.manifest.cache_reused)

    # imagegen's own overhead: the whole `imagegen build` process (a fresh store each time, so that it
    # builds) against `python -m mkosi` with the argv imagegen gives it, on the same warm mkosi cache.
    ours = res.add("build", "imagegen build (process, warm cache)", "s", reference="plain mkosi build",
                   note="render + store + mkosi + manifest")
    plain = res.add("build", "plain mkosi build", "s", note="python -m mkosi with imagegen's generated config")
    argv_same: list[bool] = []
    # The plain build needs the argv of an imagegen build, so one imagegen build comes first and is not
    # counted; after it the two alternate which goes first, so that neither always finds the page cache
    # warmed by the other.
    out = work / "overhead-seed"
    out.mkdir()
    data = _imagegen_build(profile, out, cache)
    for i in range(runs):
        console.print(f"build: imagegen build vs plain mkosi {i + 1}/{runs}…")
        plain_dir = work / f"plain-{i}"
        plain_dir.mkdir()
        argv, same = _plain_mkosi_argv(data, profile, plain_dir, cache)
        argv_same.append(same)
        order = ("imagegen", "plain") if i % 2 else ("plain", "imagegen")
        for which in order:
            if which == "plain":
                start = time.perf_counter()
                run([*mkosi_command(), *argv], log_file=plain_dir / "plain-mkosi.log", cwd=ROOT)
                plain.samples.append(time.perf_counter() - start)
            else:
                run_out = work / f"overhead-{i}"
                run_out.mkdir()
                start = time.perf_counter()
                data = _imagegen_build(profile, run_out, cache)
                ours.samples.append(time.perf_counter() - start)
    details["plain_mkosi_argv_equals_imagegens"] = argv_same
    res.details["build"] = details


def _imagegen_build(profile: Path, out: Path, cache: Path) -> dict[str, Any]:
    """One whole `imagegen build` process into a fresh store under out; its --json output."""
    proc = run([*CLI, "build", str(profile), "--store", str(out / "store"), "--cache-dir", str(cache),
                "--out-link", str(out / "result"), "--json"], env=CLI_ENV, cwd=ROOT, capture=True)
    # stderr's progress lines come first in the merged output; the JSON starts at a line "{".
    return json.loads(proc.stdout[re.search(r"^\{$", proc.stdout, re.M).start():])  # type: ignore[union-attr]


def _plain_mkosi_argv(built: dict[str, Any], profile: Path, out: Path, cache: Path) -> tuple[list[str], bool]:
    """The mkosi argv imagegen used for `built` (its --json), with its temporary trees made again, and
    whether it equals the argv in the build's log once those temporary paths are set aside."""
    manifest = built["manifest"]
    overlay = out / "plain-overlay"
    # As imagegen does: a writable copy of the read-only store tree, its hard links kept.
    copy_out(Path(built["overlay_path"]), overlay)
    image = load_profiles([profile]).profile.image
    request = BuildRequest(overlay=overlay, out_dir=out / "plain-out", distribution=manifest["distribution"],
                           release=manifest["release"], mirror=image.mirror, lab=manifest["variant"] == "lab",
                           hostname=image.hostname, root_password_hash=image.root_password_hash,
                           cache_root=cache)
    inputs = prepare_inputs(request, out / "plain-work", debian_mirror(request))
    argv = mkosi_argv(request, inputs)
    logged = Path(built["store_path"], "build.log").read_text().splitlines()[0].split(": ", 1)[1].split()

    def shape(args: list[str]) -> list[str]:
        # Temporary trees differ by path only; everything else must be the same word for word.
        return [a.split("=", 1)[0] + "=TREE" if a.startswith("--") and "=" in a and "tree" in a else a
                for a in args]
    return argv, shape(argv) == shape(logged)


# 3. Boot.

def lab_files(image: Path | None) -> ImageFiles:
    if image is not None:
        return ImageFiles.from_dir(image)
    console.print("the lab image of examples/laptop.toml from the store (built if its inputs changed)…")
    built = realise_image(open_store(None), load_profiles([EXAMPLE]), lab=True, record=False, console=console)
    return ImageFiles.from_dir(built.entry.path)


def bench_boot(res: Results, runs: int, files: ImageFiles, accel: AccelChoice) -> None:
    direct = res.add("boot", "direct kernel boot to guest agent", "s", reference="OVMF boot to guest agent",
                     note=f"{accel.accel.upper()}; QEMU start to first guest-ping answer")
    uefi = res.add("boot", "OVMF boot to guest agent", "s", note=f"{accel.accel.upper()}; OVMF + systemd-boot")
    for i in range(runs):
        for fig, is_uefi in ((direct, False), (uefi, True)):
            console.print(f"boot: {fig.name} {i + 1}/{runs}…")
            with Machine(files, accel=accel.accel, nics=LAB_NICS, uefi=is_uefi) as m:
                start = time.monotonic()
                m.launch()
                m.agent.wait_ready(900)
                fig.samples.append(time.monotonic() - start)


def bench_mkosi_vm(res: Results, runs: int, work: Path) -> None:
    """The plain image under `mkosi vm` (the tool a user of a hand-made mkosi project boots with), from the
    start of the mkosi process to the login prompt on its serial console. Not the lab image: its access
    point unit waits (up to 600 s) for the lab's uplink NIC, which mkosi's VM does not have."""
    fig = res.add("mkosi-vm", "mkosi vm to login prompt", "s",
                  note="plain image; TCG (--kvm=no), direct kernel boot (--firmware=linux), mkosi's tools-tree QEMU; "
                       "mkosi process start to 'login:' on the console")
    loaded = load_profiles([EXAMPLE])
    built = realise_image(open_store(None), loaded, lab=False, record=False, console=console)
    image = loaded.profile.image
    for i in range(runs):
        console.print(f"boot: mkosi vm {i + 1}/{runs}…")
        out = work / f"mkosi-vm-{i}"
        overlay = out / "overlay"
        copy_out(built.overlay.path, overlay)
        request = BuildRequest(overlay=overlay, out_dir=out / "out", distribution=built.manifest.distribution,
                               release=built.manifest.release, mirror=image.mirror, lab=False,
                               hostname=image.hostname, root_password_hash=image.root_password_hash)
        inputs = prepare_inputs(request, out / "work", debian_mirror(request))
        # mkosi vm boots what sits in its output directory, and writes to it: a writable copy of the entry.
        for name in OUTPUTS.values():
            shutil.copyfile(built.entry.path / name, inputs.output_dir / name)
        argv = mkosi_argv(request, inputs, verb="vm")
        argv[-1:-1] = ["--kvm=no", "--vsock=no", "--firmware=linux", "--ram=2G", "--cpus=2"]
        # The console log stays, so that a slow figure can be explained.
        logs = ROOT / "build" / "bench-mkosi-vm"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            fig.samples.append(_until_login(argv, logs / f"console-{i + 1}.log"))
        finally:
            _kill_users_of(inputs.output_dir / OUTPUTS["image"])


def _kill_users_of(image: Path) -> None:
    """mkosi starts QEMU in a session of its own, which killing mkosi's process group leaves running,
    holding the image's write lock: end every process whose command line names the image."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        if pid != os.getpid() and str(image) in cmdline_of(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _until_login(argv: list[str], log: Path, timeout: float = 900.0) -> float:
    """Run mkosi with a terminal of its own (its console modes want one) until 'login:' shows on it;
    seconds from the start. The process group is killed afterwards, QEMU with it."""
    # Not through imagegen.run.run(): that one waits for the end of a command, this reads a console as
    # it comes and stops the command itself.
    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.Popen([*mkosi_command(), *argv], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        with log.open("wb") as f:
            while time.monotonic() - start < timeout:
                ready, _, _ = select.select([master], [], [], 1.0)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        chunk = b""
                    f.write(chunk)
                    seen = (seen + chunk)[-4096:]
                    if b"login:" in seen:
                        return time.monotonic() - start
                if proc.poll() is not None:
                    break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    last = seen.decode(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"mkosi vm showed no login prompt (exit {proc.returncode}): {' / '.join(last)}")


# 4. Failover.

def bench_failover(res: Results, cycles: int, files: ImageFiles, accel: AccelChoice, pictures: Path) -> None:
    loaded = load_profiles([EXAMPLE])
    plan = plan_lab(lab_profile(loaded))
    bond = loaded.profile.bonds[plan.bond]
    bound = {"failover": bond.miimon + bond.downdelay, "failback": bond.updelay}
    dhcp6_unit = resolve_target(loaded.profile.image).layout.dhcp6_unit
    figs = {ev: (res.add("failover", f"{ev} gap", "ms", note=f"IPv4; bound {bound[ev]} ms "
                         f"({'miimon + downdelay' if ev == 'failover' else 'updelay'}), target ≤ bound + {SLACK_MS:g}"),
                 res.add("failover", f"{ev} lost probes", "probes", note="20 ms probes from netns ap, IPv4"),
                 res.add("failover", f"{ev} kernel switch after QMP", "ms",
                         note="'new active one' mark; ± the clock offset's uncertainty"))
            for ev in ("failover", "failback")}
    # The QMP command is placed on the guest's clock by one guest-get-time between two host readings:
    # half that round trip bounds the error of every time measured against the command.
    uncertainty = res.add("failover", "guest clock offset uncertainty", "ms",
                          note="half a guest-get-time round trip, per event")
    figs6 = {ev: (res.add("failover", f"{ev} gap, IPv6", "ms", note="the same cycles, the bond's IPv6 address"),
                  res.add("failover", f"{ev} lost probes, IPv6", "probes", note="20 ms probes from netns ap"))
             for ev in ("failover", "failback")}
    pictures.mkdir(parents=True, exist_ok=True)
    cycles_out: list[dict[str, Any]] = []
    with Machine(files, accel=accel.accel, nics=LAB_NICS) as vm:
        session = LabSession(vm, plan, dhcp6_unit)
        session.artifacts = pictures
        console.print("failover: booting the lab VM…")
        session.boot_seconds = session.boot(agent_timeout=900)
        # The cycles drive the lab through the public test API, as a user's check would.
        machine, lab = bind(session, CallLog(pictures / "machine-calls.log"))

        def wlan_up() -> bool:
            b = machine.bond(plan.bond)
            s = b.slave(plan.wireless) if b else None
            return b is not None and b.active == plan.wired and s is not None and s.mii_status == "up"

        def active_is(slave: str) -> Callable[[], bool]:
            return lambda: (b := machine.bond(plan.bond)) is not None and b.active == slave

        up = machine.poll(wlan_up, lab.timeout(180))
        if not up:
            raise RuntimeError(f"the bond did not come up on {plan.wired} with {plan.wireless} associated "
                               f"within {up.seconds:.0f} s")
        target6 = lab.probe_target(6)
        if target6 is None:
            raise RuntimeError(f"{plan.bond} has no global IPv6 address to probe")
        for i in range(cycles):
            for ev, link_up, want in (("failover", False, plan.wireless), ("failback", True, plan.wired)):
                name = f"{ev}-{i + 1}"
                probe = lab.probe(name=name)
                probe6 = lab.probe(target6, 6, name=f"{name}-v6")
                time.sleep(0.5)
                clock = machine.clock_offset()
                uncertainty.samples.append(round(clock.uncertainty * 1000, 1))
                sent = lab.wired(link_up)
                t = clock.guest(sent)
                got = machine.poll(active_is(want), lab.timeout(15), interval=0.2)
                time.sleep(1.5)
                outage = probe.outage(sent, got.seconds, clock=clock)
                outage6 = probe6.outage(sent, got.seconds, clock=clock)
                marks = machine.kernel_marks(plan.bond)
                switch_at = next((m.time for m in marks if m.kind == "active" and m.time >= t - 0.5), None)
                switch = None if switch_at is None else round((switch_at - t) * 1000, 1)
                replies = probe.stop()
                plot_timeline(Timeline(f"{ev} cycle {i + 1}: {plan.bond}, probe from netns ap", replies.interval_ms,
                                       replies.reply_times, t, marks), pictures / f"timeline-{name}.svg")
                gap_f, lost_f, switch_f = figs[ev]
                gap_f.samples.append(outage.gap_ms)
                lost_f.samples.append(outage.lost)
                if switch is not None:
                    switch_f.samples.append(switch)
                figs6[ev][0].samples.append(outage6.gap_ms)
                figs6[ev][1].samples.append(outage6.lost)
                cycles_out.append({"event": ev, "cycle": i + 1, "switched": bool(got), "gap_ms": outage.gap_ms,
                                   "lost": outage.lost, "sent": outage.sent, "largest_gap_ms": outage.largest_gap_ms,
                                   "gap_v6_ms": outage6.gap_ms, "lost_v6": outage6.lost, "sent_v6": outage6.sent,
                                   "kernel_switch_after_qmp_ms": switch,
                                   "clock_offset_uncertainty_ms": round(clock.uncertainty * 1000, 1)})
                console.print(f"failover: {name}: gap {outage.gap_ms:.0f} ms, {outage.lost} lost; "
                              f"IPv6 gap {outage6.gap_ms:.0f} ms, {outage6.lost} lost")
    summary = {}
    for ev in ("failover", "failback"):
        for family, gaps in (("ipv4", figs[ev][0].samples), ("ipv6", figs6[ev][0].samples)):
            summary[f"{ev}_{family}"] = {
                "bound_ms": bound[ev], "within_bound_plus_slack": sum(g <= bound[ev] + SLACK_MS for g in gaps),
                "over_1s": sum(g > OUTAGE_LIMIT_MS for g in gaps), "cycles": len(gaps)}
    res.details["failover"] = {"cycles": cycles_out, "summary": summary, "timelines": str(pictures),
                               "agent_ready_s": round(session.boot_seconds, 1)}


# 5. imagegen test.

def _timed_test_runs(part: str, args: list[str], runs: int, image: Path | None, work: Path, wall: Figure,
                     about: str, profile: Path = EXAMPLE, tag: str = "") -> list[dict[str, Any]]:
    """Run `imagegen test PROFILE *args --rerun` runs times, timing each process into wall; the verdicts."""
    outcomes = []
    for i in range(runs):
        console.print(f"{part}: imagegen test {' '.join(args)} --rerun {i + 1}/{runs} ({about} under TCG)…")
        verdict = work / f"verdict{tag}-{i}.json"
        argv = [*CLI, "test", str(profile), *args, "--rerun", "--json-file", str(verdict),
                "--artifacts", str(work / f"art{tag}-{i}")]
        if image is not None:
            argv += ["--image", str(image)]
        start = time.perf_counter()
        proc = run(argv, env=CLI_ENV, cwd=ROOT, check=False, log_file=work / f"{part}{tag}-{i}.log")
        wall.samples.append(time.perf_counter() - start)
        data = json.loads(verdict.read_text()) if verdict.is_file() else {}
        outcomes.append({"rc": proc.returncode, "passed": data.get("passed"),
                         "scenarios": {s["name"]: {"passed": s["passed"], "seconds": s["seconds"]}
                                       for s in data.get("scenarios", [])},
                         "figures": data.get("figures", {})})
    return outcomes


def bench_test(res: Results, runs: int, image: Path | None, work: Path) -> None:
    wall = res.add("test", "imagegen test, all scenarios (--rerun)", "s", reference="sum of scenario times",
                   note="process wall time, boots of both VMs included")
    inner = res.add("test", "sum of scenario times", "s", note="as the verdict reports them")
    outcomes = _timed_test_runs("test", [], runs, image, work, wall, "about 6 minutes")
    inner.samples.extend(sum(s["seconds"] for s in o["scenarios"].values()) for o in outcomes)
    res.details["test"] = {"runs": outcomes}


# The catalog's first seven scenarios: the two VMs of the article's bond, the figures the speed target of
# a whole run was set on.
SEVEN = ("boot-wired-primary", "failover", "failback", "wifi-only-boot", "hotplug", "ap-lost", "clean-shutdown")


def bench_seven(res: Results, runs: int, image: Path | None, work: Path) -> None:
    """The seven original scenarios on the laptop (without its own checks), the wifi-only VM booting
    beside the main VM's scenarios (the default) against one VM at a time (--sequential), alternating."""
    beside = res.add("seven", "imagegen test, 7 scenarios, the next VM boots beside (--rerun)", "s",
                     reference="imagegen test, 7 scenarios, --sequential (--rerun)", note="target <= 180 s")
    one = res.add("seven", "imagegen test, 7 scenarios, --sequential (--rerun)", "s", note="one VM at a time")
    boots = {mode: res.add("seven", f"wifi-only VM's agent answered, {mode}", "s",
                           note="seconds from its start") for mode in ("beside", "sequential")}
    profile = _without_tests(work)
    args = [a for name in SEVEN for a in ("--scenario", name)]
    outcomes: dict[str, list[dict[str, Any]]] = {"beside": [], "sequential": []}
    for i in range(runs):  # alternating, so that a noisy minute falls on both
        outcomes["beside"] += _timed_test_runs("seven", args, 1, image, work, beside, "about 2.5 minutes",
                                               profile, tag=f"-beside{i}")
        outcomes["sequential"] += _timed_test_runs("seven", [*args, "--sequential"], 1, image, work, one,
                                                   "about 3 minutes", profile, tag=f"-sequential{i}")
    for mode, runs_of in outcomes.items():
        boots[mode].samples.extend(float(o["figures"]["wifi-only_vm_agent_ready_s"]) for o in runs_of
                                   if isinstance(o["figures"].get("wifi-only_vm_agent_ready_s"), (int, float)))
    res.details["seven"] = {"runs": outcomes}


ONE_CHECK = '''"""The bench's one user check: the laptop's static address answers the peer."""


def test_peer_reaches_the_laptop_over_the_bond(machine, lab):
    lab.peer.wait_until_succeeds("ping -n -c 1 -W 1 192.168.0.2", timeout=300)
'''


def _without_tests(work: Path) -> Path:
    """The laptop example without its own [tests] (layered lists of test files add up, so a layer cannot
    take them away), beside its host state: the image is the same (its hash leaves tests out)."""
    text = EXAMPLE.read_text()
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip() == "[tests]"
        if not skipping:
            kept.append(line)
    profile = work / EXAMPLE.name
    profile.write_text("".join(kept))
    state = EXAMPLE.with_name(EXAMPLE.stem + ".state.toml")
    if state.is_file():
        shutil.copy(state, work / state.name)
    return profile


def bench_check(res: Results, runs: int, image: Path | None, work: Path) -> None:
    """One user check on the built lab image, as a person iterating on a test file runs it: the check
    alone (--no-scenarios), beside the same check after the boot scenario's waits."""
    alone = res.add("check", "imagegen test --no-scenarios, one user check (--rerun)", "s",
                    reference="imagegen test --scenario boot-wired-primary, one user check (--rerun)",
                    note="the check alone; target <= 70 s")
    after = res.add("check", "imagegen test --scenario boot-wired-primary, one user check (--rerun)", "s",
                    note="the boot scenario's waits, then the check")
    boot = res.add("check", "boot to the guest agent", "s", note="inside the --no-scenarios runs")
    (work / "one_check.py").write_text(ONE_CHECK)
    profile = _without_tests(work)
    outcomes: dict[str, list[dict[str, Any]]] = {"no-scenarios": [], "boot-wired-primary": []}
    for i in range(runs):  # alternating, so that a noisy minute falls on both
        outcomes["no-scenarios"] += _timed_test_runs(
            "check", ["--script", str(work / "one_check.py"), "--no-scenarios"], 1, image, work, alone,
            "about a minute", profile, tag=f"-alone{i}")
        outcomes["boot-wired-primary"] += _timed_test_runs(
            "check", ["--script", str(work / "one_check.py"), "--scenario", "boot-wired-primary"], 1, image,
            work, after, "about a minute and a half", profile, tag=f"-after{i}")
    boot.samples.extend(float(o["figures"]["main_vm_agent_ready_s"]) for o in outcomes["no-scenarios"]
                        if isinstance(o["figures"].get("main_vm_agent_ready_s"), (int, float)))
    res.details["check"] = {"runs": outcomes}


# Output.

def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def print_table(res: Results, facts: dict[str, Any], accel: str | None) -> None:
    table = Table(title=f"imagegen benchmarks — {facts['cpus']} CPUs ({facts['cpu_model']}), "
                        f"{accel.upper() if accel else 'no VM'}")
    for col in ("part", "figure", "median", "min", "max", "runs", "vs reference", "note"):
        table.add_column(col, justify="right" if col in ("median", "min", "max", "runs") else "left")
    for f in res.figures:
        d = f.to_dict()
        ratio = ""
        ref = res.by_name(f.reference) if f.reference else None
        if ref is not None and ref.median and f.median is not None:
            ratio = f"{100 * f.median / ref.median:.0f} % of {ref.name}"
        table.add_row(f.part, f.name, f"{_fmt(d['median'])} {f.unit}", _fmt(d["min"]), _fmt(d["max"]),
                      str(d["runs"]), ratio, f.note)
    Console(width=200).print(table)
    for part, err in res.errors.items():
        console.print(f"[red]{part}: not measured: {err}[/red]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and cycles")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json", help="where the JSON goes")
    parser.add_argument("--runs", type=int, help="runs per figure (default 15 for startup, 10 for render, 3 "
                        "for build and boot, 1 for test; --quick: 5, 3, 1, 1, 1)")
    parser.add_argument("--cycles", type=int, help="set_link cycles (default 20, --quick 3)")
    parser.add_argument("--image", type=Path, help="lab image directory for boot, failover and test "
                        "(default: the store's lab image of examples/laptop.toml)")
    parser.add_argument("--timelines", type=Path, default=ROOT / "build" / "bench-timelines",
                        help="where the failover part draws its timelines")
    parser.add_argument("--fresh", action="store_true", help="drop the other parts' figures from the JSON file "
                        "instead of keeping them")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    def runs(default: int, quick: int) -> int:
        return args.runs or (quick if args.quick else default)

    facts = machine_facts()
    res = Results()
    accel: AccelChoice | None = None
    files: ImageFiles | None = None
    when: dict[str, tuple[str, float]] = {}
    for part in parts:
        console.rule(part)
        started = time.monotonic()
        when[part] = (datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), started)
        try:
            if part == "startup":
                bench_startup(res, runs(15, 5))
            elif part == "render":
                bench_render(res, runs(10, 3))
            elif part == "build":
                with tempfile.TemporaryDirectory(prefix="imagegen-bench-build-", dir="/var/tmp") as tmp:
                    bench_build(res, runs(3, 1), Path(tmp))
            elif part == "mkosi-vm":
                with tempfile.TemporaryDirectory(prefix="imagegen-bench-mkosi-vm-", dir="/var/tmp") as tmp:
                    bench_mkosi_vm(res, runs(3, 1), Path(tmp))
            else:
                if files is None:
                    files = lab_files(args.image)
                if accel is None and part not in ("test", "seven", "check"):
                    accel = choose_accel("auto", files.kernel)
                    console.print(f"accelerator: {accel.reason}")
                if part == "boot":
                    assert accel is not None
                    bench_boot(res, runs(3, 1), files, accel)
                elif part == "failover":
                    assert accel is not None
                    bench_failover(res, args.cycles or (3 if args.quick else 20), files, accel, args.timelines)
                elif part == "test":
                    with tempfile.TemporaryDirectory(prefix="imagegen-bench-test-") as tmp:
                        bench_test(res, runs(1, 1), files.image.parent if args.image else None, Path(tmp))
                elif part == "seven":
                    with tempfile.TemporaryDirectory(prefix="imagegen-bench-seven-") as tmp:
                        bench_seven(res, runs(1, 1), files.image.parent if args.image else None, Path(tmp))
                elif part == "check":
                    with tempfile.TemporaryDirectory(prefix="imagegen-bench-check-") as tmp:
                        bench_check(res, runs(3, 1), files.image.parent if args.image else None, Path(tmp))
        except KeyboardInterrupt:
            res.errors[part] = "interrupted"
            break
        except Exception as e:
            res.errors[part] = f"{type(e).__name__}: {e}"
            console.print(traceback.format_exc())

        finally:
            when[part] = (when[part][0], time.monotonic() - when[part][1])

    print_table(res, facts, accel.accel if accel else None)
    # The parts measured now replace the same parts of an earlier file; the others stay, each with
    # its own date, so that one part can be measured again alone.
    out: dict[str, Any] = {"machine": facts, "parts": {}}
    if args.json.is_file() and not args.fresh:
        try:
            out["parts"] = json.loads(args.json.read_text()).get("parts", {})
        except json.JSONDecodeError:
            pass
    for part in parts:
        out["parts"][part] = {
            "measured_at": when[part][0], "seconds": round(when[part][1], 1), "quick": args.quick,
            "accel": accel.reason if accel and part != "render" else None,
            "figures": [f.to_dict() for f in res.figures if f.part == part],
            "details": res.details.get(part), "not_measured": res.errors.get(part),
        }
    out["parts"] = {p: out["parts"][p] for p in PARTS if p in out["parts"]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = args.json.with_name(args.json.name + ".tmp")
    tmp_json.write_text(json.dumps(out, indent=2) + "\n")
    tmp_json.replace(args.json)
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
