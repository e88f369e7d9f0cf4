"""The command line's options: one meaning per name across every command, old spellings refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.cli.options import Scenario
from imagegen.scenarios.catalog import BY_NAME

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    return tmp_path / "laptop.toml"


def commands(group: Any = None, path: str = "imagegen") -> Iterator[tuple[str, Any]]:
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def options(command: Any) -> Iterator[Any]:
    return (p for p in command.params if getattr(p, "opts", None) and p.opts[0].startswith("-")
            and not getattr(p, "hidden", False))


def test_every_json_option_is_a_flag_that_prints_on_stdout() -> None:
    found = {path for path, command in commands() for p in options(command) if "--json" in p.opts}
    assert {"imagegen build", "imagegen show", "imagegen test", "imagegen history", "imagegen diff"} <= found
    for path, command in commands():
        for p in options(command):
            if "--json" in p.opts:
                assert p.is_flag, f"{path} --json takes a value"


def test_short_o_means_out_wherever_it_is_offered() -> None:
    for path, command in commands():
        for p in options(command):
            if "-o" in p.opts:
                assert "--out" in p.opts, f"{path}: -o is {p.opts}"


def test_keep_means_one_thing() -> None:
    holders = {path for path, command in commands() for p in options(command) if "--keep" in p.opts}
    assert holders == {"imagegen gc"}


def test_store_option_reads_imagegen_store(tmp_path: Path) -> None:
    result = runner.invoke(app, ["history", "nohost"], env={"IMAGEGEN_STORE": str(tmp_path / "elsewhere")})
    assert result.exit_code == 0, result.output
    assert f"nohost has no generations in {tmp_path / 'elsewhere'} " in " ".join(result.stderr.split())


def test_the_store_option_is_the_same_everywhere() -> None:
    helps = {p.help for _, command in commands() for p in options(command) if "--store" in p.opts}
    assert len(helps) == 1


def test_old_keep_of_imagegen_test_is_refused_with_its_new_name(laptop: Path) -> None:
    result = runner.invoke(app, ["test", str(laptop), "--keep"])
    assert result.exit_code == 2
    assert result.stderr == "error: imagegen test --keep is now --keep-vm (leave the VM running at the end)\n"


def test_json_of_imagegen_test_takes_no_file(laptop: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["test", str(laptop), "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 2
    assert "--json-file" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_scenario_names_are_the_catalogs() -> None:
    assert [s.value for s in Scenario] == list(BY_NAME)


def test_choices_are_listed_in_help_and_others_refused(laptop: Path) -> None:
    shown = runner.invoke(app, ["test", "--help"], env={"COLUMNS": "400"}).stdout
    assert "auto|kvm|tcg" in shown and "boot-wired-primary|bridge-boot" in shown
    for option, value in (("--accel", "xen"), ("--scenario", "nope")):
        result = runner.invoke(app, ["test", str(laptop), option, value])
        assert result.exit_code == 2 and value in result.output


@pytest.mark.parametrize("panel", ["Profiles", "Images", "Tests", "Store", "Binary caches", "This host"])
def test_commands_are_grouped_in_help_panels(panel: str) -> None:
    assert f"─ {panel} ─" in runner.invoke(app, ["--help"]).stdout
