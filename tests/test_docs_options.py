"""`imagegen options [KEY]`: the option reference of one option or section, as docs/profile.md has it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.profile import model, system
from imagegen.profile.reference import reference

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def options(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["options", *args])
    return result.exit_code, result.output


def test_one_option_by_the_name_a_profile_gives_it() -> None:
    code, out = options("bonds.bond0.miimon")
    assert code == 0
    assert out.startswith("### `bonds.NAME.miimon`\n") and "- Default: `100`" in out
    assert out.count("### ") == 1
    assert out in (REPO / "docs/profile.md").read_text()


def test_a_section_with_everything_in_it() -> None:
    code, out = options("users")
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("#")]
    assert headings[0] == "## `[users.NAME]`"
    assert all("users.NAME" in h for h in headings)
    assert {f"### `users.NAME.{name}`" for name in system.User.model_fields} <= set(headings)


@pytest.mark.parametrize(("key", "heading"), [
    ('files."/etc/ssh/sshd_config.d/10-key-only.conf".mode', "### `files.NAME.mode`"),
    ("[[wireless.networks]]", "## `[[wireless.networks]]`"),
    ("wireless.networks.eap.phase2", "### `wireless.networks.eap.phase2`"),
    ("interfaces.enp3s0.routes.via", "### `interfaces.NAME.routes.via`"),
])
def test_keys_as_toml_writes_them(key: str, heading: str) -> None:
    code, out = options(key)
    assert code == 0 and out.splitlines()[0] == heading


def test_without_a_key_every_option() -> None:
    code, out = options()
    assert code == 0 and out == reference()


def test_an_unknown_option_is_one_line_with_the_fix() -> None:
    code, out = options("bonds.bond0.mimon")
    assert code == 2
    assert out.splitlines() == [
        "error: bonds.bond0.mimon: no such profile option",
        "hint: did you mean bonds.NAME.miimon? `imagegen options` lists every option",
    ]


NETWORK_MODELS = [model.Route, model.Addressing, model.Interface, model.Bond, model.Bridge, model.Dhcp4,
                  model.PrefixDelegation, model.Dhcp6, model.Eap, model.Network, model.Wireless, model.Image,
                  model.Profile]


@pytest.mark.parametrize("section", NETWORK_MODELS, ids=lambda m: m.__name__)
def test_every_network_option_is_described_with_an_example(section: type) -> None:
    for name, info in section.model_fields.items():
        assert info.description and info.examples, f"{section.__name__}.{name}"
    assert "(not described yet)" not in reference()
