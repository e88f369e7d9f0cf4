"""`imagegen build` times for one profile by kind of change (figures for the docs, not a test).

First build: with an empty mkosi cache directory (the default, a temporary one) it is cold, the tools
tree and the image's packages installed from scratch (downloaded .debs may still come from mkosi's
package cache in ~/.cache/mkosi); with `--cache DIR` holding a cache of the same package set it is warm.
Then, each on the cache the build before left:

- address: one bond address changed (the network sections), which must reuse the cache;
- system: a file's content, a user's description and a masked unit changed (the files, users and
  services sections), which must reuse it too (examples/laptop.toml has each);
- package: one package added to packages.install, which changes mkosi's cache key: the image's
  packages are installed again, the tools tree is kept.

    python bench/build_bench.py [examples/laptop.toml] [--lab] [--cache DIR] [--skip address]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imagegen.cli.image import build_profile

EXTRA_PACKAGE = "htop"


def timed_build(profile: Path, out: Path, cache: Path, lab: bool) -> tuple[float, bool, str]:
    start = time.monotonic()
    result = build_profile([profile], out=out, lab=lab, cache_root=cache)
    return time.monotonic() - start, result.manifest.cache_reused, result.manifest.cache_reason


def _replace(profile: Path, old: str, new: str) -> None:
    text = profile.read_text()
    if old not in text:
        raise SystemExit(f"{profile}: no {old!r} to change")
    profile.write_text(text.replace(old, new, 1))


def change_address(profile: Path) -> None:
    _replace(profile, ".2/24", ".3/24")


def change_system(profile: Path) -> None:
    _replace(profile, "PermitRootLogin no\n", "PermitRootLogin no\n# changed by the benchmark\n")
    _replace(profile, 'description = "Alice"', 'description = "Alice B"')
    profile.write_text(profile.read_text() + '\n[services."apt-daily.timer"]\nmask = true\n')


def change_packages(profile: Path) -> None:
    _replace(profile, 'install = ["openssh-server"', f'install = ["{EXTRA_PACKAGE}", "openssh-server"')


CHANGES: dict[str, Callable[[Path], None]] = {
    "address": change_address, "system": change_system, "package": change_packages,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=Path, default=Path("examples/laptop.toml"))
    parser.add_argument("--lab", action="store_true", help="benchmark the lab variant")
    parser.add_argument("--cache", type=Path, help="the mkosi cache directory to start from (default: an "
                        "empty one, so the first build is cold); the builds change what it holds")
    parser.add_argument("--skip", action="append", choices=sorted(CHANGES), default=[],
                        help="leave out a kind of change (repeatable)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="imagegen-bench-", dir="build" if Path("build").is_dir() else None) as tmp:
        work = Path(tmp)
        profile = work / args.profile.name
        shutil.copy(args.profile, profile)
        for extra in ("tests", "secrets", "kiosk"):  # what a profile names, relative to it
            if (args.profile.parent / extra).is_dir():
                shutil.copytree(args.profile.parent / extra, work / extra)
        state = args.profile.with_name(args.profile.stem + ".state.toml")
        if state.exists():
            shutil.copy(state, work / state.name)
        cache = args.cache.resolve() if args.cache else work / "cache"

        rows.append(("first build", *timed_build(profile, work / "first", cache, args.lab)))
        for name, change in CHANGES.items():
            if name in args.skip:
                continue
            change(profile)
            rows.append((f"{name} change", *timed_build(profile, work / name, cache, args.lab)))

    variant = "lab" if args.lab else "plain"
    print(f"profile {args.profile} ({variant} image), mkosi cache {args.cache or 'empty at the start'}")
    for what, seconds, reused, reason in rows:
        print(f"{what:16} {seconds:6.1f} s  cache reused: {reused!s:5}  {reason}")


if __name__ == "__main__":
    main()
