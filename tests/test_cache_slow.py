"""Two runners, one cache, a real image: store A builds the laptop's lab image with mkosi and tests it in
a VM, pushes everything to nginx; store B then gets the image and the verdict from the cache with mkosi
and QEMU made unrunnable (slow and vm: one cold mkosi build and one boot)."""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cache_fixtures import Nginx, nginx, no_user_cache_config
from example_copy import copy_laptop
from typer.testing import CliRunner

from imagegen.cache.signing import SecretKey
from imagegen.cli import app
from imagegen.stages import realise
from imagegen.store.hashing import tree_digest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.timeout(3600)]
runner = CliRunner()


def test_second_runner_gets_image_and_verdict_from_the_cache(tmp_path: Path, nginx: Nginx,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    copy_laptop(tmp_path)
    a, b = tmp_path / "store-a", tmp_path / "store-b"
    key = SecretKey.generate("ci.test-1")
    (tmp_path / "ci.secret").write_text(key.to_text())
    (tmp_path / "ci.secret").chmod(0o600)

    tested = runner.invoke(app, ["test", "laptop.toml", "--store", str(a), "--scenario", "boot-wired-primary",
                                 "--json"])
    assert tested.exit_code in (0, 1), tested.output
    verdict_a = json.loads(tested.stdout)
    pushed = runner.invoke(app, ["push", "laptop.toml", "--store", str(a), "--to", nginx.url,
                                 "--key", "ci.secret", "--include-secrets"])
    assert pushed.exit_code == 0, pushed.output

    def no_mkosi(*args: object, **kwargs: object) -> None:
        raise AssertionError("mkosi ran on the second store")

    def no_vm(*args: object, **kwargs: object) -> None:
        raise AssertionError("a VM booted on the second store")

    monkeypatch.setattr(realise, "build_image", no_mkosi)
    monkeypatch.setattr("imagegen.scenarios.runner.LabRun", no_vm)
    monkeypatch.setenv("IMAGEGEN_TRUSTED_KEYS", str(key.public()))

    again = runner.invoke(app, ["test", "laptop.toml", "--store", str(b), "--scenario", "boot-wired-primary",
                                "--substituter", nginx.url, "--substitute-only", "--json"])
    assert again.exit_code == (0 if verdict_a["passed"] else 1), again.output
    verdict_b = json.loads(again.stdout)
    assert verdict_b["reused"] and verdict_b["verdict"] == verdict_a["verdict"], "the stored verdict came back"
    assert not Path(verdict_b["image_path"]).exists(), "the verdict hit fetched no image"

    built = runner.invoke(app, ["build", "laptop.toml", "--lab", "--store", str(b), "--substituter", nginx.url,
                                "--substitute-only", "--out-link", "result-b"])
    assert built.exit_code == 0, built.output
    assert "substituted" in built.stdout
    image_a = Path(verdict_a["image_path"])
    assert (tmp_path / "result-b").resolve().name == image_a.name
    assert tree_digest((tmp_path / "result-b").resolve()) == tree_digest(image_a), "the same image, verified"
