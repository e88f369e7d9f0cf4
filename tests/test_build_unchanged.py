"""A no-op `imagegen build` from the store's record (imagegen/stages/unchanged.py): taken only while
every input matches, never naming an image other inputs would give.

mkosi is replaced by the store fixtures' builder; the derivations, the store and the record are real.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from store_fixtures import FakeMkosi, fake_mkosi, work
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.cli import image as image_cli
from imagegen.image.config import BuildRequest
from imagegen.stages import realise, unchanged
from imagegen.store.gc import RECORDS_DIR as RECORDS

runner = CliRunner()


class Paths:
    """Which way each build went: the full one (load, validate, render, build) or the record."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = 0
        full: Callable[..., Any] = image_cli._full_build

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.full += 1
            return full(*args, **kwargs)

        monkeypatch.setattr(image_cli, "_full_build", counted)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


def build(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["build", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def records(work: Path) -> list[Path]:
    return sorted((work / "store" / RECORDS).glob("*.json"))


def test_a_no_op_build_takes_the_record_and_does_what_a_no_op_does(work: Path, fake_mkosi: FakeMkosi,
                                                                  paths: Paths) -> None:
    first = build("laptop.toml")
    assert paths.full == 1 and len(records(work)) == 1
    os.unlink(work / "result-laptop")
    second = build("laptop.toml")
    assert paths.full == 1 and fake_mkosi.builds == 1, "the second build did not take the record"
    assert second["reused"] and second["generation"] == first["generation"] == 1
    for key in ("store_path", "overlay_path", "profile_hash", "image", "kernel", "initrd", "manifest"):
        assert second[key] == first[key], key
    # The out-link and its GC root are made again, as by any no-op build.
    assert os.readlink(work / "result-laptop") == first["store_path"]
    result = runner.invoke(app, ["build", "laptop.toml", "--out-link", "other"])
    assert result.exit_code == 0 and result.output.startswith(f"reused {first['store_path']} (unchanged inputs;")
    assert "generation: laptop@1" in result.output and os.readlink(work / "other") == first["store_path"]
    assert paths.full == 1


def test_a_changed_profile_builds_again(work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    first = build("laptop.toml")
    profile = work / "laptop.toml"
    profile.write_text(profile.read_text().replace('"192.168.0.2/24"', '"192.168.0.9/24"'))
    second = build("laptop.toml")
    assert paths.full == 2 and fake_mkosi.builds == 2 and second["store_path"] != first["store_path"]
    assert second["generation"] == 2
    third = build("laptop.toml")  # the record now names the new image
    assert paths.full == 2 and third["store_path"] == second["store_path"]


def test_every_layer_of_a_layered_profile_is_an_input(work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    (work / "extra.toml").write_text('[system]\ntimezone = "Europe/Paris"\n')
    first = build("laptop.toml", "extra.toml")
    build("laptop.toml", "extra.toml")
    assert paths.full == 1
    (work / "extra.toml").write_text('[system]\ntimezone = "Europe/Rome"\n')
    assert build("laptop.toml", "extra.toml")["overlay_path"] != first["overlay_path"]
    assert paths.full == 2
    assert build("laptop.toml")["store_path"] != first["store_path"]  # another request: its own record
    assert paths.full == 3


def test_a_changed_secret_file_renders_again(work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    profile = work / "laptop.toml"
    profile.write_text(profile.read_text().replace('passphrase = "SuperSecret"', 'psk_file = "home.psk"'))
    psk = work / "home.psk"
    psk.write_text("first passphrase\n")
    psk.chmod(0o600)
    first = build("laptop.toml")
    build("laptop.toml")
    assert paths.full == 1
    # The record holds the file's digest only keyed by the store's key: no offline oracle.
    assert hashlib.sha256(psk.read_bytes()).hexdigest() not in records(work)[0].read_text()
    psk.write_text("second passphrase\n")
    second = build("laptop.toml")
    assert paths.full == 2 and fake_mkosi.builds == 2
    assert second["overlay_path"] != first["overlay_path"] and second["store_path"] != first["store_path"]
    # Replaced by a FIFO (read once, never hashed): the record is not taken, nor is one written.
    psk.unlink()
    os.mkfifo(psk)
    result = runner.invoke(app, ["build", "laptop.toml"])
    assert result.exit_code == 2 and paths.full == 3, result.output


def test_a_changed_host_state_file_is_not_taken_from_the_record(work: Path, fake_mkosi: FakeMkosi,
                                                               paths: Paths) -> None:
    first = build("laptop.toml")
    state = work / "laptop.state.toml"
    state.write_text(state.read_text() + "\n")  # the same DUID and keys: the same entries, found in full
    assert build("laptop.toml")["store_path"] == first["store_path"] and paths.full == 2
    state.unlink()  # a new host: new DUID, new key, new overlay
    assert build("laptop.toml")["overlay_path"] != first["overlay_path"] and paths.full == 3


def test_the_lab_flag_the_mirror_and_the_state_option_are_their_own_requests(work: Path, fake_mkosi: FakeMkosi,
                                                                             paths: Paths) -> None:
    build("laptop.toml")
    lab = build("laptop.toml", "--lab")
    assert paths.full == 2 and lab["out_link"] == str(work / "result-laptop-lab")
    assert build("laptop.toml", "--lab")["store_path"] == lab["store_path"] and paths.full == 2
    build("laptop.toml", "--mirror", "http://deb.example/debian")
    assert paths.full == 3
    shutil.copy(work / "laptop.state.toml", work / "other.state.toml")
    build("laptop.toml", "--state", "other.state.toml")
    assert paths.full == 4 and len(records(work)) == 4


def test_options_that_change_what_a_build_does_never_take_the_record(work: Path, fake_mkosi: FakeMkosi,
                                                                     paths: Paths) -> None:
    build("laptop.toml")
    build("laptop.toml", "--refresh")
    assert paths.full == 2 and fake_mkosi.refreshes == 1


def test_an_entry_gone_from_the_store_is_built_again(work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    first = build("laptop.toml")
    # The metadata marks an entry complete: without it the store holds no such entry.
    Path(first["store_path"] + ".json").unlink()
    second = build("laptop.toml")
    assert paths.full == 2 and fake_mkosi.builds == 2 and second["store_path"] == first["store_path"]
    assert not second["reused"]


def test_a_changed_code_digest_is_not_taken_from_the_record(work: Path, fake_mkosi: FakeMkosi, paths: Paths,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    build("laptop.toml")
    real = unchanged.host_inputs
    monkeypatch.setattr(unchanged, "host_inputs", lambda: {**(real() or {}), "imagegen": "sha256:another"})
    build("laptop.toml")
    assert paths.full == 2
    build("laptop.toml")  # the record written under the new digest
    assert paths.full == 2


def test_the_code_digest_covers_the_package_and_the_checkouts_trees(tmp_path: Path) -> None:
    package = tmp_path / "checkout" / "imagegen"
    (package / "templates").mkdir(parents=True)
    (package / "templates" / "a.conf.j2").write_text("a\n")
    (package / "__pycache__").mkdir()
    (tmp_path / "checkout" / "mkosi.conf.d").mkdir()
    before = unchanged.host_inputs(package)
    assert before is not None
    (package / "__pycache__" / "x.pyc").write_bytes(b"compiled")  # not source
    assert unchanged.host_inputs(package) == before
    for changed in (package / "templates" / "a.conf.j2", tmp_path / "checkout" / "mkosi.conf.d" / "10.conf"):
        changed.write_text("changed\n")
        after = unchanged.host_inputs(package)
        assert after is not None and after != before, changed
        before = after


def test_inputs_that_move_during_a_build_leave_no_record(work: Path, paths: Paths,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    class EditingMkosi(FakeMkosi):
        """Edits the profile while the image is built: what was built is not what the file now says."""

        def __call__(self, request: BuildRequest, console: object = None, *, into: Path | None = None,
                     refresh: bool = False) -> Any:
            if self.builds == 0:
                profile = work / "laptop.toml"
                profile.write_text(profile.read_text().replace('"192.168.0.2/24"', '"192.168.0.7/24"'))
            return super().__call__(request, console, into=into, refresh=refresh)

    fake = EditingMkosi()
    monkeypatch.setattr(realise, "build_image", fake)
    monkeypatch.setattr(realise, "mkosi_version", lambda: fake.version)
    first = build("laptop.toml")
    assert records(work) == []
    second = build("laptop.toml")  # the edited profile: built in full, and recorded now
    assert paths.full == 2 and second["store_path"] != first["store_path"] and len(records(work)) == 1


def test_a_damaged_or_foreign_record_is_ignored(work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    first = build("laptop.toml")
    record = records(work)[0]
    data = json.loads(record.read_text())
    for damaged in ("not json", json.dumps({**data, "format": 0}), json.dumps({**data, "image": "../x"}),
                    json.dumps({**data, "request": {**data["request"], "lab": True}}),
                    json.dumps({**data, "files": []})):
        record.write_text(damaged)
        assert build("laptop.toml")["store_path"] == first["store_path"]
    assert paths.full == 6


def test_gc_removes_the_records_of_entries_it_collected_and_keeps_the_rest(
        work: Path, fake_mkosi: FakeMkosi, paths: Paths) -> None:
    build("laptop.toml")
    (work / "extra.toml").write_text('[system]\ntimezone = "Europe/Paris"\n')
    build("laptop.toml", "extra.toml")
    assert len(records(work)) == 2
    (work / "store" / RECORDS / "broken.json").write_text("not json")
    # Only the newest generation is kept and its out-link is gone: the first build's entries go.
    os.unlink(work / "result-laptop")
    dry = runner.invoke(app, ["gc", "--keep", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert len(records(work)) == 3, "a dry run removed a record"
    result = runner.invoke(app, ["gc", "--keep", "1"])
    assert result.exit_code == 0, result.output
    left = records(work)
    assert len(left) == 1, [p.name for p in left]
    kept = json.loads(left[0].read_text())
    assert (work / "store" / kept["image"]).is_dir() and (work / "store" / kept["overlay"]).is_dir()
    # The record that stays is still taken.
    build("laptop.toml", "extra.toml")
    assert paths.full == 2
