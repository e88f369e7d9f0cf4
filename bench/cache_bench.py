"""Substituting from a binary cache against building: the laptop's lab image and its verdict, side by side.

In one run, each in a fresh store: a cold build (empty mkosi cache), a warm build (mkosi's cache from
the cold one), a verdict (one scenario in the VM), a push of it all to nginx on 127.0.0.1, then a
substitution of the image from that cache (mkosi forbidden: --substitute-only) and `imagegen test`
answered by the cached verdict. Prints the wall times of the whole processes, the substitution as a
share of the warm build, the compression ratio and the push and substitution throughput.
Needs nginx (apt-get install nginx) and the heavy-work lock: it builds an image twice and boots it.

    flock /work/heavy.lock python bench/cache_bench.py [examples/laptop.toml] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cache_fixtures import serve_nginx  # noqa: E402

from imagegen.cache.entryinfo import SUFFIX, EntryInfo  # noqa: E402
from imagegen.cache.signing import SecretKey  # noqa: E402
from imagegen.run import run  # noqa: E402

SCENARIO = "boot-wired-primary"


def imagegen(*args: str, env: dict[str, str] | None = None, cwd: Path) -> float:
    start = time.perf_counter()
    proc = run([sys.executable, "-c", "from imagegen.cli import app; app()", *args], check=False, cwd=cwd, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: a verdict with failed scenarios is still a verdict
        raise SystemExit(f"imagegen {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=Path, default=REPO / "examples/laptop.toml")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagegen-cache-bench-") as tmp_name:
        tmp = Path(tmp_name)
        profile = tmp / args.profile.name
        shutil.copy(args.profile, profile)
        key = SecretKey.generate("bench-1")
        (tmp / "bench.secret").write_text(key.to_text())
        (tmp / "bench.secret").chmod(0o600)
        cache_dir = str(tmp / "mkosi-cache")
        figures: dict[str, object] = {"profile": str(args.profile)}

        def store(name: str) -> list[str]:
            return ["--store", str(tmp / name)]

        lab = ["build", str(profile), "--lab", "--cache-dir", cache_dir]
        figures["cold_build_s"] = round(imagegen(*lab, *store("a"), "--out-link", "result-a", cwd=tmp), 1)
        figures["warm_build_s"] = round(imagegen(*lab, *store("warm"), "--out-link", "result-warm", cwd=tmp), 1)
        figures["test_s"] = round(imagegen("test", str(profile), *store("a"), "--scenario", SCENARIO, cwd=tmp), 1)

        with serve_nginx(tmp / "nginx") as nginx:
            push = ["push", str(profile), *store("a"), "--to", nginx.url, "--key", str(tmp / "bench.secret"),
                    "--include-secrets"]
            figures["push_s"] = round(imagegen(*push, cwd=tmp), 1)
            infos = [EntryInfo.parse(p.read_text()) for p in nginx.root.glob(f"*{SUFFIX}")]
            image = next(i for i in infos if i.store_path.endswith("-lab-image"))
            env = {"IMAGEGEN_TRUSTED_KEYS": str(key.public())}
            fetch = ["build", str(profile), "--lab", "--substituter", nginx.url, "--substitute-only",
                     "--out-link", "result-b"]
            substituted = imagegen(*fetch, *store("b"), env=env, cwd=tmp)
            verdict = imagegen("test", str(profile), *store("c"), "--scenario", SCENARIO, "--substituter",
                               nginx.url, "--substitute-only", env=env, cwd=tmp)
        mib = 1 << 20
        figures.update({
            "substitute_s": round(substituted, 2),
            "substitute_share_of_warm_build": round(substituted / float(figures["warm_build_s"]), 3),  # type: ignore[arg-type]
            "verdict_hit_s": round(verdict, 2),
            "image_tar_mib": round(image.size / mib, 1),
            "image_archive_mib": round(image.file_size / mib, 1),
            "compression_ratio": round(image.size / image.file_size, 2),
            "substitute_mib_per_s": round(image.size / mib / substituted, 1),
            "push_mib_per_s": round(sum(i.size for i in infos) / mib / float(figures["push_s"]), 1),  # type: ignore[arg-type]
        })
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name.ljust(width)}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
