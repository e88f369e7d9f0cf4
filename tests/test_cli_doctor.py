"""Which kernel `imagegen doctor` proves KVM with, when none is named (the probe itself boots QEMU:
the vm tests run it)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from imagegen.cli.image import kernel_to_probe
from imagegen.store import Derivation, Store


def image_entry(store: Store, name: str, kernel: bytes) -> Path:
    def build(out: Path) -> None:
        for file in ("image.raw", "image.initrd"):
            (out / file).write_bytes(b"")
        (out / "image.vmlinuz").write_bytes(kernel)

    return store.realise(Derivation(name, "build", {"n": name}), build).path


def test_the_newest_image_in_the_store_gives_its_kernel(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    image_entry(store, "old-image", b"old")
    time.sleep(1.1)  # entries record their creation to the second
    newest = image_entry(store, "new-image", b"new")
    store.realise(Derivation("new-overlay", "render", {}), lambda out: None)  # no kernel: not an image
    found = kernel_to_probe(store, here=tmp_path, boot=tmp_path / "no-boot")
    assert found is not None and found.path == newest / "image.vmlinuz" and found.held is not None
    assert str(store.root) in found.source


def test_a_result_link_here_comes_before_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = image_entry(store, "laptop-image", b"k")
    (tmp_path / "result-laptop").symlink_to(entry)
    image_entry(store, "newer-image", b"n")
    found = kernel_to_probe(store, here=tmp_path, boot=tmp_path / "no-boot")
    assert found is not None and found.path == tmp_path / "result-laptop" / "image.vmlinuz"


def test_without_images_the_hosts_own_kernel(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    for name, mtime in (("vmlinuz-6.1.0-old", 1_000), ("vmlinuz-6.12.0-new", 2_000)):
        (boot / name).write_bytes(b"k")
        os.utime(boot / name, (mtime, mtime))
    (boot / "vmlinuz-dir").mkdir()
    found = kernel_to_probe(Store(tmp_path / "empty"), here=tmp_path, boot=boot)
    assert found is not None and found.path == boot / "vmlinuz-6.12.0-new" and found.source == "this host's kernel"


def test_no_kernel_anywhere_is_none(tmp_path: Path) -> None:
    assert kernel_to_probe(Store(tmp_path / "empty"), here=tmp_path, boot=tmp_path / "no-boot") is None


def test_doctor_probes_with_the_stores_newest_image_and_says_so(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from imagegen.cli import app
    from imagegen.vm import accel

    store = Store(tmp_path / "store")
    entry = image_entry(store, "laptop-image", b"kernel")
    probed: list[Path] = []

    def probe(kernel: Path, timeout: float = 0.0) -> tuple[bool, str]:
        probed.append(kernel)  # the probe itself boots QEMU: the vm tests run it
        return False, "not probed in the fast tests"

    monkeypatch.setattr(accel, "probe_kvm", probe)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", "--store", str(store.root)], env={"COLUMNS": "1000"})
    assert probed == [entry / "image.vmlinuz"], result.output
    assert "no kernel to probe with" not in result.output
    assert f"KVM was probed with {entry / 'image.vmlinuz'} (the newest image in {store.root})" in result.output


def test_every_check_that_fails_names_a_command_that_fixes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen.host import doctor

    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)  # no tool found at all
    failed = [c for c in doctor.host_checks(None) if not c.ok]
    assert {"python", "qemu-system-x86_64", "qemu-img", "apt-get", "dpkg", "losetup", "KVM"} <= {c.name for c in failed}
    for check in failed:
        assert re.search(r"`[^`]+`", check.fix), check
