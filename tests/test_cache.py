"""The binary cache without a server: archives, keys, metadata, the directory transport end to end,
and the commands (push, key generate, cache gc, build/test --substituter) over file://."""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
import zstandard
from cache_fixtures import Chain, entry_of, key, make_chain, no_user_cache_config, nothing_added
from store_fixtures import FakeMkosi, fake_mkosi, work
from test_store_verdicts import FakeLabRun, fake_lab
from typer.testing import CliRunner

from imagegen.cache.archive import ArchiveError, pack, unpack
from imagegen.cache.config import load_config
from imagegen.cache.entryinfo import EntryInfo, InfoError, info_name
from imagegen.cache.gc import collect_cache
from imagegen.cache.push import push
from imagegen.cache.signing import PublicKey, SecretKey, check_signatures
from imagegen.cache.substitute import CacheSubstituter
from imagegen.cli import app
from imagegen.errors import ImagegenError, UsageError
from imagegen.store import Store
from imagegen.store.hashing import tree_digest

runner = CliRunner()


def substituter(url: str, *keys: SecretKey, lines: list[str] | None = None, only: bool = False) -> CacheSubstituter:
    out = lines if lines is not None else []
    return CacheSubstituter((url,), tuple(k.public() for k in keys), out.append, only)


def never(out: Path) -> None:
    raise AssertionError("built although the cache has it")


# -- archives -------------------------------------------------------------------------------------


def test_archive_is_deterministic_and_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    store = Store(tmp_path / "a")
    chain = make_chain(store)
    overlay = entry_of(store, chain.overlay)
    first, second = io.BytesIO(), io.BytesIO()
    packed = pack(overlay.path, first)
    assert pack(overlay.path, second) == packed and first.getvalue() == second.getvalue()
    dest = tmp_path / "out"
    dest.mkdir()
    first.seek(0)
    assert unpack(first, dest, packed.size) == packed.size
    assert tree_digest(dest) == tree_digest(overlay.path), "modes, links, symlinks and contents survive"
    assert (dest / "etc/wide-dhcpv6/dhcp6cctlkey").stat().st_mode & 0o077 == 0, "a secret stays private"
    assert os.path.samefile(dest / "etc/hostname", dest / "etc/hostname.link")


def test_a_raw_image_stays_sparse(tmp_path: Path) -> None:
    store = Store(tmp_path / "a")
    image = entry_of(store, make_chain(store).image)
    data = io.BytesIO()
    packed = pack(image.path, data)
    dest = tmp_path / "out"
    dest.mkdir()
    data.seek(0)
    unpack(data, dest, packed.size)
    raw = dest / "image.raw"
    assert raw.stat().st_size > 16 << 20 and raw.stat().st_blocks * 512 < 2 << 20, "holes, not 16 MiB of zeros"


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return io.BytesIO(zstandard.ZstdCompressor().compress(plain.getvalue()))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize("members", [
    [(_member("../escape"), b"x")],
    [(_member("/etc/escape"), b"x")],
    [(_member("link", tarfile.SYMTYPE, "/tmp"), b""), (_member("link/escape"), b"x")],
    [(_member("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
    [(_member("fifo", tarfile.FIFOTYPE), b"")],
    [(_member("twice"), b"x"), (_member("twice"), b"y")],
], ids=["dotdot", "absolute", "through-symlink", "hardlink-outside", "fifo", "duplicate"])
def test_unpack_refuses_what_no_imagegen_archive_holds(tmp_path: Path, members: list) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError):
        unpack(_tar(members), dest, 1 << 20)
    assert not (tmp_path / "escape").exists()


def test_unpack_refuses_more_than_the_signed_size(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="more than"):
        unpack(_tar([(_member("big"), bytes(1 << 20))]), dest, 4096)


# -- keys and metadata ----------------------------------------------------------------------------


def test_keys_round_trip_and_signatures_name_their_key(key: SecretKey) -> None:
    assert SecretKey.parse(key.to_text()).public() == key.public()
    assert PublicKey.parse(str(key.public())) == key.public()
    sig = key.sign(b"fingerprint")
    assert sig.startswith("ci.test-1:")
    assert check_signatures((sig,), b"fingerprint", (key.public(),)) is None
    assert "does not verify" in str(check_signatures((sig,), b"altered", (key.public(),)))
    other = SecretKey.generate("other-1")
    assert "not by a trusted key" in str(check_signatures((sig,), b"fingerprint", (other.public(),)))
    assert "not signed" in str(check_signatures((), b"fingerprint", (key.public(),)))
    with pytest.raises(UsageError, match="not NAME:BASE64"):
        PublicKey.parse("no-colon")
    assert "<secret>" in repr(key) and key.to_text() not in repr(key)


def test_metadata_round_trips_and_refuses_a_path_outside_the_archive_directory(key: SecretKey) -> None:
    info = EntryInfo("0" * 32 + "-laptop-image", "build", "archive/" + "a" * 64 + ".tar.zst",
                     "sha256:" + "b" * 64, 10, "sha256:" + "c" * 64, 20, ("1" * 32 + "-laptop-overlay",),
                     {"packages": 3})
    info = info.signed(key.sign(info.fingerprint()))
    assert EntryInfo.parse(info.to_text()) == info
    with pytest.raises(InfoError, match="URL"):
        EntryInfo.parse(info.to_text().replace(info.url, "../../etc/passwd"))
    with pytest.raises(InfoError, match="no Hash"):
        EntryInfo.parse("\n".join(line for line in info.to_text().splitlines() if not line.startswith("Hash:")))
    changed = EntryInfo.parse(info.to_text().replace('"packages":3', '"packages":4'))
    assert check_signatures(changed.sigs, changed.fingerprint(), (key.public(),)) is not None, "the report is signed"


# -- the directory transport end to end -----------------------------------------------------------


def test_push_and_substitute_through_a_directory(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    lines: list[str] = []
    results = push(a, [entry_of(a, chain.verdict)], url, key, include_secrets=True, say=lines.append)
    assert [r.outcome for r in results] == ["pushed"] * 3, "the verdict with its image and overlay"
    assert (tmp_path / "cache/imagegen-cache-info").is_file()

    b = Store(tmp_path / "b", substituter(url, key))
    for drv in chain.derivations():
        entry = b.realise(drv, never)
        assert entry.substituted == url and not entry.reused
        assert tree_digest(entry.path) == tree_digest(entry_of(a, drv).path)
        meta = entry.metadata()
        assert meta["substituted_from"] == url and meta["report"] == entry_of(a, drv).report
        assert meta["references"] == list(drv.references)

    again = push(a, [entry_of(a, chain.verdict)], url, key, include_secrets=True, say=lines.append)
    assert [r.outcome for r in again] == ["present"] * 3, "HEAD first: nothing is uploaded twice"


def test_a_verdict_arrives_without_its_image(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    push(a, [entry_of(a, chain.verdict)], url, key, include_secrets=True, say=lambda _: None)
    b = Store(tmp_path / "b", substituter(url, key))
    verdict = b.substitute(chain.verdict)
    assert verdict is not None and (verdict.path / "verdict.json").is_file()
    assert b.lookup(chain.image) is None and b.lookup(chain.overlay) is None
    assert Store(tmp_path / "c").substitute(chain.verdict) is None, "no substituter: only what the store has"


def test_secrets_are_pushed_only_when_asked(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    lines: list[str] = []
    results = push(a, [entry_of(a, chain.verdict)], url, key, say=lines.append)
    assert [(r.entry, r.outcome) for r in results] == [
        (chain.overlay.path_name, "refused"), (chain.image.path_name, "refused"), (chain.verdict.path_name, "pushed")]
    refused = [line for line in lines if line.startswith("not pushed")]
    assert len(refused) == 2 and all("--include-secrets" in line for line in refused)
    assert "dhcp6cctlkey" in refused[0] or "wpa_supplicant" in refused[0]
    assert not (tmp_path / "cache" / info_name(chain.image.path_name)).exists()
    assert len(list((tmp_path / "cache/archive").iterdir())) == 1, "only the verdict's archive was uploaded"


def test_refusals_leave_nothing_and_the_build_goes_on(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    push(a, [entry_of(a, chain.overlay)], url, key, include_secrets=True, say=lambda _: None)
    lines: list[str] = []
    untrusting = Store(tmp_path / "b", substituter(url, SecretKey.generate("other-1"), lines=lines))
    built = []
    entry = untrusting.realise(chain.overlay, lambda out: built.append(out) or {"entries": 0})
    assert built and entry.substituted is None
    assert lines == [f"cache {url}: refused {chain.overlay.path_name}: it is signed by ci.test-1, not by a trusted key"]

    only = Store(tmp_path / "c", substituter(url, SecretKey.generate("other-1"), only=True))
    with pytest.raises(ImagegenError, match="--substitute-only"):
        only.realise(chain.image, never)
    assert nothing_added(only)


def test_config_file_and_environment(tmp_path: Path, key: SecretKey) -> None:
    config = tmp_path / "config/imagegen/cache.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'substituters = ["file:///srv/cache"]\ntrusted_keys = ["{key.public()}"]\n')
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "IMAGEGEN_SUBSTITUTERS": "http://h:1/c file:///srv/cache"}
    loaded = load_config(environ, substituters=["https://first/c"])
    assert loaded.substituters == ("https://first/c", "http://h:1/c", "file:///srv/cache")
    assert loaded.trusted_keys == (key.public(),)
    config.write_text('substituters = ["ftp://nope"]\n')
    with pytest.raises(UsageError, match=r"cache.toml: substituters: cache URL 'ftp://nope'"):
        load_config(environ)
    config.write_text('substituters = ["https://ci:hunter2@cache.example/c"]\n')
    with pytest.raises(UsageError, match="netrc") as refused:
        load_config(environ)
    assert "hunter2" not in str(refused.value)
    config.write_text('substituter = ["file:///x"]\n')
    with pytest.raises(UsageError, match="unknown key substituter"):
        load_config(environ)


def _pushed_a_week_apart(tmp_path: Path, key: SecretKey) -> tuple[Chain, Chain, str]:
    """Two chains pushed to a directory cache: the old one's files a week old, the new one's fresh."""
    a = Store(tmp_path / "a")
    old, new = make_chain(a, "1"), make_chain(a, "2")
    url = f"file://{tmp_path}/cache"
    push(a, [entry_of(a, old.overlay)], url, key, include_secrets=True, say=lambda _: None)
    week_ago = time.time() - 7 * 86400
    for path in (tmp_path / "cache").rglob("*"):
        os.utime(path, (week_ago, week_ago))
    push(a, [entry_of(a, new.overlay)], url, key, include_secrets=True, say=lambda _: None)
    return old, new, url


def test_cache_gc_removes_old_entries_of_a_directory_cache_only(tmp_path: Path, key: SecretKey) -> None:
    old, new, url = _pushed_a_week_apart(tmp_path, key)
    result = collect_cache(url, keep_days=3)
    assert sorted(r.split("/")[0] for r in result.removed) == sorted(["archive", info_name(old.overlay.path_name)])
    assert result.kept == 1
    fresh = Store(tmp_path / "b", substituter(url, key))
    assert fresh.substitute(new.overlay) is not None and fresh.substitute(old.overlay) is None
    (tmp_path / "other").mkdir()
    with pytest.raises(UsageError, match="not a cache imagegen wrote"):
        collect_cache(f"file://{tmp_path}/other", 0)
    with pytest.raises(UsageError, match="only a directory cache"):
        collect_cache("https://cache.example/x", 0)


# -- the commands ---------------------------------------------------------------------------------


def test_key_generate_writes_a_private_secret_and_prints_the_public_key(tmp_path: Path) -> None:
    result = runner.invoke(app, ["key", "generate", "ci.test-1", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    secret = tmp_path / "ci.test-1.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    public = PublicKey.parse(result.stdout.strip())
    assert (tmp_path / "ci.test-1.public").read_text().strip() == str(public)
    assert SecretKey.parse(secret.read_text()).public() == public
    again = runner.invoke(app, ["key", "generate", "ci.test-1", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "exists" in again.output


def _key_files(tmp_path: Path) -> tuple[Path, SecretKey]:
    key = SecretKey.generate("ci.test-1")
    path = tmp_path / "ci.secret"
    path.write_text(key.to_text())
    path.chmod(0o600)
    return path, key


def test_build_and_test_on_a_second_store_come_from_the_cache(
        work: Path, fake_mkosi: FakeMkosi, fake_lab: type[FakeLabRun], monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    assert runner.invoke(app, ["test", "laptop.toml"]).exit_code == 0
    assert fake_mkosi.builds == 2 and len(fake_lab.runs) == 1, "the image and the lab image, one run"
    key_file, key = _key_files(work)
    url = f"file://{work}/cache"
    refused = runner.invoke(app, ["push", "laptop.toml", "--to", url, "--key", str(key_file)])
    assert refused.exit_code == 1 and "2 pushed" not in refused.stdout and "--include-secrets" in refused.stdout
    pushed = runner.invoke(app, ["push", "laptop.toml", "--to", url, "--key", str(key_file), "--include-secrets"])
    assert pushed.exit_code == 0, pushed.output
    assert "4 pushed" in pushed.stdout and "1 already there" in pushed.stdout, "overlays and images; the verdict went"

    monkeypatch.setenv("IMAGEGEN_TRUSTED_KEYS", str(key.public()))
    b = work / "store-b"
    built = runner.invoke(app, ["build", "laptop.toml", "--store", str(b), "--substituter", url,
                                "--out-link", "result-b"])
    assert built.exit_code == 0, built.output
    assert fake_mkosi.builds == 2, "no mkosi run on the second store"
    assert f"substituted {b}" in built.stdout and (work / "result-b/image.raw").is_file()

    tested = runner.invoke(app, ["test", "laptop.toml", "--store", str(b), "--substituter", url, "--json"])
    assert tested.exit_code == 0, tested.output
    data = json.loads(tested.stdout)
    assert data["reused"] and data["passed"] and len(fake_lab.runs) == 1, "the stored verdict, no boot"
    assert not Path(data["image_path"]).exists(), "a verdict hit fetches no lab image"
    assert "lab image: not needed" in tested.stderr


def test_substitute_only_fails_instead_of_building(work: Path, fake_mkosi: FakeMkosi) -> None:
    result = runner.invoke(app, ["build", "laptop.toml", "--substituter", f"file://{work}/empty",
                                 "--substitute-only"])
    assert result.exit_code == 1 and "--substitute-only" in result.output and fake_mkosi.builds == 0
    assert not any(p.name.endswith("-image") for p in (work / "store").iterdir())


def test_store_gc_never_touches_a_cache(work: Path, fake_mkosi: FakeMkosi, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    key_file, _key = _key_files(work)
    url = f"file://{work}/cache"
    assert runner.invoke(app, ["push", "result-laptop", "--to", url, "--key", str(key_file),
                               "--include-secrets"]).exit_code == 0
    before = sorted(p.relative_to(work / "cache") for p in (work / "cache").rglob("*"))
    monkeypatch.setenv("IMAGEGEN_SUBSTITUTERS", url)
    (work / "result-laptop").unlink()
    assert runner.invoke(app, ["gc", "--keep", "0"]).exit_code == 0
    assert sorted(p.relative_to(work / "cache") for p in (work / "cache").rglob("*")) == before


def test_push_without_a_key_says_how_to_make_one(work: Path, fake_mkosi: FakeMkosi) -> None:
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    result = runner.invoke(app, ["push", "result-laptop", "--to", f"file://{work}/cache"])
    assert result.exit_code == 2 and "imagegen key generate" in result.output
    assert not (work / "cache").exists()


def test_force_never_substitutes(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    push(a, [entry_of(a, chain.overlay)], url, key, include_secrets=True, say=lambda _: None)
    b = Store(tmp_path / "b", substituter(url, key))
    assert b.realise(chain.overlay, never).substituted == url
    built: list[Path] = []
    again = b.realise(chain.overlay, lambda out: built.append(out) or {"entries": 0}, force=True)
    assert built and again.substituted is None, "--refresh and --rerun ask for new work"


def test_an_archive_without_its_metadata_is_not_present(tmp_path: Path, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url = f"file://{tmp_path}/cache"
    push(a, [entry_of(a, chain.overlay)], url, key, include_secrets=True, say=lambda _: None)
    # A push killed between the archive and the metadata.
    (tmp_path / "cache" / info_name(chain.overlay.path_name)).unlink()
    b = Store(tmp_path / "b", substituter(url, key))
    assert b.substitute(chain.overlay) is None and nothing_added(b)
    again = push(a, [entry_of(a, chain.overlay)], url, key, include_secrets=True, say=lambda _: None)
    assert [r.outcome for r in again] == ["pushed"] and len(list((tmp_path / "cache/archive").iterdir())) == 1
    assert b.substitute(chain.overlay) is not None


def test_a_secret_key_others_can_read_is_refused(work: Path, fake_mkosi: FakeMkosi) -> None:
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    key_file, _key = _key_files(work)
    key_file.chmod(0o640)
    result = runner.invoke(app, ["push", "result-laptop", "--to", f"file://{work}/cache", "--key", str(key_file),
                                 "--include-secrets"])
    assert result.exit_code == 2, result.output
    assert f"{key_file}: the secret key is readable by others" in result.output
    assert f"chmod 600 {key_file}" in result.output and not (work / "cache").exists()


def test_the_cache_gc_command_lists_first_and_removes_only_when_asked(tmp_path: Path, key: SecretKey) -> None:
    old, new, url = _pushed_a_week_apart(tmp_path, key)
    before = sorted((tmp_path / "cache").rglob("*"))
    dry = runner.invoke(app, ["cache", "gc", url, "--keep-days", "3", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would remove 2 files") and info_name(old.overlay.path_name) in dry.stdout
    assert sorted((tmp_path / "cache").rglob("*")) == before, "a dry run removed something"
    done = runner.invoke(app, ["cache", "gc", url, "--keep-days", "3"])
    assert done.exit_code == 0 and done.stdout.startswith("removed 2 files") and "kept 1 entries" in done.stdout
    assert not (tmp_path / "cache" / info_name(old.overlay.path_name)).exists()
    assert (tmp_path / "cache" / info_name(new.overlay.path_name)).exists()
    refused = runner.invoke(app, ["cache", "gc", "https://cache.example/x"])
    assert refused.exit_code == 2 and "only a directory cache" in refused.output


def test_a_build_substitutes_from_the_caches_of_the_config_file_alone(
        work: Path, fake_mkosi: FakeMkosi, tmp_path: Path) -> None:
    assert runner.invoke(app, ["build", "laptop.toml"]).exit_code == 0
    key_file, key = _key_files(work)
    url = f"file://{work}/cache"
    assert runner.invoke(app, ["push", "result-laptop", "--to", url, "--key", str(key_file),
                               "--include-secrets"]).exit_code == 0
    # No --substituter, no IMAGEGEN_SUBSTITUTERS or IMAGEGEN_TRUSTED_KEYS (see no_user_cache_config).
    config = tmp_path / "config" / "imagegen" / "cache.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'substituters = ["{url}"]\ntrusted_keys = ["{key.public()}"]\n')
    b = work / "store-b"
    built = runner.invoke(app, ["build", "laptop.toml", "--store", str(b), "--out-link", "result-b"])
    assert built.exit_code == 0, built.output
    assert fake_mkosi.builds == 1 and f"substituted {b}" in built.stdout, built.output


def test_test_with_substitute_only_fails_on_a_miss_and_boots_nothing(
        work: Path, fake_mkosi: FakeMkosi, fake_lab: type[FakeLabRun]) -> None:
    result = runner.invoke(app, ["test", "laptop.toml", "--substituter", f"file://{work}/empty",
                                 "--substitute-only"])
    assert result.exit_code == 1 and "--substitute-only" in result.output, result.output
    assert fake_mkosi.builds == 0 and fake_lab.runs == [], "neither built nor booted"
