"""Uploading store entries, with the entries they were built from, to a cache.

Each entry: HEAD its metadata (present: skip), pack it into a temporary file, upload the archive
(unless a byte-identical one is there), then the signed metadata, last — until that lands the
entry is not in the cache, so a push cut short leaves at most an archive nobody refers to.
Entries that hold secrets go only with include_secrets.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from imagegen.cache.archive import pack
from imagegen.cache.entryinfo import INFO_FILE, EntryInfo, archive_name, cache_info_text, info_name
from imagegen.cache.signing import SecretKey
from imagegen.cache.transport import transport_for
from imagegen.errors import UsageError
from imagegen.profile import load_profiles
from imagegen.stages.realise import planned_image
from imagegen.store import Entry, Store
from imagegen.store.hashing import tree_digest, walk_tree
from imagegen.store.treediff import secret_kind


@dataclass(frozen=True)
class Pushed:
    entry: str
    outcome: str  # "pushed", "present" or "refused"
    detail: str = ""
    file_size: int = 0
    size: int = 0
    seconds: float = 0.0


def stage_of(entry: Entry) -> str:
    return str(entry.metadata()["derivation"]["stage"])


def resolve_refs(store: Store, refs: Iterable[str]) -> list[Entry]:
    """The entries named by store paths, path names, result links, or profiles (a.toml, base.toml+kiosk.toml:
    whatever the store holds of it — overlays, images and the verdicts of its lab image)."""
    found: list[Entry] = []
    for ref in refs:
        parts = [Path(p) for p in ref.split("+")]
        if all(p.suffix == ".toml" for p in parts):
            entries = _profile_entries(store, parts, ref)
        else:
            entries = [store.get(ref)]
        found.extend(e for e in entries if e not in found)
    return found


def _profile_entries(store: Store, files: list[Path], ref: str) -> list[Entry]:
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise UsageError(f"push: profile {missing[0]} does not exist", "pass existing profile files")
    loaded = load_profiles(files)
    images = [planned_image(store, loaded, lab=lab) for lab in (False, True)]
    present = [e for e in images if store.is_complete(e.path_name)]
    names = {e.path_name for e in present}
    verdicts = [e for e in store.entries() if stage_of(e) == "test" and names & set(e.references)]
    if not present:
        raise UsageError(f"push: nothing of {ref} is in the store {store.root}",
                         "build or test it first (imagegen build / imagegen test)")
    return present + verdicts


def closure(store: Store, entries: Iterable[Entry]) -> list[Entry]:
    """The entries and everything they refer to that the store holds, each after what it refers to; held."""
    ordered: list[Entry] = []
    seen: set[str] = set()

    def visit(entry: Entry) -> None:
        if entry.path_name in seen:
            return
        seen.add(entry.path_name)
        # Held while it is packed and uploaded: gc must not take an entry half-way through its archive.
        held = store.hold(entry.path_name)
        if held is None:
            return
        for ref in held.references:
            if store.is_complete(ref):
                visit(Entry(store.root / ref))
        ordered.append(held)

    for entry in entries:
        visit(entry)
    return ordered


def secret_reason(store: Store, entry: Entry) -> str | None:
    """Why an entry holds secrets (None: it does not): a secret file in its tree, or for an image,
    in the overlay it was built from (an image carries its overlay; an image whose overlay is not
    here to look at is taken to hold secrets)."""
    for node, _full in walk_tree(entry.path):
        # The store itself makes the files directly in a private entry 0400 (see fsutil.freeze): only
        # deeper modes are the output's own and say whether a file is secret.
        mode = node.mode if "/" in node.path else 0o644
        if node.kind == "file" and secret_kind(node.path, mode):
            return f"it holds {node.path}"
    if stage_of(entry) == "build":
        for ref in entry.references:
            if not store.is_complete(ref):
                return f"it is built from {ref}, which is not here to prove it holds no secret"
            reason = secret_reason(store, Entry(store.root / ref))
            if reason is not None:
                return f"it is built from {ref}, and {reason}"
    return None


def push(
    store: Store, entries: list[Entry], url: str, key: SecretKey, *, include_secrets: bool = False,
    say: Callable[[str], None] = print,
) -> list[Pushed]:
    """Upload entries and their closure to the cache at url, signed with key; one Pushed per entry."""
    transport = transport_for(url)
    results = []
    if not transport.exists(INFO_FILE):
        transport.write(INFO_FILE, cache_info_text().encode())
    for entry in closure(store, entries):
        name = entry.path_name
        if transport.exists(info_name(name)):
            results.append(Pushed(name, "present"))
            say(f"already in {url}: {name}")
            continue
        reason = None if include_secrets else secret_reason(store, entry)
        if reason is not None:
            results.append(Pushed(name, "refused", reason))
            say(f"not pushed: {name}: {reason}; secrets go to a cache only with --include-secrets")
            continue
        started = time.monotonic()
        with tempfile.NamedTemporaryFile(prefix="imagegen-push-", suffix=".tar.zst") as tmp:
            packed = pack(entry.path, tmp)  # type: ignore[arg-type]
            tmp.flush()
            digest, _count = tree_digest(entry.path)
            info = EntryInfo(
                store_path=name, stage=stage_of(entry), url=archive_name(packed.file_hash),
                file_hash=packed.file_hash, file_size=packed.file_size, hash=digest, size=packed.size,
                references=tuple(sorted(entry.references)), report=entry.report,
            )
            info = info.signed(key.sign(info.fingerprint()))
            # The archive is named by its digest: one already there is these very bytes.
            if not transport.exists(info.url):
                transport.write(info.url, Path(tmp.name))
            transport.write(info_name(name), info.to_text().encode())
        seconds = time.monotonic() - started
        results.append(Pushed(name, "pushed", "", packed.file_size, packed.size, seconds))
        ratio = packed.size / packed.file_size if packed.file_size else 0.0
        say(f"pushed {name} to {url} ({packed.file_size / (1 << 20):.1f} MiB, {ratio:.1f}x smaller, "
            f"{seconds:.1f} s)")
    return results
