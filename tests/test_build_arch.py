"""Arch images: mkosi accepts the configuration; without a reachable Arch mirror the error is one line."""

import subprocess
import sys
from pathlib import Path

import pytest
from build_fixtures import make_overlay
from rich.console import Console

from imagegen.errors import ImagegenError, UsageError
from imagegen.image.config import BuildRequest
from imagegen.image.mkosi import build_image, summary

needs_mkosi = pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "mkosi", "--version"], capture_output=True).returncode != 0,
    reason="mkosi is not importable (run `imagegen setup`)",
)


def arch_request(tmp_path: Path, mirror: str | None, lab: bool = False) -> BuildRequest:
    return BuildRequest(overlay=make_overlay(tmp_path / "overlay"), out_dir=tmp_path / "out",
                        distribution="arch", mirror=mirror, lab=lab, cache_root=tmp_path / "cache")


@needs_mkosi
@pytest.mark.parametrize("lab", [False, True])
def test_mkosi_summary_accepts_the_arch_configuration(tmp_path: Path, lab: bool) -> None:
    text = summary(arch_request(tmp_path, "http://arch.invalid/archlinux", lab=lab))
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in text.splitlines()
             if ":" in line}
    assert lines["Distribution"] == "arch"
    assert lines["Mirror"] == "http://arch.invalid/archlinux"
    assert lines["Output Format"] == "disk"
    assert lines["Tools Tree Distribution"] == "debian"
    # Multi-line values continue on lines without a key; the package list starts with the kernel.
    assert "dhclient" in text and "wpa_supplicant" in text and "wide-dhcpv6" not in text
    assert ("qemu-guest-agent" in text) == lab
    # Only the lab, which boots under QEMU alone, trims its initrd and is never on its first boot.
    assert (lines["Machine ID"] == "b0bf4c70-5615-525d-a05d-83cd2e424a8d") == lab
    assert (lines["Kernel Modules Initrd Exclude"] == ".*") == lab
    assert "initrd.finalize.chroot" not in text


@needs_mkosi
@pytest.mark.parametrize("lab", [False, True])
def test_mkosi_summary_accepts_the_debian_configuration(tmp_path: Path, lab: bool) -> None:
    request = BuildRequest(overlay=make_overlay(tmp_path / "overlay"), out_dir=tmp_path / "out",
                           cache_root=tmp_path / "cache", lab=lab)
    text = summary(request)
    assert "wide-dhcpv6-client" in text and "linux-image-amd64" in text and "login" in text.split()
    assert ("qemu-guest-agent" in text) == lab
    # Only a Debian lab image builds its own initrd for the direct kernel boot.
    assert ("50-lab-debian-initrd.finalize.chroot" in text) == lab
    assert ("initramfs-tools" in text.split()) == lab


def test_arch_without_mirror_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        build_image(arch_request(tmp_path, None), console=Console(quiet=True))
    assert "image.mirror" in e.value.message and "\n" not in e.value.message
    assert not (tmp_path / "out").exists()


def test_unreachable_arch_mirror_is_one_clear_line(tmp_path: Path) -> None:
    # Port 9 (discard) on the loopback refuses at once: no network needed to see the failure.
    with pytest.raises(ImagegenError) as e:
        build_image(arch_request(tmp_path, "http://127.0.0.1:9/archlinux"), console=Console(quiet=True))
    assert e.value.message.startswith("Arch mirror http://127.0.0.1:9/archlinux is unreachable")
    assert "\n" not in e.value.message
    assert not (tmp_path / "out").exists()
