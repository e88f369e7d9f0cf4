import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

import imagegen.image.mkosi as mkosi_driver
from imagegen.errors import ImagegenError
from imagegen.image import cache
from imagegen.image.config import BuildRequest
from imagegen.image.manifest import tree_hash
from imagegen.image.mkosi import MkosiFailed, StageFollower, replace_dir, run_mkosi

needs_mkosi = pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "mkosi", "--version"], capture_output=True).returncode != 0,
    reason="mkosi is not importable (run `imagegen setup`)",
)


def test_stage_follower_has_no_timings_when_mkosi_named_no_step(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("‣ /etc/mkosi.conf: unknown setting\n")
    follower = StageFollower(log)
    follower.poll()
    assert follower.timings(time.monotonic()) == []


def test_stage_follower_tracks_nested_steps_and_skips_notices(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("‣ Building tools image\n‣  Installing Debian\nGet:1 http://x.example/debian trixie\n")
    follower = StageFollower(log)
    follower.poll()
    assert follower.stage == "Building tools image › Installing Debian"
    with log.open("a") as f:
        f.write("‣ systemd-hwdb is not installed, not generating hwdb\n‣ Building default image\n‣  Copying in")
    follower.poll()
    assert follower.stage == "Building default image"
    with log.open("a") as f:
        f.write(" extra file trees…\n")
    follower.poll()
    assert follower.stage == "Building default image › Copying in extra file trees"
    assert follower.tail[-1] == "‣  Copying in extra file trees…"
    names = [name for name, _ in follower.timings(time.monotonic())]
    assert names == [
        "Building tools image", "Building tools image › Installing Debian",
        "Building default image", "Building default image › Copying in extra file trees",
    ]


@needs_mkosi
def test_failed_mkosi_run_keeps_the_log_and_reports_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(MkosiFailed) as e:
        run_mkosi(["--directory", "", "--distribution", "no-such-distribution", "summary"], log,
                  Console(quiet=True))
    assert "no-such-distribution" in log.read_text()
    assert any("no-such-distribution" in line for line in e.value.tail)
    assert e.value.hint is not None and str(log) in e.value.hint


def test_replace_dir_swaps_whole_directories(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("1")
    new = tmp_path / "new"
    new.mkdir()
    (new / "image.raw").write_text("2")
    replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["image.raw"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cache_lock_makes_a_second_build_wait(tmp_path: Path) -> None:
    said: list[str] = []
    order: list[str] = []
    with cache.locked(tmp_path, said.append):
        def second() -> None:
            with cache.locked(tmp_path, said.append):
                order.append("second")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    assert said and "waiting" in said[0]


@needs_mkosi
def test_mkosi_version_is_read_from_its_source_without_starting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = subprocess.run([sys.executable, "-m", "mkosi", "--version"], capture_output=True, text=True)
    started: list[object] = []
    monkeypatch.setattr(mkosi_driver, "run", lambda *a, **k: started.append(a))
    assert mkosi_driver.mkosi_version() == asked.stdout.split()[-1]
    assert started == []


def test_mkosi_version_without_mkosi_names_the_setup_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mkosi_driver.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(mkosi_driver, "mkosi_command", lambda: [sys.executable, "-m", "no_such_module_mkosi"])
    with pytest.raises(ImagegenError) as e:
        mkosi_driver.mkosi_version()
    assert "imagegen setup" in str(e.value.hint)


def test_the_lab_initrd_replaces_mkosis_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "image.initrd").write_bytes(b"mkosi")
    (tmp_path / mkosi_driver.LAB_INITRD).write_bytes(b"lab")
    mkosi_driver.take_lab_initrd(tmp_path, expected=True, log=tmp_path / "log")
    assert (tmp_path / "image.initrd").read_bytes() == b"lab"
    assert not (tmp_path / mkosi_driver.LAB_INITRD).exists()

    # A plain or Arch image has no lab initrd and keeps mkosi's.
    mkosi_driver.take_lab_initrd(tmp_path, expected=False, log=tmp_path / "log")
    assert (tmp_path / "image.initrd").read_bytes() == b"lab"
    with pytest.raises(ImagegenError, match="did not write image.lab-initrd"):
        mkosi_driver.take_lab_initrd(tmp_path, expected=True, log=tmp_path / "log")


HASH = "$y$j9T$saltsaltsalt$hashhashhashhashhashhashhashhashhashhashhas"
# What mkosi 25.3 prints when systemd-firstboot, which it gives the hash on its command line, fails.
FAILING_MKOSI = (
    "import sys; print('‣ Applying first boot settings'); "
    f"print(\"‣ \\\"systemd-firstboot --root=/buildroot --force --root-password-hashed '{HASH}'\\\" returned "
    "non-zero exit code 1.\"); sys.exit(1)"
)


def test_a_failed_build_keeps_neither_the_root_password_hash_nor_a_readable_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mkosi_driver, "mkosi_command", lambda: [sys.executable, "-c", FAILING_MKOSI])
    monkeypatch.setattr(mkosi_driver, "mkosi_version", lambda: "25.3")  # the fake stands in for mkosi
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", cache_root=tmp_path / "cache",
                           mirror="http://mirror.invalid/debian", root_password_hash=HASH)
    into = tmp_path / "entry"
    into.mkdir()
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(MkosiFailed) as e:
        mkosi_driver.build_image(request, console, into=into)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "systemd-firstboot" in shown and HASH not in shown
    assert all(HASH not in line for line in e.value.tail)
    for log in (into / mkosi_driver.LOG_NAME, e.value.log):
        assert "--root-password-hashed '<secret>'" in log.read_text() and HASH not in log.read_text()
    assert e.value.log.stat().st_mode & 0o077 == 0


# Writes the three outputs into --output-directory, as a finished mkosi build leaves them.
WRITING_MKOSI = (
    "import sys, pathlib; print('‣ Building default image'); "
    "out = pathlib.Path(sys.argv[sys.argv.index('--output-directory') + 1]); "
    "[(out / n).write_bytes(b'x') for n in ('image.raw', 'image.vmlinuz', 'image.initrd')]"
)


def test_the_manifest_digest_of_the_overlay_is_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The overlay holds the Wi-Fi keys next to values a reader may know (the DUID is on the network): a plain
    # digest of it would test a guessed passphrase.
    monkeypatch.setattr(mkosi_driver, "mkosi_command", lambda: [sys.executable, "-c", WRITING_MKOSI])
    monkeypatch.setattr(mkosi_driver, "mkosi_version", lambda: "25.3")  # the fake stands in for mkosi
    overlay = tmp_path / "overlay"
    (overlay / "etc/wpa_supplicant").mkdir(parents=True)
    (overlay / "etc/wpa_supplicant/wpa_supplicant.conf").write_text('network={\n psk="guessable"\n}\n')
    digests = []
    for key in (b"k" * 32, b"other key" * 4):
        into = tmp_path / f"entry-{len(digests)}"
        into.mkdir()
        request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", cache_root=tmp_path / "cache",
                               mirror="http://mirror.invalid/debian", digest_key=key)
        assert "k" * 32 not in repr(request)
        digests.append(mkosi_driver.build_image(request, Console(quiet=True), into=into).manifest.overlay_hash)
    assert all(d.startswith("hmac-sha256:") for d in digests) and digests[0] != digests[1]
    assert tree_hash(overlay) not in digests
