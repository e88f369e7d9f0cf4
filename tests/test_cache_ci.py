"""The CI examples in docs/ci/ are valid for their CI engines (the published JSON schemas, as vendored by
check-jsonschema: no network) and fan out over profiles that exist, calling options that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from imagegen.cli import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "github-actions.yml": "vendor.github-workflows",
    "gitlab-ci.yml": "vendor.gitlab-ci",
}


def validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("check_jsonschema")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_ci_example_matches_its_schema(name: str, tmp_path: Path) -> None:
    path = REPO / "docs/ci" / name
    result = validate(path, EXAMPLES[name])
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: a misspelt key is caught.
    broken = tmp_path / name
    broken.write_text(path.read_text().replace("runs-on:", "run-on:").replace("stage: images", "stages: images"))
    assert validate(broken, EXAMPLES[name]).returncode != 0


def _profiles(name: str) -> list[str]:
    data = yaml.safe_load((REPO / "docs/ci" / name).read_text())
    if name == "github-actions.yml":
        return [item["profile"] for item in data["jobs"]["image"]["strategy"]["matrix"]["include"]]
    return list(data["image-and-verdict"]["parallel"]["matrix"][0]["PROFILE"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_ci_example_fans_out_over_real_profiles_and_real_options(name: str) -> None:
    profiles = _profiles(name)
    assert len(profiles) >= 2
    for profile in profiles:
        for file in profile.split():
            assert (REPO / file).is_file(), f"{name}: {file} does not exist"
    text = (REPO / "docs/ci" / name).read_text()
    for command in ("build", "test", "push"):
        assert re.search(rf"imagegen {command} ", text), f"{name} does not run imagegen {command}"
    for option in sorted(set(re.findall(r"\s(--[a-z-]+)", text))):
        command = "push" if option in ("--to", "--key", "--include-secrets") else "test"
        help_text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        assert option in help_text, f"{name}: imagegen {command} has no {option}"
    assert "--include-secrets" in text and "private" in text, "the secrets policy is spelt out where it is used"
