"""What an unchanged `imagegen build` and `imagegen test` cost from the command line: the no-op timings.

Runs each command once to warm up (that run may build the image or boot the lab VMs, if the store holds
no entry for the profile yet), then --runs more times, and prints the wall time of the whole process
(Python start and imports included) and the time the command itself reports for its no-op.

    python bench/store_cli_bench.py [examples/laptop.toml] [--runs 5] [--lab] [--no-test] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from imagegen.run import run

REPO = Path(__file__).resolve().parents[1]
BUILD_REUSED = re.compile(r"^reused (\S+) \(unchanged inputs; ([0-9.]+) s\)", re.M)
TEST_REUSED = re.compile(r"^verdict: reused (\S+)", re.M)


def imagegen(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = run([sys.executable, "-c", "from imagegen.cli import app; app()", *args], check=False, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: a verdict with failed scenarios, still a verdict
        raise SystemExit(f"imagegen {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=Path, default=REPO / "examples/laptop.toml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lab", action="store_true", help="time the lab variant's build")
    parser.add_argument("--no-test", action="store_true", help="time the build only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    profile = str(args.profile.resolve())
    figures: dict[str, object] = {"profile": profile, "runs": args.runs}

    build = ["build", profile, "--out-link", "result-bench", *(["--lab"] if args.lab else [])]
    imagegen(*build)
    walls, reported = [], []
    for _ in range(args.runs):
        wall, out = imagegen(*build)
        match = BUILD_REUSED.search(out)
        if not match:
            raise SystemExit(f"imagegen build was not a no-op:\n{out[-2000:]}")
        walls.append(wall)
        reported.append(float(match[2]))
    figures["build_path"] = match[1]
    figures["build_noop_wall_s"] = round(statistics.median(walls), 3)
    figures["build_noop_reported_s"] = round(statistics.median(reported), 3)
    (REPO / "result-bench").unlink(missing_ok=True)
    print(f"no-op costs for {profile} (median of {args.runs} runs)")
    print(f"  imagegen build, whole process       {figures['build_noop_wall_s']:7.3f} s")
    print(f"  imagegen build, as it reports       {figures['build_noop_reported_s']:7.3f} s")

    if not args.no_test:
        imagegen("test", profile)
        walls = []
        for _ in range(args.runs):
            wall, out = imagegen("test", profile)
            if not TEST_REUSED.search(out):
                raise SystemExit(f"imagegen test was not a no-op:\n{out[-2000:]}")
            walls.append(wall)
        figures["test_noop_wall_s"] = round(statistics.median(walls), 3)
        print(f"  imagegen test (lab image + verdict) {figures['test_noop_wall_s']:7.3f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
