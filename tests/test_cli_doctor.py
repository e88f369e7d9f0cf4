"""Which kernel `imagegen doctor` proves KVM with, when none is named (the probe itself boots QEMU:
the vm tests run it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
