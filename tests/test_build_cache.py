import json
import stat
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.image import cache
from imagegen.image.aptsources import DebianMirror
from imagegen.image.config import BuildRequest
from imagegen.image.mkosi import explain_failure, prepare_inputs, was_cache_reused


def key(conf: Path, **over: str) -> dict[str, str]:
    args = dict(distribution="debian", release="trixie", variant="lab", mkosi_version="25.3",
                repositories="Types: deb\n")
    args.update(over)
    return cache.config_key(conf_dir=conf, **args)


def fake_cache(cache_dir: Path) -> None:
    (cache_dir / "debian~trixie~x86-64.cache").mkdir(parents=True)
    (cache_dir / "debian~trixie~x86-64.manifest").write_text("{}")
    (cache_dir / "tools.cache").mkdir()


def test_decision_follows_config_packages_and_repositories(tmp_path: Path) -> None:
    conf = tmp_path / "mkosi.conf.d"
    conf.mkdir()
    (conf / "10.conf").write_text("[Content]\nPackages=iw\n")
    cache_dir = tmp_path / "cache"

    assert not cache.decide(cache_dir, "debian", key(conf)).reuse
    fake_cache(cache_dir)
    assert not cache.decide(cache_dir, "debian", key(conf)).reuse  # no key recorded by imagegen yet
    cache.record_key(cache_dir, key(conf))
    assert cache.decide(cache_dir, "debian", key(conf)).reuse

    changed = cache.decide(cache_dir, "debian", key(conf, repositories="Types: deb\nURIs: x\n"))
    assert not changed.reuse and "repositories" in changed.reason
    (conf / "10.conf").write_text("[Content]\nPackages=iw tcpdump\n")
    changed = cache.decide(cache_dir, "debian", key(conf))
    assert not changed.reuse and "mkosi_conf" in changed.reason


def test_scripts_run_after_the_cache_point_are_not_in_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "mkosi.conf.d"
    conf.mkdir()
    (conf / "10.conf").write_text("[Content]\nPackages=iw\n")
    finalize = conf / "50-initrd.finalize.chroot"
    finalize.write_text("#!/bin/sh\n")
    before = key(conf)
    finalize.write_text("#!/bin/sh\nmkinitramfs\n")
    (conf / "60.postinst").write_text("#!/bin/sh\n")
    assert key(conf) == before
    # A prepare script runs before mkosi saves its cache: what it changes is cached.
    (conf / "40.prepare.chroot").write_text("#!/bin/sh\n")
    assert key(conf)["mkosi_conf"] != before["mkosi_conf"]


def test_dropping_the_image_cache_keeps_the_tools_tree(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    fake_cache(cache_dir)
    cache.record_key(cache_dir, {"a": "b"})
    cache.drop_image_cache(cache_dir, "debian")
    assert sorted(p.name for p in cache_dir.iterdir()) == ["tools.cache"]


COLD = """\
‣ Building tools image
‣  Installing Debian
‣  Installing cache copies
‣  Copying cached trees
‣ Building default image
‣  Installing Debian
‣  Installing cache copies
‣  Copying cached trees
"""
WARM = """\
‣ Building tools image
‣ Building default image
‣  Copying cached trees
‣  Copying in extra file trees
"""


def test_cache_reuse_is_read_from_the_image_section_of_the_log() -> None:
    assert not was_cache_reused(COLD)
    assert was_cache_reused(WARM)


def test_failures_are_explained_in_one_line() -> None:
    assert explain_failure(["error: failed retrieving file 'core.db'"]) == (
        "mkosi could not download from the Arch mirror"
    )
    assert explain_failure(["‣ Installing Debian", "E: boom"]) == "mkosi build failed: Installing Debian"


def test_the_cache_lock_never_follows_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:$y$...:19000::::::\n")
    cache_dir = tmp_path / "cache" / "debian~trixie~plain"
    cache_dir.mkdir(parents=True)
    (cache_dir / ".lock").symlink_to(victim)
    with pytest.raises(UsageError, match="symbolic link"):
        with cache.locked(cache_dir, lambda _: None):
            pass
    assert victim.read_text() == "root:$y$...:19000::::::\n"


def test_recording_the_cache_key_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / (cache.KEY_FILE + ".tmp")).symlink_to(victim)
    cache.record_key(cache_dir, {"a": "b"})
    assert victim.read_text() == "keep\n"
    assert json.loads((cache_dir / cache.KEY_FILE).read_text()) == {"a": "b"}


def test_mkosi_writes_the_image_into_an_output_directory_only_its_owner_can_enter(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", cache_root=tmp_path / "cache")
    (request.cache_dir / "output").mkdir(parents=True, mode=0o755)  # left by an older imagegen
    inputs = prepare_inputs(request, tmp_path / "work", DebianMirror("http://mirror.invalid/debian"))
    assert stat.S_IMODE(inputs.output_dir.stat().st_mode) == 0o700
