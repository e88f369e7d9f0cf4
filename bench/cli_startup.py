"""How long the imagegen command line takes to start, beside the interpreter's own start.

    python bench/cli_startup.py [--runs 15] [--store DIR] [--profile P.toml] [--json FILE]

Each command runs as a whole process (the way a person or a script runs it), N times, interleaved; the
median, the min and the ratio of the median to `python -c pass` are printed.

A no-op `imagegen build` needs a store that holds the profile's image. With --store, that store (the
bench stops if the build was not a no-op). Without, a copy of the profile (alone: it may name no other
file) is built into a temporary store with a stand-in image entry: the entry of the profile's real
derivation (this checkout's code, this mkosi's version), whose image files are placeholders, since a
no-op build opens none of them but the manifest; mkosi does not run. The no-op is timed twice: from
the record the previous build left (stages/unchanged.py; the usual case), and with that record
removed before each run (the full path: load, validate, plan).

Bytecode: with PYTHONDONTWRITEBYTECODE set Python writes no .pyc, and compiles every module at every
start. An installed imagegen has its bytecode, so imagegen's is compiled before the first timed run and
the commands run without that variable.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from imagegen.cli import app; sys.argv[0] = 'imagegen'; app()"]


@dataclass
class Case:
    name: str
    argv: list[str]
    before: Callable[[], None] = lambda: None  # run before each timed run, outside the timing
    samples: list[float] = field(default_factory=list)


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(REPO)}
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    return out


def timed(argv: list[str], cwd: Path, environ: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=environ)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:]) or argv}: exit {proc.returncode}\n{proc.stderr}")
    return took


def stand_in_store(store: Path, profile: Path, work: Path) -> Path:
    """Fill store with the profile's image entry as `imagegen build` names it, its image files
    placeholders (see the module's docstring); returns the entry."""
    sys.path.insert(0, str(REPO))
    from imagegen.image.config import BuildRequest
    from imagegen.image.manifest import MANIFEST_NAME, OUTPUTS, BuildManifest
    from imagegen.image.mkosi import KERNEL_COMMAND_LINE, BuildResult
    from imagegen.profile import load_profiles
    from imagegen.stages import realise

    def placeholder(request: BuildRequest, console: object = None, *, into: Path | None = None,
                    refresh: bool = False) -> BuildResult:
        assert into is not None
        for name in OUTPUTS.values():
            (into / name).write_bytes(b"placeholder for the startup bench, not an image\n")
        manifest = BuildManifest(
            distribution=request.distribution, release=request.resolved_release, variant=request.variant,
            mkosi_version=realise.mkosi_version(), profile_hash=request.profile_hash, overlay_hash="-",
            config_hash="-", cache_reused=False, cache_reason="a stand-in of bench/cli_startup.py",
            duration_seconds=0.0, outputs={k: str(request.out_dir / n) for k, n in OUTPUTS.items()},
            kernel_command_line=KERNEL_COMMAND_LINE, packages=[])
        (into / MANIFEST_NAME).write_text(manifest.to_json())
        return BuildResult(out_dir=request.out_dir, manifest=manifest)

    real = realise.build_image
    realise.build_image = placeholder  # type: ignore[assignment]
    try:
        built = realise.realise_image(realise.open_store(store), load_profiles([profile]), link=None, record=False)
    finally:
        realise.build_image = real
    return built.entry.path


def measure(runs: int, store: Path | None, profile: Path) -> dict[str, Any]:
    """The figures, by command: median_s, min_s, ratio_to_python (of the medians), runs, samples."""
    environ = env()
    compileall.compile_dir(REPO / "imagegen", quiet=1)
    with tempfile.TemporaryDirectory(prefix="imagegen-startup-") as tmp:
        work = Path(tmp)
        if store is None:
            # A copy, so that its host state file is made beside it in the temporary directory.
            profile = Path(shutil.copy(profile, work / profile.name))
            store = work / "store"
            stand_in_store(store, profile, work)
        build = [*CLI, "build", str(profile), "--store", str(store), "--out-link", str(work / "result")]
        first = subprocess.run(build, cwd=work, capture_output=True, text=True, env=environ)
        if first.returncode != 0 or not first.stdout.startswith("reused "):
            raise SystemExit(f"{store} does not hold the image of {profile}: the build was no no-op\n"
                             f"{first.stdout}{first.stderr}")
        records = store / "unchanged"

        def forget() -> None:
            for record in records.glob("*.json"):
                record.unlink()

        cases = [
            Case("python -c pass", [sys.executable, "-c", "pass"]),
            Case("python -c 'import imagegen.cli'", [sys.executable, "-c", "import imagegen.cli"]),
            Case("imagegen --help", [*CLI, "--help"]),
            Case("imagegen build --help", [*CLI, "build", "--help"]),
            Case("imagegen build (no-op, from the record)", build),
            Case("imagegen build (no-op, full path)", build, forget),
        ]
        for _ in range(runs):
            for case in cases:  # interleaved, so that a busy moment of the machine hits all alike
                case.before()
                case.samples.append(timed(case.argv, work, environ))
    base = statistics.median(cases[0].samples)
    return {c.name: {"median_s": round(statistics.median(c.samples), 3), "min_s": round(min(c.samples), 3),
                     "ratio_to_python": round(statistics.median(c.samples) / base, 2), "runs": runs,
                     "samples": [round(s, 4) for s in c.samples]} for c in cases}


def print_figures(figures: dict[str, Any]) -> None:
    width = max(map(len, figures))
    runs = next(iter(figures.values()))["runs"]
    print(f"{'command'.ljust(width)}  median   min      × python -c pass   ({runs} runs each, whole processes)")
    for name, f in figures.items():
        print(f"{name.ljust(width)}  {f['median_s']:.3f} s  {f['min_s']:.3f} s  {f['ratio_to_python']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--store", type=Path, help="a store that holds the profile's image (default: a "
                        "temporary store with a stand-in entry)")
    parser.add_argument("--profile", type=Path, default=REPO / "examples" / "laptop.toml")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(args.runs, args.store.resolve() if args.store else None, args.profile.resolve())
    print_figures(figures)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": args.runs, "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
