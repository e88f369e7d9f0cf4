"""The binary cache against real servers: nginx with WebDAV PUT (Debian's nginx package), and a server
that dies half-way through a download. Two stores stand for two CI runners."""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cache_fixtures import (
    Nginx,
    busy_server,
    dying_server,
    entry_of,
    free_port,
    key,
    make_chain,
    nginx,
    no_user_cache_config,
    nothing_added,
)

from imagegen.cache.archive import pack
from imagegen.cache.entryinfo import EntryInfo, info_name
from imagegen.cache.push import push
from imagegen.cache.signing import SecretKey
from imagegen.cache.substitute import CacheSubstituter
from imagegen.cache.transport import CacheError, Retry, transport_for
from imagegen.errors import ImagegenError
from imagegen.store import Derivation, Store
from imagegen.store.hashing import tree_digest

REPO = Path(__file__).resolve().parents[1]


def store_b(tmp_path: Path, url: str, *trusted: SecretKey, only: bool = False) -> tuple[Store, list[str]]:
    lines: list[str] = []
    sub = CacheSubstituter((url,), tuple(k.public() for k in trusted), lines.append, only)
    return Store(tmp_path / "b", sub), lines


def built_locally(calls: list[Path]):  # type: ignore[no-untyped-def]
    def build(out: Path) -> dict[str, int]:
        calls.append(out)
        (out / "local").write_text("built here\n")
        return {"local": 1}
    return build


def test_push_to_nginx_and_substitute_into_another_store(tmp_path: Path, nginx: Nginx, key: SecretKey) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    results = push(a, [entry_of(a, chain.verdict)], nginx.url, key, include_secrets=True, say=lambda _: None)
    assert [r.outcome for r in results] == ["pushed"] * 3
    assert (nginx.root / "imagegen-cache-info").is_file() and len(list((nginx.root / "archive").iterdir())) == 3
    b, lines = store_b(tmp_path, nginx.url, key)
    for drv in chain.derivations():
        entry = b.realise(drv, lambda out: pytest.fail("built although the cache has it"))
        assert entry.substituted == nginx.url
        assert tree_digest(entry.path) == tree_digest(entry_of(a, drv).path)
    assert sum(line.startswith("substituted ") for line in lines) == 3
    again = push(a, [entry_of(a, chain.verdict)], nginx.url, key, include_secrets=True, say=lambda _: None)
    assert [r.outcome for r in again] == ["present"] * 3


def _pushed(tmp_path: Path, url: str, key: SecretKey) -> tuple[Store, Derivation, EntryInfo]:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    push(a, [entry_of(a, chain.image)], url, key, include_secrets=True, say=lambda _: None)
    data = transport_for(url).read(info_name(chain.image.path_name), 1 << 20)
    assert data is not None
    return a, chain.image, EntryInfo.parse(data.decode())


def test_a_tampered_archive_is_refused(tmp_path: Path, nginx: Nginx, key: SecretKey) -> None:
    a, drv, info = _pushed(tmp_path, nginx.url, key)
    # Another, well-formed archive under the same name: it unpacks fine and must still be refused.
    other = tmp_path / "other"
    other.mkdir()
    (other / "image.raw").write_bytes(b"someone else's image")
    with (nginx.root / info.url).open("wb") as f:
        pack(other, f)
    b, lines = store_b(tmp_path, nginx.url, key)
    overlay = b.realise(Derivation("laptop1-overlay", "render", {"tag": "1"}), built_locally([]))
    assert overlay.substituted == nginx.url, "the overlay's archive is intact"
    calls: list[Path] = []
    entry = b.realise(drv, built_locally(calls))
    assert len(calls) == 1 and entry.substituted is None and (entry.path / "local").is_file(), "built locally"
    assert lines[1:] == [f"cache {nginx.url}: refused {drv.path_name}: its archive {info.url} does not match the "
                         "metadata's FileHash (altered or damaged)"]


def test_a_corrupted_archive_is_refused_with_nothing_added(tmp_path: Path, nginx: Nginx, key: SecretKey) -> None:
    a, drv, info = _pushed(tmp_path, nginx.url, key)
    path = nginx.root / info.url
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    b, lines = store_b(tmp_path, nginx.url, key, only=True)
    with pytest.raises(ImagegenError, match="--substitute-only"):
        b.realise(drv, lambda out: pytest.fail("--substitute-only built"))
    assert nothing_added(b) and len(lines) == 1 and f"refused {drv.path_name}" in lines[0]


def test_tampered_metadata_is_refused(tmp_path: Path, nginx: Nginx, key: SecretKey) -> None:
    a, drv, info = _pushed(tmp_path, nginx.url, key)
    # The attacker's archive and metadata agree with each other; only the signature gives them away.
    other = tmp_path / "other"
    other.mkdir()
    (other / "image.raw").write_bytes(b"someone else's image")
    fake = tmp_path / "fake.tar.zst"
    with fake.open("wb") as f:
        packed = pack(other, f)
    (nginx.root / info.url).write_bytes(fake.read_bytes())
    forged = EntryInfo(info.store_path, info.stage, info.url, packed.file_hash, packed.file_size,
                       tree_digest(other)[0], packed.size, info.references, info.report, sigs=info.sigs)
    (nginx.root / info_name(drv.path_name)).write_text(forged.to_text())
    b, lines = store_b(tmp_path, nginx.url, key, only=True)
    with pytest.raises(ImagegenError):
        b.realise(drv, lambda out: pytest.fail("--substitute-only built"))
    assert nothing_added(b)
    assert lines == [f"cache {nginx.url}: refused {drv.path_name}: the signature by ci.test-1 does not verify "
                     "(the metadata was altered or the key is wrong)"]


def test_an_untrusted_key_is_refused(tmp_path: Path, nginx: Nginx, key: SecretKey) -> None:
    a, drv, info = _pushed(tmp_path, nginx.url, key)
    b, lines = store_b(tmp_path, nginx.url, SecretKey.generate("someone-else-1"), only=True)
    with pytest.raises(ImagegenError):
        b.realise(drv, lambda out: pytest.fail("--substitute-only built"))
    assert nothing_added(b)
    assert lines == [f"cache {nginx.url}: refused {drv.path_name}: it is signed by ci.test-1, not by a trusted key"]


def test_a_server_that_dies_mid_download_is_refused(tmp_path: Path, dying_server, key: SecretKey) -> None:  # type: ignore[no-untyped-def]
    root, server = dying_server
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    push(a, [entry_of(a, chain.image)], f"file://{root}", key, include_secrets=True, say=lambda _: None)
    b, lines = store_b(tmp_path, server.url, key)
    Store(b.root).realise(chain.overlay, built_locally([]))  # the local build needs its input
    calls: list[Path] = []
    entry = b.realise(chain.image, built_locally(calls))
    assert any("/archive/" in hit for hit in server.hits), "the download was started"
    assert len(calls) == 1 and entry.substituted is None, "the build went on locally"
    assert len(lines) == 1 and lines[0].startswith(f"cache {server.url}: refused {chain.image.path_name}: ")
    assert "broke off" in lines[0], lines[0]
    assert sorted(p.name for p in b.root.iterdir() if "-image" in p.name and not p.name.endswith(".lock")) == [
        chain.image.path_name, chain.image.path_name + ".json"], "only the local build, no temporaries"


def _push_command(store: Path, ref: str, url: str, key_file: Path) -> list[str]:
    code = "import sys; from imagegen.cli import app; sys.argv[0] = 'imagegen'; app()"
    return [sys.executable, "-c", code, "push", ref, "--to", url, "--key", str(key_file), "--include-secrets",
            "--store", str(store)]


@pytest.mark.parametrize("where", ["nginx", "directory"])
def test_concurrent_pushes_leave_one_intact_copy(tmp_path: Path, nginx: Nginx, key: SecretKey, where: str) -> None:
    a = Store(tmp_path / "a")
    chain = make_chain(a)
    url, root = (nginx.url, nginx.root) if where == "nginx" else (f"file://{tmp_path}/cache", tmp_path / "cache")
    key_file = tmp_path / "key.secret"
    key_file.write_text(key.to_text())
    key_file.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ref = str(entry_of(a, chain.verdict).path)
    procs = [subprocess.Popen(_push_command(a.root, ref, url, key_file), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sorted(p.name for p in root.glob("*.entryinfo")) == sorted(info_name(d.path_name)
                                                                      for d in chain.derivations())
    assert len(list((root / "archive").iterdir())) == 3, "one archive per entry, no temporaries"
    b, lines = store_b(tmp_path, url, key, only=True)
    for drv in chain.derivations():
        entry = b.realise(drv, lambda out: pytest.fail("built"))
        assert tree_digest(entry.path) == tree_digest(entry_of(a, drv).path)


def test_a_busy_server_is_asked_again_and_a_dead_one_given_up_on(busy_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                 key: SecretKey) -> None:
    url, sent = busy_server
    assert transport_for(url).read("imagegen-cache-info", 1024) == b"Format: imagegen-cache-1\n"
    assert sent == [503, 503, 200], "retried with back-off until it answered"
    dead = f"http://127.0.0.1:{free_port()}/cache"
    quick = Retry(attempts=3, backoff=0.01)
    with pytest.raises(CacheError, match=r"cannot connect .*\(3 attempts\)"):
        transport_for(dead, quick).exists("x.entryinfo")
    lines: list[str] = []
    b = Store(tmp_path / "b", CacheSubstituter((dead,), (key.public(),), lines.append, retry=quick))
    calls: list[Path] = []
    b.realise(Derivation("laptop1-overlay", "render", {"tag": "1"}), built_locally(calls))
    assert len(calls) == 1 and len(lines) == 1 and lines[0].startswith(f"cache {dead}: skipped: ")


class _Scripted:
    """An HTTP server on 127.0.0.1 that answers GET after a delay and PUT with the codes it is given, in turn;
    it records the PUTs' codes and bodies."""

    def __init__(self, get_delay: float = 0.0, put_codes: tuple[int, ...] = (201,)) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.puts: list[tuple[int, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                import time

                time.sleep(get_delay)
                body = b"Format: imagegen-cache-1\n"
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as it should

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = put_codes[min(len(outer.puts), len(put_codes) - 1)]
                outer.puts.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cache"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_a_server_slower_than_the_timeout_is_given_up_on_and_the_build_goes_on(
        tmp_path: Path, key: SecretKey, monkeypatch: pytest.MonkeyPatch) -> None:
    import imagegen.cache.transport as transport

    monkeypatch.setattr(transport, "IO_TIMEOUT", 0.3)
    slow = _Scripted(get_delay=1.0)
    try:
        quick = Retry(attempts=2, backoff=0.01)
        with pytest.raises(CacheError, match=r"/imagegen-cache-info: timed out \(2 attempts\)"):
            transport_for(slow.url, quick).read("imagegen-cache-info", 1024)
        lines: list[str] = []
        b = Store(tmp_path / "b", CacheSubstituter((slow.url,), (key.public(),), lines.append, retry=quick))
        calls: list[Path] = []
        b.realise(Derivation("laptop1-overlay", "render", {"tag": "1"}), built_locally(calls))
        assert len(calls) == 1, "the build went on locally"
        assert len(lines) == 1 and lines[0].startswith(f"cache {slow.url}: skipped: ") and "timed out" in lines[0]
    finally:
        slow.close()


def test_a_put_the_server_is_too_busy_for_is_sent_again_after_growing_delays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import imagegen.cache.transport as transport

    delays: list[float] = []
    monkeypatch.setattr(transport.time, "sleep", delays.append)
    busy = _Scripted(put_codes=(503, 503, 201))
    try:
        transport_for(busy.url).write("x.entryinfo", b"signed metadata\n")
        assert [code for code, _ in busy.puts] == [503, 503, 201]
        assert all(body == b"signed metadata\n" for _, body in busy.puts), "every attempt sent the whole file"
        assert delays == [Retry().backoff, 2 * Retry().backoff], "the back-off doubles"
    finally:
        busy.close()
