"""The store: a directory of read-only entries named `<hash>-<name>`, one per derivation.

Layout of the store root:

    .imagegen-store         the marker: imagegen made this root (mode 0700)
    .key                    the store's key (mode 0600), for digests of secrets in its records
    <hash>-<name>/          an entry: the stage's output, read-only once complete (0500 when private),
                            flock'ed shared by every process using it, exclusive by gc
    <hash>-<name>.json      its metadata; written last, so its presence marks the entry complete
    <hash>-<name>.lock      flock'ed while the entry is built, replaced or collected
    .tmp-<token>-<...>      work in progress; stale once the matching lock is free
    gcroots/                symlinks to out-links (`result-<host>`) that keep entries alive
    profiles/<host>/        that host's generations, one JSON file each
    unchanged/              records of finished builds, for no-op builds (stages/unchanged.py; 0600)
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagegen.errors import ImagegenError, UsageError
from imagegen.store import gc as _gc
from imagegen.store import generations as _generations
from imagegen.store import roots as _roots
from imagegen.store.derivation import Derivation
from imagegen.store.entry import ENTRY_NAME, Entry
from imagegen.store.fsutil import copy_out, disk_usage, freeze, remove_tree
from imagegen.store.hashing import check_json, keyed_digest
from imagegen.store.lock import EntryLock, TreeHold
from imagegen.store.private import ensure_root, store_key
from imagegen.store.substitution import Substituter

ENV_VAR = "IMAGEGEN_STORE"
TMP_PREFIX = ".tmp-"
_TOKEN_LEN = 8

Builder = Callable[[Path], Mapping[str, Any] | None]


def resolve_store_root(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """Where the store lives: `--store DIR`, else $IMAGEGEN_STORE, else the user's cache directory.

    The cache directory is $XDG_CACHE_HOME/imagegen/store when XDG_CACHE_HOME is absolute (the
    XDG rule), else ~/.cache/imagegen/store. Relative paths are taken from the working directory.
    """
    if explicit is not None and os.fspath(explicit) != "":
        return Path(explicit).absolute()
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR]).absolute()
    cache = environ.get("XDG_CACHE_HOME", "")
    if cache and Path(cache).is_absolute():
        return Path(cache) / "imagegen" / "store"
    home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return Path(home) / ".cache" / "imagegen" / "store"


class Store:
    """A store rooted at one directory; created on first write.

    Besides the directory, a Store holds only the shared locks of the entries it handed out (see
    hold()), which keep them from gc until the Store and those entries are gone, or the process ends.

    substituter: where realise() looks for an entry before building it (a binary cache).
    """

    def __init__(self, root: Path, substituter: Substituter | None = None) -> None:
        self.root = Path(root).absolute()
        self.substituter = substituter
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"store {self.root} is not a directory", "pass another --store DIR")
        self._holds: dict[str, TreeHold] = {}

    def ensure_root(self) -> None:
        """Create the root (mode 0700, marker, key) before the first write; see private.ensure_root."""
        ensure_root(self.root)

    def keyed_digest(self, value: Any) -> str:
        """A digest of value keyed by the store's key, for secret material in the store's own records."""
        self.ensure_root()
        key = store_key(self.root)
        assert key is not None
        return keyed_digest(key, value)

    def known_digest(self, value: Any) -> str | None:
        """keyed_digest(value) if the store has a key already, else None; never writes."""
        key = store_key(self.root)
        return keyed_digest(key, value) if key is not None else None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- looking up -----------------------------------------------------------------------------

    def path_of(self, drv: Derivation) -> Path:
        """Where drv's entry lives (or will), whether or not it exists."""
        return self.root / drv.path_name

    def is_complete(self, path_name: str) -> bool:
        return (self.root / path_name).is_dir() and (self.root / f"{path_name}.json").is_file()

    def lookup(self, drv: Derivation) -> Entry | None:
        """drv's entry if it is complete, held for this process (see hold()), else None; never builds."""
        return self.hold(drv.path_name)

    def get(self, ref: str | os.PathLike[str]) -> Entry:
        """The entry named by a path name (`<hash>-<name>`), a store path, or an out-link to one; held."""
        text = os.fspath(ref)
        if ENTRY_NAME.fullmatch(text) and (entry := self.hold(text)) is not None:
            return entry
        path = Path(os.path.realpath(text))
        if path.parent == Path(os.path.realpath(self.root)) and ENTRY_NAME.fullmatch(path.name):
            if (entry := self.hold(path.name)) is not None:
                return entry
        raise UsageError(f"{text} is not an entry of the store {self.root}", "pass a result link or store path")

    def hold(self, path_name: str, *, reused: bool = True) -> Entry | None:
        """The complete entry path_name, with a shared lock that keeps gc from it while in use; else None.

        The lock is a temporary GC root: it lasts as long as this Store or the returned Entry, at most
        as long as the process. Waits only while gc is deleting that very entry (then returns None).
        """
        held = self._holds.get(path_name)
        if held is None or not held.is_current():
            if not self.is_complete(path_name):
                return None
            held = TreeHold.take(self.root / path_name, shared=True)
            if held is None:
                return None
            self._holds[path_name] = held
        if not self.is_complete(path_name):
            return None
        return Entry(self.root / path_name, reused=reused, hold=held)

    def drop_hold(self, path_name: str) -> None:
        """Release this Store's own hold on path_name (gc run by the process that holds it)."""
        held = self._holds.pop(path_name, None)
        if held is not None:
            held.release()

    def entries(self) -> list[Entry]:
        """All complete entries, by path name."""
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if ENTRY_NAME.fullmatch(p.name))
        return [Entry(self.root / n) for n in names if self.is_complete(n)]

    # -- building -------------------------------------------------------------------------------

    def realise(
        self,
        drv: Derivation,
        builder: Builder,
        *,
        force: bool = False,
        on_wait: Callable[[], None] | None = None,
        private: bool = True,
    ) -> Entry:
        """Return drv's entry, building it with builder(out_dir) only if it is not complete yet.

        builder gets an empty directory inside the store, fills it, and returns a JSON-able
        report (or None) kept in the metadata. The output is frozen read-only and renamed into
        place before the metadata is written, so a crash at any point leaves nothing that looks
        complete. A second process realising the same derivation waits on the entry's lock
        (on_wait is called once when it has to) and then reuses the entry.
        force rebuilds even a complete entry and swaps the new one in (e.g. to re-run tests);
        if the builder fails the old entry stays.
        private (the default): the output may hold secrets, so only its owner may enter it (see
        fsutil.freeze); pass False only for outputs that hold none.
        The returned entry, and every entry drv refers to, is held (see hold()) from here on.
        The substituter, if any, is asked before the builder runs (never with force); what it brings
        is committed like a build, its origin recorded as the metadata's substituted_from.
        """
        entry = self._realise(drv, builder, force, on_wait, private)
        assert entry is not None
        return entry

    def substitute(self, drv: Derivation) -> Entry | None:
        """drv's entry if it is complete or the substituter supplies it; never builds.

        A substituted entry may arrive without the entries it refers to (a verdict without its image)."""
        if (found := self.hold(drv.path_name)) is not None:
            return found
        return self._realise(drv, None, False, None, True) if self.substituter is not None else None

    def _realise(
        self, drv: Derivation, builder: Builder | None, force: bool, on_wait: Callable[[], None] | None,
        private: bool,
    ) -> Entry | None:
        target = self.path_of(drv)
        # The inputs are in use for as long as this build runs (and after): gc must not take them.
        inputs = [self.hold(ref) for ref in drv.references]
        missing = [ref for ref, held in zip(drv.references, inputs, strict=True) if held is None]
        substituter = None if force else self.substituter
        if missing and substituter is None:
            self._refuse_missing(drv, missing)
        if not force and (found := self.hold(drv.path_name)) is not None:
            return found
        self.ensure_root()
        lock = EntryLock(self.root / f"{drv.path_name}.lock", on_wait)
        lock.acquire()
        try:
            if not force and (found := self.hold(drv.path_name)) is not None:
                return found
            self.clean_stale(held=drv.path_name)
            if not self.is_complete(drv.path_name):
                # Left by a build killed between renaming the output and writing the metadata.
                remove_tree(target)
            work = self.root / f"{TMP_PREFIX}{secrets.token_hex(_TOKEN_LEN // 2)}-{drv.path_name}"
            work.mkdir(mode=0o700)
            try:
                got = substituter.substitute(drv, work) if substituter is not None else None
                if got is not None:
                    report = got.report
                    meta_text = self._build(drv, lambda _out: report, work, private, substituted=got.origin)
                elif builder is None:
                    remove_tree(work)
                    return None
                else:
                    if missing:
                        self._refuse_missing(drv, missing)
                    meta_text = self._build(drv, builder, work, private)
            except BaseException:
                remove_tree(work)
                raise
            # Re-checked at commit: an entry must never name an input that is gone. (A substituted
            # entry may name inputs this store never had: a verdict without its image.)
            gone = [ref for ref, used in zip(drv.references, inputs, strict=True)
                    if used is not None and (used.hold is None or not used.hold.is_current()
                                             or not self.is_complete(ref))]
            if gone:
                remove_tree(work)
                raise ImagegenError(f"{gone[0]}, an input of {drv.name}, left the store while it was built")
            self._commit(target, work, meta_text)
            # Held before the build lock goes, so there is no moment gc could take the new entry.
            self.drop_hold(drv.path_name)
            entry = self.hold(drv.path_name, reused=False)
            assert entry is not None, "a committed entry is complete and gc waits for the build lock"
            return replace(entry, substituted=got.origin) if got is not None else entry
        finally:
            lock.release()

    def _refuse_missing(self, drv: Derivation, missing: list[str]) -> None:
        raise UsageError(
            f"derivation {drv.name} refers to {missing[0]}, which is not in the store {self.root}",
            "realise its inputs in the same store first",
        )

    def _build(
        self, drv: Derivation, builder: Builder, work: Path, private: bool, substituted: str | None = None
    ) -> str:
        started = time.monotonic()
        report = builder(work)
        seconds = time.monotonic() - started
        if work.is_symlink() or not work.is_dir():
            raise ImagegenError(f"the {drv.stage} builder of {drv.name} removed its output directory")
        if report is not None:
            check_json(report, "report")
        meta = {
            "path": drv.path_name,
            "derivation": drv.canonical,
            "references": list(drv.references),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 3),
            "size": disk_usage(work),
            "report": report,
        }
        if substituted is not None:
            meta["substituted_from"] = substituted
        if not private:
            os.chmod(work, 0o755)  # built 0700, so nobody reads a half-written output
        freeze(work, private=private)
        return json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def _commit(self, target: Path, work: Path, meta_text: str) -> None:
        meta_path = target.with_name(target.name + ".json")
        token = secrets.token_hex(_TOKEN_LEN // 2)
        # Replacing (force): stop the old entry looking complete before it goes.
        meta_path.unlink(missing_ok=True)
        old = self.root / f"{TMP_PREFIX}{token}-{target.name}"
        if target.exists():
            os.rename(target, old)
        os.rename(work, target)
        meta_tmp = self.root / f"{TMP_PREFIX}{token}-{target.name}.json"
        with meta_tmp.open("w") as f:
            f.write(meta_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(meta_tmp, 0o444)
        os.rename(meta_tmp, meta_path)
        remove_tree(old)

    def clean_stale(self, held: str | None = None, dry_run: bool = False) -> dict[str, int]:
        """Remove temporary items whose entry lock nobody holds; return {name: bytes freed}.

        `held` names an entry whose lock the caller holds: its temporaries are stale too.
        """
        removed: dict[str, int] = {}
        if not self.root.is_dir():
            return removed
        for item in sorted(self.root.iterdir()):
            if not item.name.startswith(TMP_PREFIX):
                continue
            base = item.name[len(TMP_PREFIX) + _TOKEN_LEN + 1 :].removesuffix(".json")
            lock = None if base == held else EntryLock(self.root / f"{base}.lock")
            try:
                if lock is not None and not lock.acquire(blocking=False):
                    continue  # a live build's work directory
            except UsageError:
                continue  # a link where its lock belongs: not ours to judge
            try:
                removed[item.name] = disk_usage(item)
                if not dry_run:
                    remove_tree(item)
            finally:
                if lock is not None:
                    lock.release()
        return removed

    # -- using entries --------------------------------------------------------------------------

    def copy_out(self, entry: Entry, dest: Path) -> None:
        """Copy an entry's tree to dest with write permission restored (see fsutil.copy_out)."""
        copy_out(entry.path, dest)

    # -- results, generations, gc ---------------------------------------------------------------

    def add_out_link(self, link: Path, entry: Entry) -> Path:
        """Make `link` (e.g. ./result-<host>) a symlink to entry and a GC root; see roots.add_out_link."""
        return _roots.add_out_link(self, link, entry)

    def record_generation(self, host: str, entry: Entry, profile_hash: str) -> _generations.Generation:
        """Add host's next generation pointing at entry (no-op if the newest already does)."""
        return _generations.record_generation(self, host, entry, profile_hash)

    def set_verdict(
        self, host: str, number: int, verdict: Mapping[str, Any], verdict_entry: Entry | None = None
    ) -> _generations.Generation:
        """Attach a test verdict to generation `number` of host."""
        return _generations.set_verdict(self, host, number, verdict, verdict_entry)

    def history(self, host: str) -> list[_generations.Generation]:
        """host's generations, oldest first."""
        return _generations.history(self, host)

    def hosts(self) -> list[str]:
        """Hosts with generations."""
        return _generations.hosts(self)

    def gc(self, keep: int, dry_run: bool = False) -> _gc.GcResult:
        """Delete what no out-link, GC root or last-`keep` generation of any host reaches."""
        return _gc.collect_garbage(self, keep, dry_run)
