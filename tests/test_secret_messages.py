"""A message about a bad secret names the file, the key and the fix, never the secret itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.cli import app

runner = CliRunner()

BASE = """
[image]
hostname = "laptop"
{image}

[interfaces.wlp2s0]
type = "wireless"

[[wireless.networks]]
ssid = "Home"
{network}
"""


def check(tmp_path: Path, *, image: str = "", network: str = "") -> str:
    path = tmp_path / "laptop.toml"
    path.write_text(BASE.format(image=image, network=network))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    return result.output


EAP = 'key_mgmt = "WPA-EAP"\n[wireless.networks.eap]\nmethod = "PEAP"\nidentity = "alice"\n'


@pytest.mark.parametrize(("network", "key"), [
    (EAP + f"password = {json.dumps('Tr0ub4dor' + chr(7))}", "eap.password"),
    (EAP + f"password = \"pw\"\nprivate_key_password = {json.dumps('Tr0ub4dor' + chr(10))}",
     "eap.private_key_password"),
])
def test_a_secret_with_a_control_character_is_refused_without_printing_it(
    tmp_path: Path, network: str, key: str
) -> None:
    out = check(tmp_path, network=network)
    assert f"wireless.networks[0].{key}: " in out
    assert "Tr0ub4dor" not in out


@pytest.mark.parametrize(("image", "network", "key", "secret"), [
    ("", "passphrase = 80085123456", "wireless.networks[0].passphrase", "80085123456"),
    ("", 'psk = { value = "Tr0ub4dor" }', "wireless.networks[0].psk", "Tr0ub4dor"),
    ("", EAP + "password = 80085123456", "wireless.networks[0].eap.password", "80085123456"),
    ("root_password_hash = 80085123456", 'passphrase = "longenough"', "image.root_password_hash", "80085123456"),
])
def test_a_secret_of_the_wrong_type_is_refused_without_printing_it(
    tmp_path: Path, image: str, network: str, key: str, secret: str
) -> None:
    out = check(tmp_path, image=image, network=network)
    assert f"{key}: " in out and "string" in out
    assert secret not in out
