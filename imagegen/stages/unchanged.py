"""A no-op `imagegen build` without loading, validating or rendering the profile.

Loading a profile needs pydantic and the models, rendering needs Jinja2: most of a second, for a build
that then finds its image in the store. So each build leaves a record in the store (`unchanged/`):
the request (the profile paths as given and the working directory, --lab, --mirror, --state), every
file the build read (the profile files, the host state file, the files the profile names, os-release)
with the digest of its content and the path it resolves to, and what the rest of the build depends on
(this imagegen's source, mkosi.conf.d and overlays/, mkosi's source, Python's version, pydantic's
release); and the image and overlay entries it found or built. A later build with the same request
whose inputs all still match takes the entries from the record, if the store still holds both, and
does only what a no-op build does besides: the out-link and the generation.

The store stays the source of truth: a record names entries, and an entry that is gone (or was never
completed) sends the build down the full path, which writes a new record. A record can only be
stale by naming an entry that another set of inputs would give, and every input of both derivations
is either in the record's digests or derived from them: the profile bytes decide the profile and which
files it names, those files' bytes and the state file decide the secrets and the host's key, the code
decides how all of it is hashed. A record is written only when the inputs did not move while the build
ran (see remember()). Digests are HMACs keyed by the store's key, as for the store's other records:
a record is no offline oracle for a passphrase file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import imagegen
from imagegen.errors import ImagegenError
from imagegen.image.manifest import MANIFEST_NAME, BuildManifest
from imagegen.stages.outcome import ImageBuild, check_out_link, default_link_name, link_and_record
from imagegen.store import Store
from imagegen.store.entry import ENTRY_NAME
from imagegen.store.gc import RECORDS_DIR
from imagegen.store.hashing import canonical_json, file_sha256, keyed_digest, short_digest, tree_digest
from imagegen.store.private import store_key

FORMAT = 1
PACKAGE = Path(imagegen.__file__).resolve().parent
# What a build reads from the checkout besides the package: mkosi's static configuration and overlays/.
REPO_TREES = ("mkosi.conf.d", "overlays")
_NOT_SOURCE = ("*__pycache__", "*.pyc")
# The libraries whose release could change a derivation: pydantic's dump is the profile's hash.
LIBRARIES = ("pydantic", "pydantic_core")


@dataclass(frozen=True)
class Request:
    """What names a build apart from its files: a different request never shares a record."""

    profiles: tuple[str, ...]  # as given: the manifest names a package's source file so
    lab: bool
    mirror: str | None
    state_file: str | None
    cwd: str

    @classmethod
    def of(cls, profiles: Sequence[Path], *, lab: bool, mirror: str | None, state_file: Path | None) -> Request:
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = ""  # a working directory removed under the command: no record is used or written
        return cls(tuple(map(str, profiles)), lab, mirror, str(state_file) if state_file is not None else None, cwd)

    def key(self) -> dict[str, Any]:
        return {"profiles": list(self.profiles), "lab": self.lab, "mirror": self.mirror, "state": self.state_file,
                "cwd": self.cwd}

    def record_path(self, store: Store) -> Path:
        return store.root / RECORDS_DIR / f"{short_digest(canonical_json(self.key()).encode())}.json"


@dataclass(frozen=True)
class Inputs:
    """What a full build read, as computed by loading the profile again (stages.realise.build_inputs)."""

    files: tuple[Path, ...]
    image: str  # the image entry's path name
    overlay: str
    hostname: str


def host_inputs(package: Path = PACKAGE) -> dict[str, Any] | None:
    """What every build of this checkout depends on besides the profile's files; None when it cannot
    be told cheaply (mkosi's version not in its source): then no record is written or used."""
    mkosi = _mkosi_source()
    if mkosi is None:
        return None
    repo = package.parent
    return {
        "python": [sys.version, sys.executable],
        "imagegen": tree_digest(package, _NOT_SOURCE)[0],
        "checkout": {name: tree_digest(repo / name, _NOT_SOURCE)[0] if (repo / name).is_dir() else None
                     for name in REPO_TREES},
        "mkosi": mkosi,
        "libraries": {name: _release(name) for name in LIBRARIES},
    }


def _mkosi_source() -> str | None:
    # As image.mkosi.mkosi_version reads it: the version is in mkosi/sandbox.py.
    spec = find_spec("mkosi")
    if spec is None:
        return "absent"
    for location in list(spec.submodule_search_locations or []):
        source = Path(location) / "sandbox.py"
        if source.is_file():
            text = source.read_bytes()
            # Without the line mkosi_version reads, it asks mkosi itself: not cheap, so no record.
            return f"{source}:{hashlib.sha256(text).hexdigest()}" if b'\n__version__ = "' in text else None
    return None


def _release(name: str) -> list[str] | None:
    """The dist-info directories beside an installed package: they name its release."""
    spec = find_spec(name)
    if spec is None or spec.origin is None:
        return None
    site = Path(spec.origin).parent.parent
    return sorted(p.name for p in site.glob(f"{name}-*.dist-info"))


_UNKNOWABLE = "unknowable"


def file_digest(key: bytes, path: Path) -> str | None:
    """The keyed digest of a file's content and of where it resolves to; None if it does not exist;
    _UNKNOWABLE for anything but a regular file (a FIFO is read once, a device never ends)."""
    try:
        content = file_sha256(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return None
        return _UNKNOWABLE
    return keyed_digest(key, [os.path.realpath(path), content])


def _digests(key: bytes, files: Sequence[Path]) -> list[list[Any]] | None:
    found = []
    for path in files:
        digest = file_digest(key, path)
        if digest == _UNKNOWABLE:
            return None
        found.append([str(path), digest])
    return found


def recorded_build(store: Store, request: Request, *, link: Path | None, record: bool = True,
                   host: dict[str, Any] | None = None) -> ImageBuild | None:
    """The build of request as its record names it, if every input still matches and the store holds
    both entries; else None (then the full build runs). Does what a no-op build does: the out-link
    (default: result-HOSTNAME[-lab]) and the generation. host: host_inputs(), if taken already."""
    started = time.monotonic()
    key = store_key(store.root) if request.cwd else None
    if key is None:
        return None
    try:
        data = json.loads(request.record_path(store).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("request") != request.key():
        return None
    host = host if host is not None else host_inputs()
    if host is None or data.get("host") != keyed_digest(key, host):
        return None
    files = data.get("files")
    if not isinstance(files, list) or not files:
        return None
    for item in files:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return None
        if file_digest(key, Path(item[0])) != item[1]:
            return None
    image_name, overlay_name = data.get("image"), data.get("overlay")
    hostname, recorded_hash = data.get("hostname"), data.get("profile_hash")
    if not (isinstance(image_name, str) and ENTRY_NAME.fullmatch(image_name) and isinstance(overlay_name, str)
            and ENTRY_NAME.fullmatch(overlay_name) and isinstance(hostname, str) and isinstance(recorded_hash, str)):
        return None
    # The store decides: both entries complete, and held from here on (gc leaves them alone).
    image, overlay = store.hold(image_name), store.hold(overlay_name)
    if image is None or overlay is None:
        return None
    link = link or default_link_name(hostname, request.lab)
    check_out_link(store, link)
    finished = link_and_record(store, image, link=link, hostname=hostname, profile_hash=None,
                               recorded_hash=recorded_hash, record=record)
    return ImageBuild(entry=image, overlay=overlay, manifest=BuildManifest.load(image.path / MANIFEST_NAME),
                      profile_hash=recorded_hash, seconds=time.monotonic() - started, link=finished.link,
                      generation=finished.generation)


def remember(store: Store, request: Request, built: ImageBuild, host_before: dict[str, Any] | None,
             files: Sequence[Path], inputs: Callable[[], Inputs]) -> bool:
    """Write the record of a finished build; True if written.

    Only when nothing it depends on moved while it ran: host_before (taken before the build started)
    must match host_inputs() now; files (what the build's profile named, from its load) must have the
    same digests before and after inputs() loads the profile once more and computes the entries afresh,
    which must be the ones built and name the same files. A file changed during the build, or between
    that load and now, leaves no record (the next build runs in full and writes one)."""
    key = store_key(store.root) if request.cwd else None
    if key is None or host_before is None:
        return False
    try:
        before = _digests(key, files)
        again = inputs()
        after = _digests(key, again.files)
        host = host_inputs()
    except (ImagegenError, OSError):
        return False  # a profile (or checkout) that moved under the build: the next build runs in full
    if (before is None or before != after or tuple(files) != again.files or host != host_before
            or (again.image, again.overlay) != (built.entry.path_name, built.overlay.path_name)):
        return False
    data = {"format": FORMAT, "request": request.key(), "host": keyed_digest(key, host), "files": after,
            "image": again.image, "overlay": again.overlay, "hostname": again.hostname,
            "profile_hash": built.profile_hash}
    _write_private(request.record_path(store), json.dumps(data, indent=1) + "\n")
    return True


def _write_private(path: Path, text: str) -> None:
    """Replace path with text, mode 0600, atomically (a reader sees the old record or the new one)."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
