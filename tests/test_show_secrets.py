"""`imagegen show` masks secrets as `imagegen diff` does, unless --show-secrets is given."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imagegen.cli import app

runner = CliRunner()

PROFILE = """
[image]
hostname = "laptop"
root_password_hash = "$y$j9T$saltsaltsalt$hashhashhashhashhashhashhashhashhashhashhas"

[interfaces.wlp2s0]
type = "wireless"

[[wireless.networks]]
ssid = "Home"
passphrase = "SuperSecret"

[[wireless.networks]]
ssid = "Work"
key_mgmt = "WPA-EAP"
[wireless.networks.eap]
method = "PEAP"
identity = "alice"
password = "EapPassw0rd"

[users.bob]
uid = 1001
password_hash = "$y$j9T$bobsaltbobsalt$bobhashbobhashbobhashbobhashbobhashbobhash"
"""
SECRETS = ("SuperSecret", "EapPassw0rd", "hashhashhash", "bobhash")


def write(tmp_path: Path) -> Path:
    path = tmp_path / "laptop.toml"
    path.write_text(PROFILE)
    return path


def test_show_masks_every_secret(tmp_path: Path) -> None:
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["show", *extra, str(write(tmp_path))])
        assert result.exit_code == 0, result.output
        assert not [s for s in SECRETS if s in result.stdout], extra
        assert "<secret>" in result.stdout and "alice" in result.stdout and "Home" in result.stdout


def test_show_json_keeps_the_shape_with_secrets_masked(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", "--json", str(write(tmp_path))])
    data = json.loads(result.stdout)
    assert data["wireless"]["networks"][0]["passphrase"] == "<secret>"
    assert data["wireless"]["networks"][0]["psk"] is None  # unset stays unset
    assert data["wireless"]["networks"][1]["eap"]["password"] == "<secret>"
    assert data["image"]["root_password_hash"] == "<secret>"


def test_show_secrets_prints_them(tmp_path: Path) -> None:
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["show", "--show-secrets", *extra, str(write(tmp_path))])
        assert result.exit_code == 0, result.output
        assert all(s in result.stdout for s in SECRETS), extra
