"""Cold and warm `imagegen build` times for one profile (figures for the README, not a test).

Cold: an empty mkosi cache directory, so the tools tree and the image's packages are installed from
scratch (downloaded .debs may still come from mkosi's package cache in ~/.cache/mkosi). Warm: the same
profile with one address changed, which must reuse the cache.

    python bench/build_bench.py [examples/laptop.toml] [--lab]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from imagegen.cli.image import build_profile


def timed_build(profile: Path, out: Path, cache: Path, lab: bool) -> tuple[float, bool]:
    start = time.monotonic()
    result = build_profile([profile], out=out, lab=lab, cache_root=cache)
    return time.monotonic() - start, result.manifest.cache_reused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=Path, default=Path("examples/laptop.toml"))
    parser.add_argument("--lab", action="store_true", help="benchmark the lab variant")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagegen-bench-", dir="build" if Path("build").is_dir() else None) as tmp:
        work = Path(tmp)
        profile = work / args.profile.name
        shutil.copy(args.profile, profile)
        state = args.profile.with_name(args.profile.stem + ".state.toml")
        if state.exists():
            shutil.copy(state, work / state.name)
        cache = work / "cache"

        cold, cold_reused = timed_build(profile, work / "cold", cache, args.lab)
        text = profile.read_text()
        moved = text.replace(".2/24", ".3/24", 1)
        if moved == text:
            raise SystemExit(f"{args.profile}: no address ending in .2/24 to change for the warm build")
        profile.write_text(moved)
        warm, warm_reused = timed_build(profile, work / "warm", cache, args.lab)

    variant = "lab" if args.lab else "plain"
    print(f"profile {args.profile} ({variant} image)")
    print(f"cold build (empty mkosi cache): {cold:6.1f} s  cache reused: {cold_reused}")
    print(f"warm build (address changed):  {warm:6.1f} s  cache reused: {warm_reused}")


if __name__ == "__main__":
    main()
