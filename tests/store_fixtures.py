"""A stand-in for mkosi and a working directory with two laptop profiles, for the store's CLI tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from example_copy import copy_laptop

from imagegen.image.config import BuildRequest
from imagegen.image.manifest import MANIFEST_NAME, BuildManifest, Package
from imagegen.image.mkosi import KERNEL_COMMAND_LINE, OUTPUTS, BuildResult
from imagegen.stages import realise, systems

REPO = Path(__file__).resolve().parents[1]


class FakeMkosi:
    """Writes what mkosi and imagegen's driver leave; each refresh moves one package's version."""

    version = "25.3"

    def __init__(self) -> None:
        self.builds = 0
        self.refreshes = 0

    def __call__(self, request: BuildRequest, console: object = None, *, into: Path | None = None,
                 refresh: bool = False) -> BuildResult:
        assert into is not None and not any(into.iterdir())
        assert os.access(request.overlay / "etc/conf.d/network.conf", os.W_OK), "mkosi needs a writable copy"
        self.builds += 1
        self.refreshes += refresh
        for name in OUTPUTS.values():
            (into / name).write_bytes(b"image bytes of " + name.encode())
        (into / "build.log").write_text("log\n")
        manifest = BuildManifest(
            distribution=request.distribution, release=request.resolved_release, variant=request.variant,
            mkosi_version=self.version, profile_hash=request.profile_hash, overlay_hash="x", config_hash="y",
            cache_reused=True, cache_reason="test", duration_seconds=1.0,
            outputs={k: str(request.out_dir / n) for k, n in OUTPUTS.items()},
            kernel_command_line=KERNEL_COMMAND_LINE,
            packages=[Package("bash", "5.2.37-1", "amd64"), Package("iw", f"6.9-{1 + self.refreshes}", "amd64")],
        )
        (into / MANIFEST_NAME).write_text(manifest.to_json())
        return BuildResult(out_dir=request.out_dir, manifest=manifest)


@pytest.fixture
def fake_mkosi(monkeypatch: pytest.MonkeyPatch) -> FakeMkosi:
    fake = FakeMkosi()
    monkeypatch.setattr(realise, "build_image", fake)
    # The version goes into the image's derivation; with no mkosi on the machine there is none to read.
    monkeypatch.setattr(realise, "mkosi_version", lambda: fake.version)
    monkeypatch.setattr(systems, "mkosi_version", lambda: fake.version)
    return fake


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy_laptop(tmp_path)
    (tmp_path / "moved.toml").write_text((tmp_path / "laptop.toml").read_text()
                                         .replace('"192.168.0.2/24"', '"192.168.0.3/24"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMAGEGEN_STORE", str(tmp_path / "store"))
    return tmp_path
