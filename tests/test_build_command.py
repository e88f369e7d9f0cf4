from pathlib import Path

from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.image.config import repo_root

EXAMPLE = repo_root() / "examples/laptop.toml"


def test_build_with_a_bad_mirror_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(EXAMPLE), "--mirror", "not-a-url", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "mirror" in result.output
    assert list(tmp_path.iterdir()) == []


def test_build_of_an_arch_profile_without_mirror_exits_2(tmp_path: Path) -> None:
    profile = tmp_path / "arch.toml"
    profile.write_text(EXAMPLE.read_text().replace('distribution = "debian"', 'distribution = "arch"')
                       .replace('release = "trixie"', 'release = "rolling"'))
    result = CliRunner().invoke(app, ["build", str(profile), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "image.mirror" in result.output
    assert not (tmp_path / "out").exists()
