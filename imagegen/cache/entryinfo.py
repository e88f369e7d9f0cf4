"""An entry's metadata in a cache: `Key: value` lines, like Nix's .narinfo.

    StorePath: <hash>-laptop-image
    Stage: build
    URL: archive/<sha256 of the file>.tar.zst
    Compression: zstd
    FileHash: sha256:<hex>        the archive file as uploaded
    FileSize: <bytes>
    Hash: sha256:<hex>            the entry's tree (the store's tree_digest), checked after unpacking
    Size: <bytes>                 the uncompressed tar stream; more is refused while unpacking
    References: <path name> ...   the entries it was built from
    Report: {...}                 what the stage's builder returned, canonical JSON
    Sig: <key name>:<base64>      one line per signing key

The signature covers fingerprint(): the store path, the tree digest, the size, the sorted references
and a digest of the report, so nothing a client keeps can be altered without breaking it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from imagegen.store.entry import ENTRY_NAME
from imagegen.store.hashing import canonical_json

SUFFIX = ".entryinfo"
INFO_FILE = "imagegen-cache-info"
FORMAT = "imagegen-cache-1"
COMPRESSION = "zstd"
# No entry's metadata comes near this; a larger answer is not metadata.
MAX_BYTES = 1 << 20

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_URL = re.compile(r"archive/[0-9a-f]{64}\.tar\.zst")
_STAGE = re.compile(r"[a-z][a-z0-9-]{0,31}")


class InfoError(Exception):
    """The metadata file is not one imagegen wrote."""


def info_name(path_name: str) -> str:
    """The metadata file of an entry: named by its hash, as Nix names .narinfo files."""
    return path_name[:32] + SUFFIX


def archive_name(file_hash: str) -> str:
    return f"archive/{file_hash.removeprefix('sha256:')}.tar.zst"


def cache_info_text() -> str:
    return f"Format: {FORMAT}\nCompression: {COMPRESSION}\n"


@dataclass(frozen=True)
class EntryInfo:
    store_path: str
    stage: str
    url: str
    file_hash: str
    file_size: int
    hash: str
    size: int
    references: tuple[str, ...]
    report: Any
    compression: str = COMPRESSION
    sigs: tuple[str, ...] = ()

    def fingerprint(self) -> bytes:
        report = hashlib.sha256(canonical_json(self.report).encode()).hexdigest()
        refs = ",".join(sorted(self.references))
        return f"{FORMAT};{self.store_path};{self.hash};{self.size};{refs};sha256:{report}".encode()

    def signed(self, sig: str) -> EntryInfo:
        return replace(self, sigs=(*self.sigs, sig))

    def to_text(self) -> str:
        lines = [
            f"StorePath: {self.store_path}",
            f"Stage: {self.stage}",
            f"URL: {self.url}",
            f"Compression: {self.compression}",
            f"FileHash: {self.file_hash}",
            f"FileSize: {self.file_size}",
            f"Hash: {self.hash}",
            f"Size: {self.size}",
            f"References: {' '.join(self.references)}",
            f"Report: {canonical_json(self.report)}",
            *(f"Sig: {sig}" for sig in self.sigs),
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> EntryInfo:
        fields: dict[str, str] = {}
        sigs: list[str] = []
        for number, line in enumerate(text.splitlines(), 1):
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":") and line[:-1].isalnum():
                    key, value = line[:-1], ""
                else:
                    raise InfoError(f"line {number} is not `Key: value`")
            if key == "Sig":
                sigs.append(value)
            elif key in fields:
                raise InfoError(f"{key} is given twice")
            else:
                fields[key] = value
        return cls._from_fields(fields, tuple(sigs))

    @classmethod
    def _from_fields(cls, fields: Mapping[str, str], sigs: tuple[str, ...]) -> EntryInfo:
        def need(key: str, pattern: re.Pattern[str] | None = None) -> str:
            if key not in fields:
                raise InfoError(f"it has no {key}")
            value = fields[key]
            if pattern is not None and not pattern.fullmatch(value):
                raise InfoError(f"{key} {value!r} is malformed")
            return value

        def number(key: str) -> int:
            value = need(key)
            if not value.isdigit():
                raise InfoError(f"{key} {value!r} is not a number")
            return int(value)

        references = tuple(fields.get("References", "").split())
        for ref in references:
            if not ENTRY_NAME.fullmatch(ref):
                raise InfoError(f"reference {ref!r} is not a store path name")
        try:
            report = json.loads(need("Report"))
        except json.JSONDecodeError as e:
            raise InfoError(f"Report is not JSON ({e.msg})") from None
        if need("Compression") != COMPRESSION:
            raise InfoError(f"Compression {fields['Compression']!r} is not {COMPRESSION}")
        return cls(
            store_path=need("StorePath", ENTRY_NAME), stage=need("Stage", _STAGE), url=need("URL", _URL),
            file_hash=need("FileHash", _SHA256), file_size=number("FileSize"), hash=need("Hash", _SHA256),
            size=number("Size"), references=references, report=report, sigs=sigs,
        )
