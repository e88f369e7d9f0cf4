"""imagegen build through the store with the real mkosi (slow: a build or two on mkosi's cache)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.cli import app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(os.geteuid() != 0, reason="mkosi image builds need root"),
]

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_unchanged_build_is_a_no_op_and_an_address_change_rebuilds_on_the_warm_cache(
    tmp_path: Path, tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is on a tmpfs, mkosi's cache in the checkout: outputs cross file systems (Debian 13's /tmp)."""
    # A root password hash, which mkosi must get from a private config file, not its command line.
    root_hash = "$6$imagegenstoretst$" + "A1b2C3d4E5f6G7h8I9j0." * 4 + "xy"
    (tmp_path / "laptop.toml").write_text((REPO / "examples/laptop.toml").read_text().replace(
        'release = "trixie"\n', f'release = "trixie"\nroot_password_hash = "{root_hash}"\n', 1))
    (tmp_path / "moved.toml").write_text((tmp_path / "laptop.toml").read_text()
                                         .replace('"192.168.0.2/24"', '"192.168.0.3/24"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMAGEGEN_STORE", str(tmpfs / "store"))

    first = runner.invoke(app, ["build", "laptop.toml", "--json"])
    assert first.exit_code == 0, first.output[-3000:]
    built = json.loads(first.stdout)
    assert not built["reused"] and Path(built["image"]).stat().st_size > 0
    entry = Path(built["store_path"])
    assert entry.stat().st_mode & 0o777 == 0o500 and Path(built["image"]).stat().st_mode & 0o777 == 0o400
    log = entry / "build.log"
    assert log.stat().st_mode & 0o777 == 0o400 and "--include=" in log.read_text()
    assert root_hash not in log.read_text() and root_hash not in first.output
    assert not list(entry.rglob("root-password.conf"))

    again = runner.invoke(app, ["build", "laptop.toml"])
    assert again.exit_code == 0, again.output
    report = re.match(r"reused (\S+) \(unchanged inputs; ([0-9.]+) s\)", again.output)
    assert report, again.output
    assert report[1] == built["store_path"] and float(report[2]) < 1.0

    moved = runner.invoke(app, ["build", "moved.toml", "--json"])
    assert moved.exit_code == 0, moved.output[-3000:]
    rebuilt = json.loads(moved.stdout)
    assert rebuilt["store_path"] != built["store_path"] and not rebuilt["reused"]
    assert rebuilt["manifest"]["cache_reused"], rebuilt["manifest"]["cache_reason"]
    assert "192.168.0.3/24" in (Path(rebuilt["overlay_path"]) / "etc/conf.d/network.conf").read_text()
    assert [p["name"] for p in rebuilt["manifest"]["packages"]] == [p["name"] for p in built["manifest"]["packages"]]

    diff = runner.invoke(app, ["diff", "laptop@1", "laptop@2"])
    assert diff.exit_code == 0, diff.output
    assert "+bond0ADDRS='192.168.0.3/24'" in diff.output
    assert "identical" in diff.output.split("== packages")[1].split("== verdict")[0]
