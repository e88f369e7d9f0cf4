"""The store under real concurrent and killed processes: one entry per derivation, no half entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imagegen.store import Derivation, Store

REPO = Path(__file__).resolve().parents[1]

# A separate Python process realising one derivation. argv: store, log, seconds the builder
# takes, marker file created once the builder is running. Prints {"reused", "path", "waited"}.
CHILD = """
import json, os, sys, time
from pathlib import Path
from imagegen.store import Derivation, Store

store, log = Store(Path(sys.argv[1])), Path(sys.argv[2])
seconds, marker = float(sys.argv[3]), Path(sys.argv[4])
waited = []

def build(out):
    with log.open("a") as f:
        f.write(f"built by {os.getpid()}\\n")
    (out / "image.raw").write_bytes(b"\\0" * 4096)
    marker.touch()
    time.sleep(seconds)
    (out / "manifest.json").write_text("{}")
    return {"pid": os.getpid()}

drv = Derivation("laptop-image", "build", {"overlay": "x", "lab": False})
entry = store.realise(drv, build, on_wait=lambda: waited.append(True))
print(json.dumps({"reused": entry.reused, "path": str(entry.path), "waited": bool(waited)}))
"""

DRV = Derivation("laptop-image", "build", {"overlay": "x", "lab": False})


def spawn(store: Path, log: Path, seconds: float, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(log), str(seconds), str(marker)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_concurrent_realise_builds_one_entry(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    first = spawn(store, log, 1.0, tmp_path / "running")
    # Start the others only once the first is inside its builder, holding the lock.
    wait_for(tmp_path / "running")
    others = [spawn(store, log, 1.0, tmp_path / f"running{i}") for i in range(2)]
    results = []
    for proc in [first, *others]:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert log.read_text().count("built by") == 1
    assert [r["reused"] for r in results] == [False, True, True]
    assert [r["waited"] for r in results] == [False, True, True]
    assert len({r["path"] for r in results}) == 1
    entries = Store(store).entries()
    assert [e.path_name for e in entries] == [DRV.path_name]
    assert sorted(p.name for p in (store / DRV.path_name).iterdir()) == ["image.raw", "manifest.json"]
    assert not [p for p in store.iterdir() if p.name.startswith(".tmp-")]


def test_sigkill_mid_build_leaves_nothing_complete(tmp_path: Path) -> None:
    store_dir, log, marker = tmp_path / "store", tmp_path / "log", tmp_path / "running"
    child = spawn(store_dir, log, 60, marker)
    wait_for(marker)
    store = Store(store_dir)
    # While the child builds, its work directory exists and is not an entry.
    work = [p for p in store_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(work) == 1 and (work[0] / "image.raw").exists()
    # Another derivation's realise must not touch a live build's work directory.
    store.realise(Derivation("other", "render", {}), lambda out: None)
    assert work[0].exists()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert store.lookup(DRV) is None
    assert not store.path_of(DRV).exists()
    assert [e.name for e in store.entries()] == ["other"]
    # The stale work directory is cleaned by the next realise (here of another derivation),
    # since the dead builder's lock is free.
    store.realise(Derivation("third", "render", {}), lambda out: None)
    assert not work[0].exists()
    # And the derivation builds normally afterwards.
    entry = store.realise(DRV, lambda out: (out / "image.raw").write_bytes(b"ok") and None)
    assert not entry.reused and (entry.path / "image.raw").read_bytes() == b"ok"


def test_sigkill_then_realise_of_same_derivation(tmp_path: Path) -> None:
    store_dir, marker = tmp_path / "store", tmp_path / "running"
    child = spawn(store_dir, tmp_path / "log", 60, marker)
    wait_for(marker)
    child.kill()
    child.wait(timeout=10)
    store = Store(store_dir)
    assert store.lookup(DRV) is None
    entry = store.realise(DRV, lambda out: None)
    assert not entry.reused
    assert sorted(p.name for p in store_dir.iterdir()) == sorted(
        [".imagegen-store", ".key", DRV.path_name, f"{DRV.path_name}.json", f"{DRV.path_name}.lock"]
    )
