"""Fixtures of the binary cache tests: keys, synthetic store entries, a real nginx with WebDAV PUT, and an
HTTP server that dies half-way through every archive it sends."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imagegen.cache.signing import SecretKey
from imagegen.store import Derivation, Entry, Store
from imagegen.store.private import KEY, MARKER


@pytest.fixture(autouse=True)
def no_user_cache_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the cache settings it makes, never the machine's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("IMAGEGEN_CACHE_CONFIG", "IMAGEGEN_SUBSTITUTERS", "IMAGEGEN_TRUSTED_KEYS",
                 "IMAGEGEN_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key() -> SecretKey:
    return SecretKey.generate("ci.test-1")


@dataclass(frozen=True)
class Chain:
    """Three entries as the stages make them: overlay <- image <- verdict, and their derivations."""

    overlay: Derivation
    image: Derivation
    verdict: Derivation

    def derivations(self) -> tuple[Derivation, Derivation, Derivation]:
        return self.overlay, self.image, self.verdict


def make_chain(store: Store, tag: str = "1") -> Chain:
    """Realise a synthetic overlay (with a 0600 key and a PSK), an image (a sparse-ish raw file) and a verdict."""

    def overlay(out: Path) -> dict[str, object]:
        (out / "etc/wpa_supplicant").mkdir(parents=True)
        (out / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").write_text('network={\n psk="secret-psk"\n}\n')
        (out / "etc/wide-dhcpv6").mkdir()
        key = out / "etc/wide-dhcpv6/dhcp6cctlkey"
        key.write_text("c2VjcmV0a2V5\n")
        os.chmod(key, 0o600)
        (out / "etc/hostname").write_text(f"laptop{tag}\n")
        os.symlink("/lib/systemd/system/x.service", out / "etc/x.service")
        os.link(out / "etc/hostname", out / "etc/hostname.link")
        return {"entries": 5}

    overlay_drv = Derivation(f"laptop{tag}-overlay", "render", {"tag": tag})
    overlay_entry = store.realise(overlay_drv, overlay)

    def image(out: Path) -> dict[str, object]:
        with (out / "image.raw").open("wb") as f:
            f.write(os.urandom(64 << 10))
            f.seek(16 << 20)
            f.write(b"end of disk")
        (out / "manifest.json").write_text('{"packages": []}\n')
        return {"packages": 0, "mkosi_seconds": 1.0}

    image_drv = Derivation(f"laptop{tag}-image", "build", {"overlay": overlay_entry})
    image_entry = store.realise(image_drv, image)

    def verdict(out: Path) -> dict[str, object]:
        (out / "verdict.json").write_text('{"passed": true, "scenarios": []}\n')
        return {"passed": True, "scenarios": {}}

    verdict_drv = Derivation(f"laptop{tag}-verdict", "test", {"image": image_entry})
    store.realise(verdict_drv, verdict)
    return Chain(overlay_drv, image_drv, verdict_drv)


def entry_of(store: Store, drv: Derivation) -> Entry:
    entry = store.lookup(drv)
    assert entry is not None
    return entry


def nothing_added(store: Store) -> bool:
    """No entry, no metadata and no temporary left in store (lock files, the store's marker and key may stay)."""
    if not store.root.exists():
        return True
    return all(p.name.endswith(".lock") or p.name in (MARKER, KEY) for p in store.root.iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# The package the test recipe installs for these tests.
NGINX_PACKAGE = "nginx"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class Nginx:
    url: str
    root: Path  # what it serves: the cache's files as PUT left them


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """nginx on 127.0.0.1 with WebDAV PUT into a temporary root, stopped at the end of the test."""
    if nginx_binary() is None:
        pytest.skip(f"nginx is not installed (apt-get install {NGINX_PACKAGE})")
    with serve_nginx(tmp_path / "nginx") as server:
        yield server


@contextmanager
def serve_nginx(base: Path) -> Iterator[Nginx]:
    """Start nginx on a free port of 127.0.0.1, its configuration, logs and files under base; stop it after."""
    binary = nginx_binary()
    assert binary is not None, f"nginx is not installed (apt-get install {NGINX_PACKAGE})"
    root = base / "root"
    for sub in ("root", "body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (base / sub).mkdir(parents=True)
    port = free_port()
    # As root the master would hand the workers to nobody, who may not write the test's directories.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    conf = base / "nginx.conf"
    conf.write_text(f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {base}/logs/access.log;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        location / {{
            dav_methods PUT DELETE MKCOL;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
""")
    proc = subprocess.Popen([binary, "-p", str(base), "-c", str(conf), "-e", str(base / "logs/error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(port, proc)
        yield Nginx(f"http://127.0.0.1:{port}/cache", root / "cache")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def busy_server() -> Iterator[tuple[str, list[int]]]:
    """An HTTP server on 127.0.0.1 whose GETs answer 503 twice, then 200 with a body; the codes sent are listed."""
    sent: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            code = 503 if len(sent) < 2 else 200
            sent.append(code)
            body = b"Format: imagegen-cache-1\n" if code == 200 else b""
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sent
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class DyingServer:
    url: str
    hits: list[str]


@pytest.fixture
def dying_server(tmp_path: Path) -> Iterator[tuple[Path, DyingServer]]:
    """An HTTP server on 127.0.0.1 over a directory: metadata whole, every archive cut off half-way
    (the full Content-Length announced, half the body sent, the connection closed)."""
    root = tmp_path / "dying"
    root.mkdir()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _file(self) -> Path | None:
            path = root / self.path.lstrip("/").removeprefix("cache/")
            return path if path.is_file() and root in path.resolve().parents else None

        def do_HEAD(self) -> None:
            path = self._file()
            self.send_response(200 if path else 404)
            self.send_header("Content-Length", str(path.stat().st_size if path else 0))
            self.end_headers()

        def do_GET(self) -> None:
            hits.append(self.path)
            path = self._file()
            if path is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if "/archive/" in self.path:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, DyingServer(f"http://127.0.0.1:{server.server_address[1]}/cache", hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
