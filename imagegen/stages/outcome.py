"""What a build through the store ends with, however its image was found: the out-link, the host's
generation, and the ImageBuild that `imagegen build` prints. Light on purpose (no mkosi driver, no
renderer, no profile models): a no-op build that a record names (stages/unchanged.py) runs only this."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen.image.manifest import MANIFEST_NAME, OUTPUTS, BuildManifest
from imagegen.store import Entry, Generation, PackageDiff, Store
from imagegen.store.fsutil import remove_tree

if TYPE_CHECKING:
    from imagegen.image.mkosi import BuildResult


@dataclass(frozen=True)
class ImageBuild:
    """A built (or found) image: its store entry, what it was built from, and where it was linked."""

    entry: Entry
    overlay: Entry
    manifest: BuildManifest
    profile_hash: str  # as the host's generations record it (keyed by the store's key)
    seconds: float  # what this call took, found or built
    link: Path | None = None
    generation: Generation | None = None
    # With --refresh over an existing entry: how the package set moved (empty: unchanged).
    refreshed: PackageDiff | None = None

    @property
    def reused(self) -> bool:
        return self.entry.reused

    def files(self) -> dict[str, str]:
        return {kind: str(self.entry.path / name) for kind, name in OUTPUTS.items()}

    def result(self) -> BuildResult:
        """As `imagegen build` used to return it: the files in out_dir (the link, else the entry)."""
        from imagegen.image.mkosi import BuildResult

        return BuildResult(out_dir=self.link or self.entry.path, manifest=self.manifest)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "store_path": str(self.entry.path),
            "overlay_path": str(self.overlay.path),
            "out_link": str(self.link) if self.link else None,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "profile_hash": self.profile_hash,
            "generation": self.generation.number if self.generation else None,
            **self.files(),
            "manifest": json.loads((self.entry.path / MANIFEST_NAME).read_text()),
        }
        if self.refreshed is not None:
            data["refresh"] = {"packages_changed": bool(self.refreshed), "diff": str(self.refreshed)}
        return data


def default_link_name(hostname: str, lab: bool) -> Path:
    return Path(f"result-{hostname}{'-lab' if lab else ''}")


def is_old_output_dir(path: Path) -> bool:
    """Whether path is an output directory of imagegen from before the store (build/<host>): such a
    directory was replaced by each build anyway, so a link may take its place; nothing else is replaced."""
    return (path.is_dir() and not path.is_symlink() and (path / MANIFEST_NAME).is_file()
            and (path / OUTPUTS["image"]).is_file())


def check_out_link(store: Store, link: Path | None) -> None:
    """Refuse an out-link path before any work is done (see safeoutput.check_link)."""
    from imagegen.safeoutput import check_link

    if link is not None and not is_old_output_dir(link):
        check_link(link, "--out-link", store.root)


@dataclass(frozen=True)
class Finished:
    link: Path | None
    generation: Generation | None
    recorded_hash: str


def link_and_record(store: Store, entry: Entry, *, link: Path | None, hostname: str, profile_hash: str | None,
                    recorded_hash: str | None = None, record: bool = True) -> Finished:
    """Point link at entry (a GC root) and add the host's generation (record: unless the newest is it).

    profile_hash: the host's, keyed by the host's key; the store's records key it once more with the
    store's key (docs/store.md). recorded_hash: that already (a record of an earlier build holds it)."""
    if link is not None and is_old_output_dir(link):
        remove_tree(link)
    out_link = store.add_out_link(link, entry) if link is not None else None
    if recorded_hash is None:
        assert profile_hash is not None
        recorded_hash = store.keyed_digest(profile_hash)
    generation = store.record_generation(hostname, entry, recorded_hash) if record else None
    return Finished(out_link, generation, recorded_hash)
