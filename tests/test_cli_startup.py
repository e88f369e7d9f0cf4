"""The command line starts fast: importing it loads no stage, and each command loads only its own."""

from __future__ import annotations

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
import json
import os
import subprocess
import sys
from pathlib import Path

from store_fixtures import FakeMkosi, fake_mkosi, work
from typer.testing import CliRunner

from imagegen.cli import app

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "httpx", "cryptography", "mkosi", "jinja2", "pydantic", "zstandard", "qemu")


def loaded_after(code: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> set[str]:
    """The top-level packages, and imagegen's modules, loaded in a fresh interpreter after code ran."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    environ = env or os.environ
    # This checkout first; the rest kept, so a run without mkosi (tests/no_mkosi) hides it here too.
    python_path = environ.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd,
                          env={**environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), python_path]))})
    names = json.loads(proc.stdout.splitlines()[-1])
    return {n.split(".")[0] for n in names} | {n for n in names if n.startswith("imagegen.")}


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    loaded = loaded_after("import imagegen.cli")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    stages = {n for n in loaded if n.startswith("imagegen.") and not n.startswith(("imagegen.cli", "imagegen.errors",
                                                                                  "imagegen.interrupt"))}
    assert not stages, sorted(stages)


def test_the_top_level_help_loads_no_stage() -> None:
    loaded = loaded_after("import sys\nfrom imagegen.cli import app\nsys.argv = ['imagegen', '--help']\n"
                          "try:\n    app()\nexcept SystemExit:\n    pass")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_build_with_no_binary_cache_loads_neither_http_nor_crypto(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGEN_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    loaded = loaded_after("from rich.console import Console\nfrom imagegen.cli.cache import substituter\n"
                          "assert substituter(None, False, Console()) is None", env)
    assert not loaded & {"httpx", "cryptography", "zstandard"}, sorted(loaded)


def test_a_no_op_build_loads_no_stage(work: Path, fake_mkosi: FakeMkosi) -> None:
    first = CliRunner().invoke(app, ["build", "laptop.toml"])
    assert first.exit_code == 0, first.output
    code = ("import sys\nfrom imagegen.cli import app\nsys.argv = ['imagegen', 'build', 'laptop.toml']\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code")
    loaded = loaded_after(code, cwd=work)
    # Typer itself loads pydantic to coerce a command's options (typer._adapters): not the profile's models.
    assert not loaded & (set(HEAVY) - {"pydantic"}), sorted(loaded & set(HEAVY))
    stages = {n for n in loaded if n.startswith(("imagegen.profile", "imagegen.render", "imagegen.image.mkosi",
                                                 "imagegen.image.config", "imagegen.vm", "imagegen.stages.realise",
                                                 "imagegen.stages.derivations"))}
    assert not stages, sorted(stages)
