"""The store is private and safe to collect while in use: modes, its key, temporary roots, lock links."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.store import Derivation, Entry, Store
from imagegen.store.lock import is_locked
from imagegen.store.private import KEY, MARKER

REPO = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def image_builder(out: Path) -> None:
    (out / "image.raw").write_bytes(b"PSK and dhcp6c key inside")
    (out / "build.log").write_text("# mkosi 25.3: --include=/tmp/x/root-password.conf build\n")
    (out / "config").mkdir()
    (out / "config/sources.list").write_text("deb http://mirror/debian trixie main\n")


def realise(store: Store, name: str, **inputs: object) -> Entry:
    return store.realise(Derivation(name, "build", {"n": name, **inputs}), image_builder)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


# -- privacy ---------------------------------------------------------------------------------------


def test_a_new_store_root_is_0700_with_its_marker_and_a_0600_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache" / "imagegen" / "store")
    realise(store, "laptop-image")
    assert mode(store.root) == 0o700
    assert (store.root / MARKER).is_file()
    key = store.root / KEY
    assert mode(key) == 0o600 and len(key.read_bytes()) == 32


def test_entries_holding_secrets_are_private(tmp_path: Path) -> None:
    entry = realise(Store(tmp_path / "store"), "laptop-image")
    assert mode(entry.path) == 0o500
    assert mode(entry.path / "image.raw") == 0o400 and mode(entry.path / "build.log") == 0o400
    # Nobody but the owner can reach what lies deeper.
    assert not mode(entry.path) & 0o077


def test_an_entry_declared_without_secrets_stays_readable(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = store.realise(Derivation("laptop-verdict", "test", {}), image_builder, private=False)
    assert mode(entry.path) == 0o555 and mode(entry.path / "image.raw") == 0o444


def test_a_directory_the_user_made_keeps_its_mode(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o755)
    (mine / "notes.txt").write_text("not the store's")
    entry = realise(Store(mine), "laptop-image")
    assert mode(mine) == 0o755 and not (mine / MARKER).exists()
    assert mode(entry.path) == 0o500  # the entries are private all the same


def test_a_store_an_older_imagegen_made_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "store"
    old = Store(root)
    entry = realise(old, "laptop-image")
    (root / MARKER).unlink()
    (root / KEY).unlink()
    root.chmod(0o755)
    assert (root / f"{entry.path_name}.json").is_file()
    realise(Store(root), "laptop-image", v=2)
    assert mode(root) == 0o700 and (root / MARKER).is_file()


def test_a_store_key_that_others_can_read_or_that_is_a_link_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.ensure_root()
    key = store.root / KEY
    key.chmod(0o644)
    with pytest.raises(UsageError, match="mode 0600"):
        store.keyed_digest("x")
    key.unlink()
    (tmp_path / "elsewhere").write_bytes(b"k" * 32)
    key.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="symbolic link"):
        store.keyed_digest("x")


def test_keyed_digests_differ_per_store_and_are_stable(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    assert a.keyed_digest("SuperSecret") == Store(a.root).keyed_digest("SuperSecret")
    assert a.keyed_digest("SuperSecret") != b.keyed_digest("SuperSecret")
    assert a.keyed_digest("SuperSecret").startswith("hmac-sha256:")


# -- collecting while in use -----------------------------------------------------------------------

# Realises an entry in the store at argv[1], says "ready", and uses it until stdin closes.
USER = """
import sys
from pathlib import Path
from imagegen.store import Derivation, Store

def build(out):
    (out / "image.raw").write_bytes(b"x")

store = Store(Path(sys.argv[1]))
entry = store.realise(Derivation(sys.argv[2], "build", {"n": sys.argv[2]}), build)
print("ready", flush=True)
sys.stdin.read()
print((entry.path / "image.raw").read_bytes().decode())
"""

GC = """
import json, sys
from pathlib import Path
from imagegen.store import Store

result = Store(Path(sys.argv[1])).gc(keep=0, dry_run=sys.argv[2] == "dry")
print(json.dumps({"removed": result.removed, "kept": result.kept}))
"""


def gc_elsewhere(root: Path, dry: bool = False) -> tuple[list[str], list[str]]:
    import json

    proc = run_python(GC, str(root), "dry" if dry else "real")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    data = json.loads(out)
    return data["removed"], data["kept"]


def test_gc_leaves_an_entry_another_process_uses(tmp_path: Path) -> None:
    root = tmp_path / "store"
    user = run_python(USER, str(root), "laptop-lab-image")
    assert user.stdout is not None and user.stdout.readline().strip() == "ready"
    name = Store(root).entries()[0].path_name
    assert gc_elsewhere(root, dry=True) == ([], [name])
    assert gc_elsewhere(root) == ([], [name])
    out, _ = user.communicate("", timeout=30)
    assert user.returncode == 0 and out.strip() == "x"
    # Once the user is gone, nothing holds it.
    assert gc_elsewhere(root) == ([name], [])


def test_gc_during_a_build_keeps_the_input_the_build_uses(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    overlay = store.realise(Derivation("laptop-overlay", "render", {"v": 1}),
                            lambda out: (out / "etc").mkdir() and None)
    seen: list[tuple[list[str], list[str]]] = []

    def build(out: Path) -> None:
        seen.append(gc_elsewhere(store.root))  # a `imagegen gc` run in the middle of the build
        (out / "image.raw").write_bytes((overlay.path / "etc").is_dir().__repr__().encode())

    drv = Derivation("laptop-image", "build", {"overlay": overlay})
    image = store.realise(drv, build)
    assert seen == [([], sorted([overlay.path_name, drv.path_name]))]
    assert (image.path / "image.raw").read_bytes() == b"True"
    assert store.is_complete(overlay.path_name) and image.references == (overlay.path_name,)


def test_gc_never_follows_a_lock_file_link(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    name = realise(store, "laptop-image").path_name
    store.drop_hold(name)
    outside = tmp_path / "outside"
    outside.mkdir()
    lock = store.root / f"{name}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside / "made-by-gc")
    assert gc_elsewhere(store.root, dry=True) == ([], [name])
    assert gc_elsewhere(store.root) == ([], [name])
    assert list(outside.iterdir()) == [] and lock.is_symlink()


def test_realise_refuses_a_lock_file_link(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.ensure_root()
    drv = Derivation("kiosk-image", "build", {"n": "kiosk"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / f"{drv.path_name}.lock").symlink_to(outside / "made-by-realise")
    with pytest.raises(UsageError, match="symbolic link"):
        store.realise(drv, image_builder)
    assert list(outside.iterdir()) == []


def test_a_directory_holding_only_a_profiles_folder_is_not_taken_for_an_old_store(tmp_path: Path) -> None:
    mine = tmp_path / "work"
    (mine / "profiles").mkdir(parents=True)
    mine.chmod(0o755)
    realise(Store(mine), "laptop-image")
    assert mode(mine) == 0o755 and not (mine / MARKER).exists()


def _returns_within(seconds: float, fifo: Path, call: Callable[[], object]) -> BaseException | object:
    """call()'s result or exception; a call still blocked (in open() of the FIFO) after `seconds` fails."""
    out: list[BaseException | object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        worker.join(seconds)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return out[0]


def test_a_fifo_planted_as_the_store_key_is_refused_without_blocking(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.ensure_root()
    key = store.root / KEY
    key.unlink()
    os.mkfifo(key, 0o600)
    found = _returns_within(10, key, lambda: store.keyed_digest("x"))
    assert isinstance(found, UsageError) and "mode 0600" in str(found)


def test_a_fifo_planted_as_a_lock_counts_as_in_use_or_free_without_blocking(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    os.mkfifo(lock, 0o600)
    assert _returns_within(10, lock, lambda: is_locked(lock)) in (True, False)


@pytest.mark.skipif(os.getuid() != 0, reason="giving the key to another user needs root")
def test_a_store_key_of_another_user_says_the_store_is_not_yours(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.ensure_root()
    os.chown(store.root / KEY, 65534, 65534)
    with pytest.raises(UsageError, match="belongs to another user") as e:
        store.keyed_digest("x")
    assert "--store" in e.value.hint


def test_gc_never_removes_files_through_a_planted_gcroots_link(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    realise(store, "laptop-image")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (store.root / "gcroots").symlink_to(mine)
    with pytest.raises(UsageError, match="symbolic link"):
        store.gc(keep=0)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_gc_leaves_what_is_no_root_in_gcroots_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "laptop-image")
    store.add_out_link(tmp_path / "result", entry)
    (store.root / "gcroots" / "notes.txt").write_text("not a root")
    store.gc(keep=0)
    assert (store.root / "gcroots" / "notes.txt").is_file() and entry.path.is_dir()


def test_generations_are_never_written_through_a_planted_profiles_link(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = realise(store, "laptop-image")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.root / "profiles").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symbolic link"):
        store.record_generation("laptop", entry, "hmac-sha256:00")
    assert list(elsewhere.iterdir()) == []
