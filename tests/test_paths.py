"""`imagegen render --out DIR` replaces only a tree imagegen wrote, atomically, and writes nothing for a
profile with an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import UsageError
from imagegen.profile import HostState, load_profiles
from imagegen.render import render_overlay
from imagegen.safeoutput import MARKER, clean_stale, exchange, read_marker, replace_tree

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
runner = CliRunner()


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    return tmp_path / "laptop.toml"


def render(laptop: Path, out: Path | str, cwd: Path | None = None) -> object:
    old = Path.cwd()
    os.chdir(cwd or laptop.parent)
    try:
        return runner.invoke(app, ["render", str(laptop), "--out", str(out)])
    finally:
        os.chdir(old)


def snapshot(root: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# --- What may be replaced -------------------------------------------------------------------------

def test_render_into_the_working_directory_is_refused_and_deletes_nothing(laptop: Path) -> None:
    assert render(laptop, "build/overlay").exit_code == 0  # the state file now exists beside the profile
    before = snapshot(laptop.parent)
    result = render(laptop, ".")
    assert result.exit_code == 2, result.output
    assert "is a directory with files that imagegen did not write" in result.stderr
    assert "choose an empty or new directory, or remove" in result.stderr
    assert snapshot(laptop.parent) == before


def test_render_over_a_directory_of_the_users_files_is_refused(laptop: Path) -> None:
    mine = laptop.parent / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    result = render(laptop, mine)
    assert result.exit_code == 2
    assert (mine / "thesis.tex").read_text() == "years of work\n"
    assert not (laptop.parent / "laptop.state.toml").exists()  # refused before anything was written


def test_render_over_a_regular_file_is_refused(laptop: Path) -> None:
    target = laptop.parent / "notes.txt"
    target.write_text("keep me\n")
    result = render(laptop, target)
    assert result.exit_code == 2 and "is a file, not a directory" in result.stderr
    assert target.read_text() == "keep me\n"


def test_render_over_a_symlink_to_elsewhere_is_refused(laptop: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("x")
    link = laptop.parent / "out"
    link.symlink_to(elsewhere)
    result = render(laptop, link)
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    assert link.is_symlink() and (elsewhere / "data").read_text() == "x"


def test_render_over_an_empty_directory_or_its_own_tree_works(laptop: Path) -> None:
    out = laptop.parent / "out"
    out.mkdir()
    assert render(laptop, out).exit_code == 0
    assert (out / "etc/conf.d/network.conf").is_file()
    marker = read_marker(out)
    assert marker is not None and marker["kind"] == "overlay"
    json.loads((out / MARKER).read_text())  # a small JSON document saying what wrote the tree
    laptop.write_text(laptop.read_text().replace("192.168.0.2/24", "192.168.0.3/24"))
    assert render(laptop, out).exit_code == 0
    assert "192.168.0.3/24" in (out / "etc/conf.d/network.conf").read_text()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")] == []


def test_a_marker_that_is_a_symlink_does_not_make_a_tree_ours(laptop: Path, tmp_path: Path) -> None:
    mine = laptop.parent / "mine"
    mine.mkdir()
    (mine / "keep").write_text("x")
    real = tmp_path / "real-marker"
    real.write_text('{"written_by": "imagegen", "kind": "overlay"}')
    (mine / MARKER).symlink_to(real)
    assert render(laptop, mine).exit_code == 2
    assert (mine / "keep").exists()


def test_the_store_overlay_carries_no_marker(laptop: Path, tmp_path: Path) -> None:
    """The marker belongs to the tree on disk, not to the overlay: the store's overlay (what mkosi gets,
    and what its hash covers) is written without it."""
    from imagegen.stages.realise import realise_overlay
    from imagegen.store import Store

    store = Store(tmp_path / "store")
    entry = realise_overlay(store, load_profiles([laptop]))
    assert not (entry.path / MARKER).exists()
    out = tmp_path / "out"
    render_overlay(load_profiles([laptop]), out)
    ours = {p.relative_to(out) for p in out.rglob("*")} - {Path(MARKER)}
    assert ours == {p.relative_to(entry.path) for p in entry.path.rglob("*")}


# --- Atomic exchange and stale temporaries --------------------------------------------------------

def test_exchange_swaps_two_trees(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a/one").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b/two").write_text("b")
    assert exchange(tmp_path / "a", tmp_path / "b"), "this file system should support RENAME_EXCHANGE"
    assert (tmp_path / "a/two").read_text() == "b" and (tmp_path / "b/one").read_text() == "a"


WATCHER = """
import os, sys
path, stop = sys.argv[1], sys.argv[2]
print("watching", flush=True)
missing = 0
while not os.path.exists(stop):
    if not os.path.exists(path):
        missing += 1
print(missing)
"""


def test_the_tree_is_never_missing_while_it_is_replaced(laptop: Path) -> None:
    out = laptop.parent / "out"
    loaded = load_profiles([laptop])
    render_overlay(loaded, out, state=STATE)
    stop = laptop.parent / "stop"
    # Another process, so that it looks while the renames run (a thread would wait for the GIL).
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(out / "etc/conf.d/network.conf"), str(stop)],
                               stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None and watcher.stdout.readline() == "watching\n"
    try:
        for _ in range(60):
            render_overlay(loaded, out, state=STATE)
    finally:
        stop.touch()
    assert watcher.communicate(timeout=30)[0].strip() == "0"


def test_without_rename_exchange_the_old_tree_is_renamed_aside_then_replaced(
        laptop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without RENAME_EXCHANGE (exchange() says so by returning False): two renames."""
    from imagegen import safeoutput

    monkeypatch.setattr(safeoutput, "exchange", lambda a, b: False)
    out = laptop.parent / "out"
    render_overlay(load_profiles([laptop]), out, state=STATE)
    laptop.write_text(laptop.read_text().replace("192.168.0.2/24", "192.168.0.3/24"))
    render_overlay(load_profiles([laptop]), out, state=STATE)
    assert "192.168.0.3/24" in (out / "etc/conf.d/network.conf").read_text()
    assert sorted(p.name for p in laptop.parent.iterdir()) == ["laptop.toml", "out"]


def test_a_killed_render_leaves_a_temporary_the_next_render_removes(laptop: Path, tmp_path: Path) -> None:
    out = laptop.parent / "out"
    render_overlay(load_profiles([laptop]), out, state=STATE)
    # A render killed half-way: the process is gone, its temporary (marked) is still there.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead = int(child.stdout)
    stale = laptop.parent / f".out.new-{dead}-0123abcd"
    stale.mkdir()
    (stale / MARKER).write_text(json.dumps({"written_by": "imagegen", "kind": "overlay"}))
    (stale / "etc").mkdir()
    # One of another process that is still alive, and a directory of the user's with a matching name.
    alive = laptop.parent / f".out.new-{os.getppid()}-0123abcd"
    alive.mkdir()
    (alive / MARKER).write_text(json.dumps({"written_by": "imagegen", "kind": "overlay"}))
    users = laptop.parent / f".out.old-{dead}-feedbeef"
    users.mkdir()
    (users / "mine").write_text("x")
    render_overlay(load_profiles([laptop]), out, state=STATE)
    assert not stale.exists()
    assert alive.exists() and (users / "mine").exists()


def test_replace_tree_cleans_up_after_a_failing_fill(tmp_path: Path) -> None:
    def fill(root: Path) -> None:
        (root / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        replace_tree(tmp_path / "out", fill, kind="overlay", option="--out")
    assert list(tmp_path.iterdir()) == []
    assert clean_stale(tmp_path / "out") == []


# --- Nothing is written for a profile with an error -----------------------------------------------

def test_a_render_error_creates_no_state_file(laptop: Path) -> None:
    laptop.write_text(laptop.read_text().replace('passphrase = "SuperSecret"', 'psk_file = "missing.txt"'))
    result = render(laptop, laptop.parent / "out")
    assert result.exit_code == 2 and "psk_file: cannot read" in result.stderr
    assert not (laptop.parent / "laptop.state.toml").exists()
    assert not (laptop.parent / "out").exists()


def test_a_build_with_a_render_error_creates_no_state_file(laptop: Path, tmp_path: Path) -> None:
    from imagegen.stages.realise import realise_overlay
    from imagegen.store import Store

    laptop.write_text(laptop.read_text().replace('passphrase = "SuperSecret"', 'psk_file = "missing.txt"'))
    with pytest.raises(UsageError, match="psk_file: cannot read"):
        realise_overlay(Store(tmp_path / "store"), load_profiles([laptop]))
    assert not (laptop.parent / "laptop.state.toml").exists()


def test_a_good_render_creates_the_state_file_once(laptop: Path) -> None:
    assert render(laptop, laptop.parent / "out").exit_code == 0
    state = laptop.parent / "laptop.state.toml"
    first = state.read_bytes()
    assert render(laptop, laptop.parent / "out").exit_code == 0
    assert state.read_bytes() == first
