"""Out-links, generations and gc: linked entries survive, unlinked ones go, bytes are counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.store import Derivation, Entry, Store


def realise(store: Store, name: str, size: int = 0, **inputs: object) -> Entry:
    def build(out: Path) -> None:
        (out / "data").write_bytes(os.urandom(size))

    return store.realise(Derivation(name, "build", {"n": name, **inputs}), build)


def test_out_link_points_at_entry_and_is_a_gc_root(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "laptop-image")
    link = store.add_out_link(tmp_path / "result-laptop", entry)
    assert link.is_symlink() and Path(os.readlink(link)) == entry.path
    assert store.get(link) == entry
    roots = list((store.root / "gcroots").iterdir())
    assert len(roots) == 1 and Path(os.readlink(roots[0])) == link
    # Re-pointing the same link keeps one root.
    newer = realise(store, "laptop-image", extra=1)
    store.add_out_link(tmp_path / "result-laptop", newer)
    assert len(list((store.root / "gcroots").iterdir())) == 1
    assert store.get(link) == newer


def test_out_link_never_replaces_a_real_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "x")
    (tmp_path / "result").mkdir()
    with pytest.raises(UsageError, match="is not a symbolic link"):
        store.add_out_link(tmp_path / "result", entry)
    assert (tmp_path / "result").is_dir()


def test_out_link_never_replaces_a_link_to_something_else(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "laptop-image")
    (tmp_path / "dotfiles").mkdir()
    (tmp_path / "config").symlink_to(tmp_path / "dotfiles")
    with pytest.raises(UsageError, match="not to a store entry"):
        store.add_out_link(tmp_path / "config", entry)
    assert os.readlink(tmp_path / "config") == str(tmp_path / "dotfiles")
    # A link to an entry, even one collected since, is an older out-link: it is replaced.
    (tmp_path / "result").symlink_to(store.root / ("0" * 32 + "-laptop-image"))
    assert os.path.realpath(store.add_out_link(tmp_path / "result", entry)) == str(entry.path)


def test_gc_keeps_linked_and_removes_unlinked_entries(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    linked = realise(store, "linked", size=64 * 1024)
    unlinked = realise(store, "unlinked", size=256 * 1024)
    store.add_out_link(tmp_path / "result-laptop", linked)
    dry = store.gc(keep=0, dry_run=True)
    assert dry.removed == (unlinked.path_name,) and unlinked.path.exists()
    result = store.gc(keep=0)
    assert result.removed == (unlinked.path_name,)
    assert result.bytes_freed >= 256 * 1024 and result.bytes_freed == dry.bytes_freed
    assert result.kept == (linked.path_name,)
    assert not unlinked.path.exists() and not unlinked.meta_path.exists()
    assert not (store.root / f"{unlinked.path_name}.lock").exists()
    assert linked.path.is_dir() and store.lookup(Derivation("linked", "build", {"n": "linked"})) == linked
    # Removing the out-link releases the entry; its dangling root is dropped too.
    (tmp_path / "result-laptop").unlink()
    again = store.gc(keep=0)
    assert again.removed == (linked.path_name,) and len(again.stale_roots) == 1
    assert store.entries() == [] and list((store.root / "gcroots").iterdir()) == []


def test_gc_keeps_what_linked_entries_were_built_from(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    overlay = realise(store, "laptop-overlay")
    image = realise(store, "laptop-image", overlay=overlay)
    verdict = realise(store, "laptop-verdict", image=image)
    store.add_out_link(tmp_path / "result-laptop", verdict)
    realise(store, "stray")
    result = store.gc(keep=0)
    assert [name.split("-", 1)[1] for name in result.removed] == ["stray"]
    assert {e.name for e in store.entries()} == {"laptop-overlay", "laptop-image", "laptop-verdict"}


def test_gc_keeps_a_linked_entry_even_with_a_moved_link_target(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "x")
    link = store.add_out_link(tmp_path / "result", entry)
    # Someone re-points the out-link by hand at another entry: that one is live now.
    other = realise(store, "y")
    link.unlink()
    link.symlink_to(other.path)
    result = store.gc(keep=0)
    assert result.removed == (entry.path_name,) and result.kept == (other.path_name,)


def test_gc_removes_stale_temporaries_and_skips_locked_entries(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "x")
    stale = store.root / f".tmp-0123abcd-{entry.path_name}"
    stale.mkdir()
    (stale / "junk").write_bytes(b"\0" * 8192)
    from imagegen.store.lock import EntryLock

    with EntryLock(store.root / f"{entry.path_name}.lock"):
        busy = store.gc(keep=0)
        assert busy.removed == () and busy.kept == (entry.path_name,) and stale.exists()
    result = store.gc(keep=0)
    assert set(result.removed) == {stale.name, entry.path_name} and not stale.exists()
    assert result.bytes_freed >= 8192


def test_generations_history_and_keep(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = realise(store, "laptop-image", v=1)
    second = realise(store, "laptop-image", v=2)
    third = realise(store, "laptop-image", v=3)
    g1 = store.record_generation("laptop", first, "p1")
    assert store.record_generation("laptop", first, "p1") == g1  # unchanged build: no new generation
    g2 = store.record_generation("laptop", second, "p2")
    verdict = realise(store, "laptop-verdict", image=second)
    store.set_verdict("laptop", g2.number, {"passed": True, "scenarios": {"boot": {"passed": True}}}, verdict)
    g3 = store.record_generation("laptop", third, "p3")
    history = store.history("laptop")
    assert [g.number for g in history] == [1, 2, 3] and (g1.number, g3.number) == (1, 3)
    assert [g.store_path for g in history] == [first.path_name, second.path_name, third.path_name]
    assert history[1].verdict == {"passed": True, "scenarios": {"boot": {"passed": True}}}
    assert history[1].verdict_path == verdict.path_name and history[0].verdict is None
    assert history[0].profile_hash == "p1" and history[0].time.endswith("+00:00")
    assert store.hosts() == ["laptop"] and store.history("kiosk") == []

    result = store.gc(keep=2)
    assert result.removed == (first.path_name,)
    assert {e.path_name for e in store.entries()} == {second.path_name, third.path_name, verdict.path_name}
    # The record stays; its entry is gone.
    assert (
        len(store.history("laptop")) == 3
        and store.lookup(Derivation("laptop-image", "build", {"n": "laptop-image", "v": 1})) is None
    )
    store.gc(keep=1)
    assert {e.path_name for e in store.entries()} == {third.path_name}


def test_generation_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "x")
    with pytest.raises(UsageError, match="host name"):
        store.record_generation("../etc", entry, "p")
    with pytest.raises(UsageError, match="no generations"):
        store.set_verdict("laptop", 1, {"passed": True})
    store.record_generation("laptop", entry, "p")
    with pytest.raises(UsageError, match="no generation 7"):
        store.set_verdict("laptop", 7, {"passed": True})
    with pytest.raises(UsageError, match="negative"):
        store.gc(keep=-1)
