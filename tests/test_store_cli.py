"""The store from the command line: build no-ops, out-links, generations, history, gc, diff, --json.

mkosi is replaced here by a builder that writes the four files a build leaves (the real build is
tests/test_store_build.py, slow); everything around it (derivations, store, links, generations) is real.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import json
import os
from pathlib import Path

from store_fixtures import FakeMkosi, fake_mkosi, work
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.image.manifest import MANIFEST_NAME
from imagegen.store import Store

runner = CliRunner()


def invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {"output": result.output}


def test_second_build_is_a_no_op_that_names_the_entry(work: Path, fake_mkosi: FakeMkosi) -> None:
    first = invoke("build", "laptop.toml", "--json")
    assert not first["reused"] and fake_mkosi.builds == 1
    assert Path(first["store_path"]).parent == work / "store"
    assert os.readlink(work / "result-laptop") == first["store_path"]
    assert first["manifest"]["packages"][0]["name"] == "bash"
    result = runner.invoke(app, ["build", "laptop.toml"])
    assert result.exit_code == 0 and fake_mkosi.builds == 1
    assert result.output.startswith(f"reused {first['store_path']} (unchanged inputs;")


def test_out_link_name_and_cwd_do_not_change_the_entry(work: Path, fake_mkosi: FakeMkosi) -> None:
    first = invoke("build", "laptop.toml", "--json")
    (work / "sub").mkdir()
    os.chdir(work / "sub")
    second = invoke("build", "../laptop.toml", "--out-link", "other", "--json")
    third = invoke("build", "../laptop.toml", "--out", str(work / "legacy-dir"), "--json")
    assert first["store_path"] == second["store_path"] == third["store_path"] and second["reused"]
    assert os.readlink(work / "sub" / "other") == first["store_path"]
    assert (work / "legacy-dir" / "image.raw").read_bytes() == b"image bytes of image.raw"
    assert fake_mkosi.builds == 1


def test_out_replaces_a_build_directory_from_before_the_store(work: Path, fake_mkosi: FakeMkosi) -> None:
    old = work / "build" / "laptop"
    old.mkdir(parents=True)
    (old / "image.raw").write_text("old")
    (old / MANIFEST_NAME).write_text("{}")
    invoke("build", "laptop.toml", "--out", str(old))
    assert old.is_symlink() and (old / "image.raw").read_bytes() == b"image bytes of image.raw"
    other = work / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["build", "laptop.toml", "--out", str(other)])
    assert result.exit_code == 2 and "precious" in result.output
    assert (other / "notes.txt").read_text() == "mine"


def test_out_link_never_replaces_a_link_of_the_users_and_builds_nothing(work: Path, fake_mkosi: FakeMkosi) -> None:
    (work / "dotfiles").mkdir()
    (work / "config").symlink_to(work / "dotfiles")
    result = runner.invoke(app, ["build", "laptop.toml", "--out-link", str(work / "config")])
    assert result.exit_code == 2 and "is a symbolic link to" in result.output and "not into the store" in result.output
    assert os.readlink(work / "config") == str(work / "dotfiles") and fake_mkosi.builds == 0


def test_address_change_rebuilds_and_adds_a_generation(work: Path, fake_mkosi: FakeMkosi) -> None:
    a = invoke("build", "laptop.toml", "--json")
    b = invoke("build", "moved.toml", "--json")
    assert a["store_path"] != b["store_path"] and a["overlay_path"] != b["overlay_path"]
    assert fake_mkosi.builds == 2
    assert (a["generation"], b["generation"]) == (1, 2)
    history = invoke("history", "laptop", "--json")
    assert [g["store_path"] for g in history] == [a["store_path"], b["store_path"]]
    assert history[0]["profile_hash"] == a["profile_hash"] != b["profile_hash"]
    table = invoke("history", "laptop")["output"]
    assert "laptop@1" in table and "laptop@2" in table


def test_refresh_rebuilds_and_says_whether_the_packages_moved(work: Path, fake_mkosi: FakeMkosi) -> None:
    first = invoke("build", "laptop.toml", "--json")
    refreshed = invoke("build", "laptop.toml", "--refresh", "--json")
    assert fake_mkosi.refreshes == 1 and refreshed["store_path"] == first["store_path"]
    assert refreshed["refresh"]["packages_changed"]
    assert "iw: 6.9-1 -> 6.9-2" in refreshed["refresh"]["diff"]
    text = runner.invoke(app, ["build", "laptop.toml", "--refresh"]).output
    assert "refresh: the package set differs" in text


def test_diff_of_two_profiles_is_one_line_of_network_conf(work: Path) -> None:
    text = invoke("diff", "laptop.toml", "moved.toml")["output"]
    overlay = text.split("== packages")[0]
    changed = [line for line in overlay.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-bond0ADDRS='192.168.0.2/24'", "+bond0ADDRS='192.168.0.3/24'"]
    assert "--- a/etc/conf.d/network.conf" in overlay
    assert "not compared" in text.split("== packages")[1]


def test_diff_masks_secrets(work: Path) -> None:
    (work / "other-key.toml").write_text((work / "laptop.toml").read_text()
                                         .replace("SuperSecret", "AnotherSecret"))
    text = invoke("diff", "laptop.toml", "other-key.toml")["output"]
    assert "psk=<secret changed>" in text
    assert "SuperSecret" not in text and "AnotherSecret" not in text


def test_diff_of_generations_shows_packages_and_verdicts(work: Path, fake_mkosi: FakeMkosi) -> None:
    invoke("build", "laptop.toml")
    invoke("build", "moved.toml", "--refresh")
    store = Store(work / "store")
    for number, passed, probes in ((1, True, 120), (2, False, 80)):
        generation = store.history("laptop")[number - 1]
        verdict = {"passed": passed, "scenarios": {"failover": {"passed": passed,
                                                                "figures": {"failover_probes_sent": probes}}}}
        store.set_verdict("laptop", generation.number, verdict)
    text = invoke("diff", "laptop@1", "laptop@2")["output"]
    assert "+bond0ADDRS='192.168.0.3/24'" in text
    assert "iw: 6.9-1 -> 6.9-2" in text
    assert "failover: passed -> failed" in text and "failover_probes_sent: 120 -> 80 (-40)" in text
    assert "FAILED: failover" in invoke("history", "laptop")["output"]


def test_diff_of_store_paths_and_links(work: Path, fake_mkosi: FakeMkosi) -> None:
    a = invoke("build", "laptop.toml", "--json")
    invoke("build", "moved.toml", "--out-link", "moved-link")
    text = invoke("diff", a["store_path"], "moved-link")["output"]
    assert "+bond0ADDRS='192.168.0.3/24'" in text and "== packages" in text
    assert "identical" in text.split("== packages")[1].split("== verdict")[0]


def test_unknown_generation_exits_2_with_one_line(work: Path) -> None:
    result = runner.invoke(app, ["diff", "laptop@7", "laptop.toml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: diff: laptop@7: host laptop has no generation 7"


def test_gc_keeps_linked_entries_and_says_what_it_freed(work: Path, fake_mkosi: FakeMkosi) -> None:
    a = invoke("build", "laptop.toml", "--json")
    b = invoke("build", "moved.toml", "--out-link", "moved-link", "--json")
    (work / "result-laptop").unlink()
    text = invoke("gc", "--keep", "0")["output"]
    assert "removed 2 entries" in text and "freed" in text  # laptop's image and its overlay
    assert not Path(a["store_path"]).exists() and not Path(a["overlay_path"]).exists()
    assert Path(b["store_path"]).is_dir() and Path(b["overlay_path"]).is_dir()
    assert "laptop@1" in invoke("history", "laptop")["output"]
    assert "(collected)" in invoke("history", "laptop")["output"]


def test_gc_keeps_recent_generations_without_links(work: Path, fake_mkosi: FakeMkosi) -> None:
    a = invoke("build", "laptop.toml", "--json")
    b = invoke("build", "moved.toml", "--json")
    (work / "result-laptop").unlink()
    invoke("gc", "--keep", "1")
    assert not Path(a["store_path"]).exists() and Path(b["store_path"]).exists()


def test_help_of_the_store_commands() -> None:
    for command in ("history", "gc", "diff"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--store" in result.stdout
    assert "--out-link" in runner.invoke(app, ["build", "--help"]).stdout
    assert "--rerun" in runner.invoke(app, ["test", "--help"]).stdout
