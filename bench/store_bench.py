"""What the store costs: hashing the inputs, a first realise, and the no-op realise of an unchanged stage.

Renders a profile once, then times, in a throw-away store:
  hash    building the render derivation (profile JSON + the overlay and mkosi.conf.d trees hashed)
  cold    realise that copies the overlay into a new entry
  reused  realise of the same derivation again (what an unchanged `imagegen render/build` pays)

    python bench/store_bench.py [examples/laptop.toml] [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imagegen.profile import load_profiles
from imagegen.render import render_overlay
from imagegen.store import Derivation, FileTree, Store

REPO = Path(__file__).resolve().parents[1]


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=Path, default=REPO / "examples/laptop.toml")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagegen-store-bench-") as tmp:
        work = Path(tmp)
        loaded = load_profiles([args.profile])
        overlay = work / "overlay"
        render_overlay(loaded, overlay)

        def derivation() -> Derivation:
            return Derivation(
                f"{loaded.profile.image.hostname}-overlay",
                "render",
                {
                    "profile": loaded.profile.model_dump(mode="json"),
                    "overlay": FileTree(overlay),
                    "mkosi": FileTree(REPO / "mkosi.conf.d"),
                },
            )

        def copy(out: Path) -> None:
            out.rmdir()
            shutil.copytree(overlay, out, symlinks=True)

        hashing = timed(derivation, args.runs)
        cold = []
        for run in range(args.runs):
            store = Store(work / f"store-{run}")
            drv = derivation()
            start = time.perf_counter()
            entry = store.realise(drv, copy)
            cold.append(time.perf_counter() - start)
            assert not entry.reused
        reused_store = Store(work / "store-0")
        reused = timed(lambda: reused_store.realise(derivation(), copy), args.runs)
        assert reused_store.realise(derivation(), copy).reused

    figures = {
        "profile": str(args.profile),
        "runs": args.runs,
        "hash_ms": round(statistics.median(hashing) * 1000, 2),
        "cold_realise_ms": round(statistics.median(cold) * 1000, 2),
        "reused_realise_ms": round(statistics.median(reused) * 1000, 2),
        "reused_realise_max_ms": round(max(reused) * 1000, 2),
    }
    print(f"store costs for {args.profile} (median of {args.runs} runs)")
    print(f"  hash inputs (profile, overlay tree, mkosi.conf.d)  {figures['hash_ms']:8.2f} ms")
    print(f"  first realise (copy the overlay in)               {figures['cold_realise_ms']:8.2f} ms")
    print(f"  realise again, unchanged (reused)                 {figures['reused_realise_ms']:8.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
