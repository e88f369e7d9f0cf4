"""The other paths commands write (--junit, --json, --artifacts, --out-link, --state): replaced only when
imagegen wrote what is there, written atomically, checked before anything is built or booted."""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from example_copy import copy_laptop
from store_fixtures import FakeMkosi, fake_mkosi, work
from test_report import run_result
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import UsageError
from imagegen.report.jsonout import write_json
from imagegen.report.junit import write_junit
from imagegen.report.repeat import write_repeat_json
from imagegen.safeoutput import safe_replace

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def no_build(tmp_path: Path) -> list[str]:
    """An image directory that does not exist: should the output check ever come too late, the command
    stops there (exit 2, another message) instead of building an image."""
    return ["--image", str(tmp_path / "no-image"), "--store", str(tmp_path / "store")]


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    return copy_laptop(tmp_path)


# --- Reports ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("write", [write_json, write_junit])
def test_a_report_never_replaces_a_file_of_the_users(tmp_path: Path, write: object) -> None:
    path = tmp_path / "results"
    path.write_text("my notes\n")
    with pytest.raises(UsageError, match="is not a file imagegen wrote"):
        write(run_result(), path)  # type: ignore[operator]
    assert path.read_text() == "my notes\n"


@pytest.mark.parametrize("write", [write_json, write_junit])
def test_a_report_replaces_its_own_previous_file(tmp_path: Path, write: object) -> None:
    path = tmp_path / "results"
    write(run_result(), path)  # type: ignore[operator]
    first = path.read_bytes()
    write(run_result(), path)  # type: ignore[operator]
    assert path.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_a_repeated_runs_json_and_a_single_runs_json_replace_each_other(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_repeat_json([run_result(), run_result()], path)
    write_json(run_result(), path)
    assert json.loads(path.read_text())["profile"] == "examples/laptop.toml"
    write_repeat_json([run_result(), run_result()], path)
    assert json.loads(path.read_text())["repeat"] == 2


@pytest.mark.parametrize("write", [write_json, write_junit])
def test_a_report_leaves_a_file_named_like_its_old_temporary_alone(tmp_path: Path, write: object) -> None:
    (tmp_path / "r.xml.tmp").write_text("mine\n")
    write(run_result(), tmp_path / "r.xml")  # type: ignore[operator]
    assert (tmp_path / "r.xml.tmp").read_text() == "mine\n"


def test_a_report_is_not_written_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / "r.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="is a symbolic link"):
        write_json(run_result(), tmp_path / "r.json")
    assert (tmp_path / "elsewhere").read_text() == "x"


def test_safe_replace_creates_a_new_file_with_its_mode(tmp_path: Path) -> None:
    safe_replace(tmp_path / "new/out.txt", b"hello\n", option="--x", ours=lambda content: False, mode=0o600)
    assert (tmp_path / "new/out.txt").read_bytes() == b"hello\n"
    assert (tmp_path / "new/out.txt").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("option", "make"), [
    ("--junit", lambda p: p.write_text("<mine/>\n")),
    ("--json-file", lambda p: p.write_text('{"mine": 1}\n')),
    ("--artifacts", lambda p: (p.mkdir(), (p / "mine.txt").write_text("x"))),
])
def test_imagegen_test_refuses_an_output_path_before_it_builds_or_boots(laptop: Path, tmp_path: Path,
                                                                        option: str, make: object) -> None:
    path = tmp_path / "taken"
    make(path)  # type: ignore[operator]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = runner.invoke(app, ["test", str(laptop), option, str(path), *no_build(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{option} {path}:" in result.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no store, no state file, nothing


def test_imagegen_test_refuses_the_working_directory_as_artifacts(laptop: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(laptop.parent)
    result = runner.invoke(app, ["test", str(laptop), "--artifacts", ".", *no_build(tmp_path)])
    assert result.exit_code == 2 and "--artifacts .:" in result.stderr


def test_an_artifacts_directory_of_imagegens_is_accepted(laptop: Path, tmp_path: Path) -> None:
    from imagegen.safeoutput import check_tree, claim_tree, release_tree

    evidence = tmp_path / "evidence"
    assert claim_tree(evidence, "artifacts", "--artifacts")
    (evidence / "serial.log").write_text("boot\n")
    check_tree(evidence, "--artifacts")  # the next run may add to it
    release_tree(evidence)
    assert (evidence / "serial.log").exists()  # evidence is kept
    empty = tmp_path / "empty"
    assert claim_tree(empty, "artifacts", "--artifacts")
    release_tree(empty)
    assert not empty.exists()  # nothing kept: no directory left behind


# --- The result link -------------------------------------------------------------------------------

def test_build_replaces_only_a_link_into_the_store(work: Path, fake_mkosi: FakeMkosi) -> None:
    (work / "important").mkdir()
    (work / "result-laptop").symlink_to(work / "important")
    result = runner.invoke(app, ["build", "laptop.toml"])
    assert result.exit_code == 2, result.output
    assert "is a symbolic link to" in result.stderr and "not into the store" in result.stderr
    assert os.readlink(work / "result-laptop") == str(work / "important")
    assert fake_mkosi.builds == 0  # refused before building
    (work / "result-laptop").unlink()
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    first = os.readlink(work / "result-laptop")
    (work / "moved.toml").rename(work / "laptop.toml")
    result = runner.invoke(app, ["build", "laptop.toml"])
    assert result.exit_code == 0, result.output
    assert os.readlink(work / "result-laptop") != first  # an older result link is replaced


def test_build_keeps_a_dangling_link_that_is_not_the_stores(work: Path, fake_mkosi: FakeMkosi) -> None:
    (work / "result-laptop").symlink_to("/nonexistent/place")
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 2
    assert os.readlink(work / "result-laptop") == "/nonexistent/place"


# --- The host state file ---------------------------------------------------------------------------

def test_state_that_is_not_a_state_file_is_refused_and_kept(laptop: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.toml"
    other.write_text('title = "mine"\n')
    result = runner.invoke(app, ["render", str(laptop), "--out", str(tmp_path / "out"), "--state", str(other)])
    assert result.exit_code == 2 and "host state file is unreadable or damaged" in result.stderr
    assert other.read_text() == 'title = "mine"\n' and not (tmp_path / "out").exists()


def test_state_is_never_created_through_a_symlink(laptop: Path, tmp_path: Path) -> None:
    (tmp_path / "link.toml").symlink_to(tmp_path / "elsewhere.toml")
    result = runner.invoke(app, ["render", str(laptop), "--out", str(tmp_path / "out"),
                                 "--state", str(tmp_path / "link.toml")])
    assert result.exit_code == 2
    assert not (tmp_path / "elsewhere.toml").exists()


def test_state_in_a_missing_directory_is_one_line(laptop: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", str(laptop), "--out", str(tmp_path / "out"),
                                 "--state", str(tmp_path / "no/such/dir/s.toml")])
    assert result.exit_code == 2 and "cannot create it" in result.stderr
    assert not (tmp_path / "out").exists()



# --- Ctrl-C during imagegen test: one line, and where the evidence so far is ----------------------

class InterruptedLabRun:
    """The lab run, cut short by Ctrl-C after it saved a serial log (as a failing boot does)."""

    def __init__(self, *args: object) -> None:
        self.options = args[4]

    def run(self, label: str) -> None:
        evidence = self.options.artifacts  # type: ignore[attr-defined]
        evidence.mkdir(parents=True, exist_ok=True)
        (evidence / "serial-main.log").write_text("[    0.000000] Linux version\n")
        raise KeyboardInterrupt


def test_ctrl_c_in_imagegen_test_names_the_evidence(laptop: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "image"
    image.mkdir()
    for name in ("image.raw", "image.vmlinuz", "image.initrd"):
        (image / name).write_bytes(b"")
    monkeypatch.setattr("imagegen.scenarios.runner.LabRun", InterruptedLabRun)
    evidence = tmp_path / "evidence"
    result = runner.invoke(app, ["test", str(laptop), "--accel", "tcg", "--image", str(image), "--artifacts",
                                 str(evidence), "--store", str(tmp_path / "store")])
    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-1] == (f"interrupted: imagegen test {laptop} (SIGINT); evidence so far: "
                                              f"{evidence}")
    assert (evidence / "serial-main.log").is_file() and (evidence / ".imagegen-tree").is_file()


def test_ctrl_c_in_a_stored_test_run_keeps_the_evidence_the_store_discards(
        work: Path, fake_mkosi: FakeMkosi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imagegen.scenarios.runner.LabRun", InterruptedLabRun)
    result = runner.invoke(app, ["test", "laptop.toml", "--accel", "tcg"])
    assert result.exit_code == 130, result.output
    line = result.stderr.splitlines()[-1]
    assert line.startswith("interrupted: imagegen test laptop.toml (SIGINT); evidence so far: artifacts/laptop-")
    kept = work / line.rsplit(": ", 1)[1]
    assert (kept / "serial-main.log").read_text() == "[    0.000000] Linux version\n"
    assert not [p for p in (work / "store").iterdir() if p.name.endswith("-verdict")]  # no verdict filed
