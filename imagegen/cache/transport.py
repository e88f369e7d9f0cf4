"""Reading and writing a cache: HTTP(S) (GET, HEAD, PUT, as nginx's WebDAV module or an object store
gateway speaks it) or a local directory (file://, e.g. an NFS share).

Every upload is whole or absent: over HTTP the server renames a completed PUT into place (nginx
does), in a directory the file is written beside its final name and renamed. Requests that fail on
the way (connection refused, reset, timed out, 5xx, 429) are tried again with growing pauses;
a download that breaks off after its first byte is not, since what was read is already unpacked —
the caller refuses the entry and goes on without it.
"""

from __future__ import annotations

import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import httpx

from imagegen.errors import UsageError

T = TypeVar("T")

# Seconds: connecting, and waiting for the next bytes of an answer or the server taking ours.
CONNECT_TIMEOUT = 10.0
IO_TIMEOUT = 60.0


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    backoff: float = 0.5  # seconds before the second attempt; doubled for each one after

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK = 1 << 20


class CacheError(Exception):
    """A cache could not be read or written; the message names the URL and why."""


class Transport(Protocol):
    url: str

    def exists(self, name: str) -> bool: ...
    def read(self, name: str, limit: int) -> bytes | None: ...
    def open(self, name: str) -> AbstractContextManager[BinaryIO]: ...
    def write(self, name: str, source: Path | bytes) -> None: ...


def transport_for(url: str, retry: Retry = Retry()) -> Transport:
    """The transport for a cache URL: http://, https:// or file:// (a directory)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # URLs are printed (every refusal names one); a password in one would land in CI logs.
        raise UsageError(f"cache URL {parts.scheme}://…@{parts.hostname}: credentials in a URL would be printed",
                         f"put them in ~/.netrc (machine {parts.hostname} login USER password PASS)")
    if parts.scheme in ("http", "https") and parts.netloc:
        return HttpTransport(url.rstrip("/"), retry)
    if parts.scheme == "file" and parts.path and parts.netloc in ("", "localhost"):
        return DirectoryTransport(url.rstrip("/"), Path(urllib.parse.unquote(parts.path)))
    raise UsageError(f"cache URL {url!r} is not http://, https:// or file:///DIR",
                     "write e.g. https://cache.example.org/imagegen or file:///srv/imagegen-cache")


def _retrying(url: str, retry: Retry, call: Callable[[], T]) -> T:
    delay = retry.backoff
    for attempt in range(1, retry.attempts + 1):
        try:
            return call()
        except (httpx.TransportError, _Retry) as e:
            if attempt == retry.attempts:
                raise CacheError(f"{url}: {_reason(e)} ({retry.attempts} attempts)") from e
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class _Retry(Exception):
    """A status worth asking again for (the server is busy or restarting)."""


def _reason(e: BaseException) -> str:
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect ({e})"
    return str(e) or type(e).__name__


@dataclass
class HttpTransport:
    url: str
    retry: Retry = Retry()
    _session: httpx.Client | None = field(default=None, repr=False, compare=False)

    def _client(self) -> httpx.Client:
        # One connection pool per cache: a substitution is a handful of requests to one server.
        if self._session is None:
            timeout = httpx.Timeout(IO_TIMEOUT, connect=CONNECT_TIMEOUT)
            self._session = httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True)
        return self._session

    def _check(self, response: httpx.Response, name: str) -> None:
        if response.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {response.status_code} for {name}")
        if response.status_code >= 400:
            raise CacheError(f"{self.url}/{name}: HTTP {response.status_code} {response.reason_phrase}")

    def exists(self, name: str) -> bool:
        def head() -> bool:
            response = self._client().head(f"{self.url}/{name}")
            if response.status_code == 404:
                return False
            self._check(response, name)
            return True
        return _retrying(f"{self.url}/{name}", self.retry, head)

    def read(self, name: str, limit: int) -> bytes | None:
        """A small file, or None if the cache has none by that name."""
        def get() -> bytes | None:
            with self._client().stream("GET", f"{self.url}/{name}") as response:
                if response.status_code == 404:
                    return None
                self._check(response, name)
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise CacheError(f"{self.url}/{name}: larger than {limit} bytes")
                return data
        return _retrying(f"{self.url}/{name}", self.retry, get)

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """A stream of a file's bytes; raises CacheError if it is missing or breaks off."""
        client = self._client()

        def start() -> httpx.Response:
            response = client.send(client.build_request("GET", f"{self.url}/{name}"), stream=True)
            if response.status_code >= 400:
                response.close()
                if response.status_code == 404:
                    raise CacheError(f"{self.url}/{name}: not found (HTTP 404)")
                self._check(response, name)
            return response

        response = _retrying(f"{self.url}/{name}", self.retry, start)
        try:
            yield _ResponseReader(self.url, name, response.iter_bytes(_CHUNK))  # type: ignore[misc]
        finally:
            response.close()

    def write(self, name: str, source: Path | bytes) -> None:
        def put() -> None:
            client = self._client()
            if isinstance(source, bytes):
                response = client.put(f"{self.url}/{name}", content=source)
            else:
                with source.open("rb") as f:
                    response = client.put(f"{self.url}/{name}", content=_file_chunks(f),
                                          headers={"Content-Length": str(source.stat().st_size)})
            self._check(response, name)
        _retrying(f"{self.url}/{name}", self.retry, put)


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


class _ResponseReader:
    """A file-like read() over an HTTP body; a body cut short raises CacheError, never a short file."""

    def __init__(self, url: str, name: str, chunks: Iterator[bytes]) -> None:
        self.where = f"{url}/{name}"
        self.chunks = chunks
        self.chunk = b""
        self.offset = 0
        self.count = 0

    def _next(self) -> bool:
        try:
            self.chunk = next(self.chunks)
        except StopIteration:
            return False
        except httpx.HTTPError as e:
            raise CacheError(f"{self.where}: the download broke off after {self.count} bytes ({_reason(e)})") from e
        self.offset = 0
        self.count += len(self.chunk)
        return True

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size if size >= 0 else float("inf")
        got = 0
        while got < wanted:
            if self.offset >= len(self.chunk) and not self._next():
                break
            take = int(min(wanted - got, len(self.chunk) - self.offset))
            parts.append(self.chunk[self.offset : self.offset + take])
            self.offset += take
            got += take
        return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass
class DirectoryTransport:
    url: str
    root: Path

    def _path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def read(self, name: str, limit: int) -> bytes | None:
        try:
            with self._path(name).open("rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(f"{self.url}/{name}: {e.strerror}") from e
        if len(data) > limit:
            raise CacheError(f"{self.url}/{name}: larger than {limit} bytes")
        return data

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        try:
            f = self._path(name).open("rb")
        except OSError as e:
            raise CacheError(f"{self.url}/{name}: {e.strerror}") from e
        with f:
            yield f

    def write(self, name: str, source: Path | bytes) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
            try:
                with tmp.open("xb") as out:
                    if isinstance(source, bytes):
                        out.write(source)
                    else:
                        with source.open("rb") as f:
                            while chunk := f.read(_CHUNK):
                                out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                # Readable by everyone who may read the directory: the directory decides who.
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as e:
            raise CacheError(f"{self.url}/{name}: {e.strerror}") from e
