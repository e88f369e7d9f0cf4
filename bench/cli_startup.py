"""How long the imagegen command line takes to start, beside the interpreter's own start.

    python bench/cli_startup.py [--runs 15] [--store DIR --profile P.toml] [--json FILE]

Each command runs as a whole process (the way a person or a script runs it), N times; the median and
its ratio to `python -c pass` are printed. A no-op `imagegen build` needs a store that already holds
the profile's image: pass it with --store (the build's result link goes into a temporary directory;
the bench stops if the build was not a no-op). Without --store, `imagegen check --no-verify` stands in
for it: it loads, validates and renders the profile as a no-op build does, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from imagegen.cli import app; sys.argv[0] = 'imagegen'; app()"]


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=_env())
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:]) or argv}: exit {proc.returncode}\n{proc.stderr}")
    return took


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--store", type=Path, help="a store that holds the profile's image (for a no-op build)")
    parser.add_argument("--profile", type=Path, default=REPO / "examples" / "laptop.toml")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    profile = str(args.profile.resolve())
    with tempfile.TemporaryDirectory(prefix="imagegen-startup-") as tmp:
        work = Path(tmp)
        cases: list[tuple[str, list[str]]] = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("imagegen --help", [*CLI, "--help"]),
            ("imagegen render --help", [*CLI, "render", "--help"]),
        ]
        if args.store is not None:
            build = [*CLI, "build", profile, "--store", str(args.store.resolve()), "--out-link", str(work / "result")]
            first = subprocess.run(build, cwd=work, capture_output=True, text=True, env=_env())
            if first.returncode != 0 or not first.stdout.startswith("reused "):
                raise SystemExit(f"{args.store} does not hold the image of {profile}: the build was no no-op\n"
                                 f"{first.stdout}{first.stderr}")
            cases.append(("imagegen build (no-op)", build))
        else:
            cases.append(("imagegen check --no-verify (no store given)", [*CLI, "check", profile, "--no-verify"]))
        samples: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, argv in cases:  # interleaved, so that a busy moment of the machine hits all alike
                samples[name].append(timed(argv, work))
    base = statistics.median(samples["python -c pass"])
    figures = {name: {"median_s": round(statistics.median(s), 3), "min_s": round(min(s), 3),
                      "ratio_to_python": round(statistics.median(s) / base, 2)} for name, s in samples.items()}
    width = max(map(len, figures))
    print(f"{'command'.ljust(width)}  median   min      × python -c pass   ({args.runs} runs each)")
    for name, f in figures.items():
        print(f"{name.ljust(width)}  {f['median_s']:.3f} s  {f['min_s']:.3f} s  {f['ratio_to_python']:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": args.runs, "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
