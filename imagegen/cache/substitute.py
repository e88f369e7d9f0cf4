"""Fetching an entry from the substituters instead of building it, verified before the store keeps it.

For each substituter in order: read `<hash>.entryinfo`; it must name this very derivation (store
path, stage, references) and carry a signature by a trusted key over its fingerprint; then the
archive is streamed, unpacked and hashed at once, and both the file's digest (FileHash) and the
unpacked tree's (Hash) must match. Any failure is one line naming the URL and the reason, the
directory is emptied again, and the next substituter (or the local build) takes over.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from imagegen.cache.archive import ArchiveError, unpack
from imagegen.cache.entryinfo import MAX_BYTES, EntryInfo, InfoError, info_name
from imagegen.cache.signing import PublicKey, check_signatures
from imagegen.cache.transport import CacheError, Retry, Transport, transport_for
from imagegen.errors import ImagegenError
from imagegen.store.derivation import Derivation
from imagegen.store.fsutil import remove_tree
from imagegen.store.hashing import tree_digest
from imagegen.store.substitution import Substituted

# The stages --substitute-only forbids running: those that start mkosi or a VM. Rendering takes
# a fraction of a second and needs the secrets, which a cache without --include-secrets lacks.
COSTLY_STAGES = ("build", "test")


class Refused(Exception):
    """This substituter's copy is not taken; the message says why."""


class _HashingReader:
    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        self.count += len(data)
        return data


@dataclass(frozen=True)
class Fetched:
    info: EntryInfo
    url: str
    seconds: float


@dataclass(frozen=True)
class CacheSubstituter:
    """The store's Substituter for binary caches; `say` prints one line to the person."""

    urls: tuple[str, ...]
    trusted_keys: tuple[PublicKey, ...]
    say: Callable[[str], None]
    only: bool = False  # --substitute-only: a costly stage that no cache has is an error
    retry: Retry = Retry()
    _transports: dict[str, Transport] = field(default_factory=dict, repr=False, compare=False)

    def substitute(self, drv: Derivation, out: Path) -> Substituted | None:
        fetched = self.fetch(drv, out)
        if fetched is not None:
            return Substituted(fetched.info.report, fetched.url)
        if self.only and drv.stage in COSTLY_STAGES:
            where = ", ".join(self.urls) or "no substituter is configured"
            raise ImagegenError(f"{drv.path_name} is not in any substituter ({where}); --substitute-only "
                                f"forbids building it here", "drop --substitute-only, or push it from a runner "
                                "that built it")
        return None

    def fetch(self, drv: Derivation, out: Path) -> Fetched | None:
        """drv's output unpacked into out from the first substituter that has a good copy, or None."""
        for url in self.urls:
            started = time.monotonic()
            try:
                info = self._fetch(url, drv, out)
            except Refused as e:
                self.say(f"cache {url}: refused {drv.path_name}: {e}")
                _empty(out)
                continue
            except CacheError as e:
                self.say(f"cache {url}: skipped: {e}")
                _empty(out)
                continue
            if info is not None:
                seconds = time.monotonic() - started
                self.say(f"substituted {drv.path_name} from {url} ({_mib(info.file_size)} in {seconds:.1f} s)")
                return Fetched(info, url, seconds)
        return None

    def _fetch(self, url: str, drv: Derivation, out: Path) -> EntryInfo | None:
        if url not in self._transports:
            self._transports[url] = transport_for(url, self.retry)
        transport = self._transports[url]
        data = transport.read(info_name(drv.path_name), MAX_BYTES)
        if data is None:
            return None
        try:
            info = EntryInfo.parse(data.decode())
        except (InfoError, UnicodeDecodeError) as e:
            raise Refused(f"its metadata is malformed ({e})") from None
        if info.store_path != drv.path_name:
            raise Refused(f"its metadata is for {info.store_path}")
        if info.stage != drv.stage or tuple(sorted(info.references)) != drv.references:
            raise Refused("its metadata's stage or references are not the derivation's")
        reason = check_signatures(info.sigs, info.fingerprint(), self.trusted_keys)
        if reason is not None:
            raise Refused(reason)
        try:
            with transport.open(info.url) as stream:
                reader = _HashingReader(stream)
                unpack(reader, out, info.size)  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass  # whatever follows the tar's end still counts towards the file's digest
        except ArchiveError as e:
            raise Refused(f"its archive {info.url}: {e}") from None
        except CacheError as e:
            raise Refused(str(e)) from None
        if reader.count != info.file_size or f"sha256:{reader.sha256.hexdigest()}" != info.file_hash:
            raise Refused(f"its archive {info.url} does not match the metadata's FileHash (altered or damaged)")
        digest, _count = tree_digest(out)
        if digest != info.hash:
            raise Refused("the unpacked tree does not match the metadata's Hash (altered or damaged)")
        return info


def _empty(directory: Path) -> None:
    for child in list(directory.iterdir()):
        remove_tree(child)


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"
