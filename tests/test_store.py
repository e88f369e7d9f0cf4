"""The store's hashes and realise(): same inputs, same entry; each input counts; nothing else does."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.errors import ImagegenError, UsageError
from imagegen.store import Derivation, Entry, FileTree, Store, resolve_store_root, tree_digest
from imagegen.store.hashing import BASE32_ALPHABET, nix_base32

REPO = Path(__file__).resolve().parents[1]


def make_overlay(root: Path) -> Path:
    """A small overlay like the renderer's: units, a hard link, an enablement symlink, a secret."""
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "slave@.service").write_text("[Unit]\nDescription=slave %i\n")
    os.link(units / "slave@.service", units / "enp3s0@.service")
    wants = units / "multi-user.target.wants"
    wants.mkdir()
    (wants / "master@bond0.service").symlink_to("/etc/systemd/system/master@.service")
    (units / "master@.service").write_text("[Unit]\nDescription=master %i\n")
    conf = root / "etc/conf.d"
    conf.mkdir(parents=True)
    (conf / "network.conf").write_text("bond0_address=192.168.0.2/24\nbond0_gateway=192.168.0.1\n")
    key = root / "etc/wide-dhcpv6/dhcp6cctlkey"
    key.parent.mkdir(parents=True)
    key.write_text("c2VjcmV0\n")
    key.chmod(0o600)
    hook = root / "usr/lib/imagegen/hook"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    return root


def drv_for(tree: Path, **extra: object) -> Derivation:
    inputs = {"profile": {"hostname": "laptop", "addresses": ["192.168.0.2/24"]}, "overlay": FileTree(tree)}
    inputs.update(extra)
    return Derivation("laptop-overlay", "render", inputs)


# -- digests -------------------------------------------------------------------------------------


def test_nix_base32_matches_nix() -> None:
    # How Nix prints sha256 of the empty string (e.g. a fetchurl hash of an empty file).
    empty = hashlib.sha256(b"").digest()
    assert nix_base32(empty) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
    # Little-endian: the first byte holds the last digit.
    assert nix_base32(b"\x01" + bytes(19)) == "0" * 31 + "1"
    assert len(nix_base32(bytes(20))) == 32


def test_path_name_is_32_base32_characters_and_the_name(tmp_path: Path) -> None:
    drv = drv_for(make_overlay(tmp_path / "o"))
    digest, _, name = drv.path_name.partition("-")
    assert len(digest) == 32 and set(digest) <= set(BASE32_ALPHABET)
    assert name == "laptop-overlay"


def test_same_inputs_same_hash_in_another_process(tmp_path: Path) -> None:
    tree = make_overlay(tmp_path / "overlay")
    here = drv_for(tree, templates={"b": 2, "a": [1, 2.5, None, True]}).hash
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; from pathlib import Path; from imagegen.store import Derivation, FileTree;"
        "tree = Path(sys.argv[1]);"
        "print(Derivation('laptop-overlay', 'render', {"
        "'templates': {'a': [1, 2.5, None, True], 'b': 2},"
        "'overlay': FileTree(tree),"
        "'profile': {'addresses': ['192.168.0.2/24'], 'hostname': 'laptop'}}).hash)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tree)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == here


def test_tree_location_mtime_owner_and_write_bits_do_not_count(tmp_path: Path) -> None:
    a = make_overlay(tmp_path / "a")
    b = make_overlay(tmp_path / "deeper" / "b")
    for path in b.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_000_000, 1_000_000))
    # A checkout under umask 002: group-writable, same content.
    (b / "etc/conf.d/network.conf").chmod(0o664)
    if os.geteuid() == 0:
        os.chown(b / "etc/conf.d/network.conf", 1234, 1234)
    assert tree_digest(a) == tree_digest(b)
    assert drv_for(a).hash == drv_for(b).hash


def test_hash_ignores_working_directory_and_dict_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_overlay(tmp_path / "o")
    first = Derivation("x", "render", {"a": 1, "b": {"c": 2, "d": 3}, "t": FileTree(tree)})
    monkeypatch.chdir(tmp_path)
    second = Derivation("x", "render", {"t": FileTree(tree), "b": {"d": 3, "c": 2}, "a": 1})
    assert first.hash == second.hash
    assert first == second


@pytest.mark.parametrize(
    "change",
    [
        "content",
        "exec-bit",
        "secret-mode",
        "symlink-target",
        "hard-link",
        "rename",
        "new-file",
        "new-empty-dir",
    ],
)
def test_each_tree_property_changes_the_hash(tmp_path: Path, change: str) -> None:
    tree = make_overlay(tmp_path / "o")
    before = tree_digest(tree)
    units = tree / "etc/systemd/system"
    if change == "content":
        (tree / "etc/conf.d/network.conf").write_text("bond0_address=192.168.0.3/24\nbond0_gateway=192.168.0.1\n")
    elif change == "exec-bit":
        (tree / "etc/conf.d/network.conf").chmod(0o755)
    elif change == "secret-mode":
        (tree / "etc/wide-dhcpv6/dhcp6cctlkey").chmod(0o644)
    elif change == "symlink-target":
        link = units / "multi-user.target.wants/master@bond0.service"
        link.unlink()
        link.symlink_to("/etc/systemd/system/slave@.service")
    elif change == "hard-link":
        # Same content, but a copy instead of a second name of the same file.
        (units / "enp3s0@.service").unlink()
        (units / "enp3s0@.service").write_text("[Unit]\nDescription=slave %i\n")
    elif change == "rename":
        (tree / "etc/conf.d/network.conf").rename(tree / "etc/conf.d/net.conf")
    elif change == "new-file":
        (tree / "etc/motd").write_text("")
    elif change == "new-empty-dir":
        (tree / "etc/empty").mkdir()
    assert tree_digest(tree) != before


def test_each_declared_input_changes_the_hash(tmp_path: Path) -> None:
    tree = make_overlay(tmp_path / "o")
    base = Derivation(
        "laptop-image", "build", {"version": "0.1.0", "lab": False, "release": "trixie", "t": FileTree(tree)}
    )
    variants = [
        Derivation("laptop-image2", "build", base.inputs),
        Derivation("laptop-image", "test", base.inputs),
        Derivation("laptop-image", "build", {**base.inputs, "version": "0.1.1"}),
        Derivation("laptop-image", "build", {**base.inputs, "lab": True}),
        Derivation("laptop-image", "build", {**base.inputs, "release": "bookworm"}),
        Derivation("laptop-image", "build", {**base.inputs, "extra": None}),
        Derivation("laptop-image", "build", {**base.inputs, "lab": 0}),
    ]
    hashes = {base.hash} | {v.hash for v in variants}
    assert len(hashes) == len(variants) + 1


def test_absolute_paths_and_odd_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"inputs.tree is a path"):
        Derivation("x", "render", {"tree": tmp_path})
    with pytest.raises(UsageError, match=r"inputs.when: a datetime cannot be hashed"):
        import datetime

        Derivation("x", "render", {"when": datetime.datetime.now()})
    with pytest.raises(UsageError, match="starts with"):
        Derivation("x", "render", {"$tree": "fake"})
    with pytest.raises(UsageError, match="cannot be hashed"):
        Derivation("x", "render", {"n": float("nan")})
    with pytest.raises(UsageError, match="not allowed"):
        Derivation("../evil", "render", {})
    with pytest.raises(UsageError, match="does not exist"):
        Derivation("x", "render", {"t": FileTree(tmp_path / "missing")})


def test_file_tree_exclude(tmp_path: Path) -> None:
    tree = make_overlay(tmp_path / "o")
    before = tree_digest(tree, exclude=("*/__pycache__",))
    (tree / "etc/__pycache__").mkdir()
    (tree / "etc/__pycache__/x.pyc").write_bytes(b"\0")
    assert tree_digest(tree, exclude=("*/__pycache__",)) == before
    assert tree_digest(tree) != before


# -- store root ----------------------------------------------------------------------------------


def test_resolve_store_root(tmp_path: Path) -> None:
    assert resolve_store_root(tmp_path / "s", {"IMAGEGEN_STORE": "/elsewhere"}) == tmp_path / "s"
    assert resolve_store_root(None, {"IMAGEGEN_STORE": "/var/x", "HOME": "/h"}) == Path("/var/x")
    assert resolve_store_root(None, {"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/imagegen/store")
    # XDG says relative XDG_CACHE_HOME values are invalid and ignored.
    assert resolve_store_root(None, {"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/imagegen/store")
    assert resolve_store_root(None, {"HOME": "/h", "IMAGEGEN_STORE": ""}) == Path("/h/.cache/imagegen/store")
    assert resolve_store_root("rel", {}).is_absolute()


# -- realise -------------------------------------------------------------------------------------


def copy_builder(source: Path, calls: list[Path]):
    def build(out: Path) -> dict[str, object]:
        calls.append(out)
        (out / "etc").mkdir()
        (out / "etc/network.conf").write_text(source.read_text())
        secret = out / "etc/dhcp6cctlkey"
        secret.write_text("key\n")
        secret.chmod(0o600)
        tool = out / "run"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        return {"files": 3}

    return build


def test_realise_builds_once_then_reuses(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    source = tmp_path / "network.conf"
    source.write_text("address=192.168.0.2/24\n")
    drv = Derivation("laptop-overlay", "render", {"network": FileTree(source)})
    calls: list[Path] = []
    first = store.realise(drv, copy_builder(source, calls))
    second = store.realise(drv, copy_builder(source, calls))
    assert (first.reused, second.reused) == (False, True)
    assert first == second and first.path == store.root / drv.path_name
    assert len(calls) == 1
    # The builder wrote into a temporary directory of the same store (so the rename is atomic).
    assert calls[0].parent == store.root and calls[0].name.startswith(".tmp-")
    assert (first.path / "etc/network.conf").read_text() == "address=192.168.0.2/24\n"
    meta = first.metadata()
    assert meta["derivation"] == json.loads(drv.to_json())
    assert meta["report"] == {"files": 3} and first.report == {"files": 3}
    assert meta["references"] == [] and meta["size"] > 0 and "created" in meta
    assert store.lookup(drv) == first
    assert [e.path_name for e in store.entries()] == [drv.path_name]
    assert store.get(drv.path_name) == first and store.get(str(first.path)) == first


def test_entry_is_read_only_and_secrets_stay_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    source = tmp_path / "network.conf"
    source.write_text("a\n")
    entry = store.realise(Derivation("o", "render", {"n": FileTree(source)}), copy_builder(source, []))

    def mode(rel: str) -> int:
        return stat.S_IMODE((entry.path / rel).lstat().st_mode)

    # Private (the default): only the owner enters the entry; the modes inside are the tree's content.
    assert mode("") == 0o500 and mode("etc") == 0o555
    assert mode("etc/network.conf") == 0o444
    assert mode("etc/dhcp6cctlkey") == 0o400
    assert mode("run") == 0o500  # a file directly in a private entry: owner only
    assert stat.S_IMODE(entry.meta_path.stat().st_mode) == 0o444
    # Copying out restores owner-write, keeping the rest.
    out = tmp_path / "copy"
    store.copy_out(entry, out)
    assert stat.S_IMODE((out / "etc/network.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "etc/dhcp6cctlkey").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "run").stat().st_mode) == 0o700
    assert tree_digest(out) == tree_digest(entry.path)


def test_copy_out_keeps_hard_links_and_symlinks(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    overlay = make_overlay(tmp_path / "overlay")

    def build(out: Path) -> None:
        out.rmdir()
        subprocess.run(["cp", "-a", str(overlay), str(out)], check=True)

    entry = store.realise(Derivation("o", "render", {"t": FileTree(overlay)}), build)
    assert tree_digest(entry.path) == tree_digest(overlay)
    out = tmp_path / "copy"
    store.copy_out(entry, out)
    assert tree_digest(out) == tree_digest(overlay)
    units = out / "etc/systemd/system"
    assert (units / "slave@.service").stat().st_ino == (units / "enp3s0@.service").stat().st_ino


def test_failed_builder_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    drv = Derivation("o", "render", {"v": 1})

    def broken(out: Path) -> None:
        (out / "half").write_text("written before the failure")
        (out / "sub").mkdir()
        (out / "sub").chmod(0o555)
        raise RuntimeError("template error")

    with pytest.raises(RuntimeError, match="template error"):
        store.realise(drv, broken)
    assert store.lookup(drv) is None
    assert sorted(p.name for p in store.root.iterdir()) == [".imagegen-store", ".key", f"{drv.path_name}.lock"]

    def bad_report(out: Path) -> dict[str, object]:
        return {"when": object()}

    with pytest.raises(UsageError, match="report.when"):
        store.realise(drv, bad_report)
    assert store.lookup(drv) is None and not store.path_of(drv).exists()


def test_builder_removing_its_directory_is_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(ImagegenError, match="removed its output directory"):
        store.realise(Derivation("o", "render", {}), lambda out: out.rmdir())


def test_references_are_recorded_and_must_exist(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    overlay = store.realise(Derivation("laptop-overlay", "render", {"v": 1}), lambda out: None)
    image_drv = Derivation("laptop-image", "build", {"overlay": overlay, "lab": False})
    image = store.realise(image_drv, lambda out: None)
    assert image.references == (overlay.path_name,)
    assert image.metadata()["derivation"]["inputs"]["overlay"] == {"$entry": overlay.path_name}
    foreign = Entry(tmp_path / "other" / ("0" * 32 + "-laptop-overlay"))
    with pytest.raises(UsageError, match="not in the store"):
        store.realise(Derivation("laptop-image", "build", {"overlay": foreign}), lambda out: None)


def test_force_replaces_entry_and_keeps_old_one_on_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    drv = Derivation("laptop-verdict", "test", {"scenarios": ["boot"]})
    runs = iter(["first", "second"])

    def verdict(out: Path) -> dict[str, str]:
        run = next(runs)
        (out / "verdict.json").write_text(run)
        return {"run": run}

    first = store.realise(drv, verdict)
    again = store.realise(drv, verdict, force=True)
    assert again.path == first.path and not again.reused
    assert (again.path / "verdict.json").read_text() == "second" and again.report == {"run": "second"}

    def broken(out: Path) -> None:
        raise RuntimeError("VM did not boot")

    with pytest.raises(RuntimeError):
        store.realise(drv, broken, force=True)
    assert store.lookup(drv) is not None and (first.path / "verdict.json").read_text() == "second"
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]


def test_incomplete_entry_is_rebuilt(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    drv = Derivation("o", "render", {"v": 1})
    # What a build killed between renaming the output and writing the metadata leaves.
    leftover = store.path_of(drv)
    leftover.mkdir(parents=True)
    (leftover / "partial").write_text("x")
    leftover.chmod(0o555)
    assert store.lookup(drv) is None and store.entries() == []
    entry = store.realise(drv, lambda out: (out / "full").write_text("y") and None)
    assert not entry.reused and sorted(p.name for p in entry.path.iterdir()) == ["full"]


def test_store_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        Store(tmp_path / "file")
    with pytest.raises(UsageError, match="not an entry"):
        Store(tmp_path / "s").get(tmp_path)
