"""What `imagegen diff` compares: a system (overlay, package manifest, verdict) named by a profile,
a store path or out-link, or a generation `HOST@N`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.errors import ImagegenError, UsageError
from imagegen.image.config import image_content
from imagegen.image.manifest import MANIFEST_NAME
from imagegen.image.mkosi import mkosi_version
from imagegen.profile import load_profiles
from imagegen.render import host_state_for, resolve_target
from imagegen.stages.derivations import build_derivation, profile_hash
from imagegen.stages.realise import realise_overlay
from imagegen.stages.verdicts import VERDICT_JSON
from imagegen.store import Entry, PackageDiff, Store, TreeDiff, VerdictDiff, diff_packages, diff_trees, diff_verdicts
from imagegen.store.generations import Generation

GENERATION = re.compile(r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)@(?P<number>[0-9]+)")


@dataclass(frozen=True)
class System:
    label: str
    overlay: Path | None
    manifest: Path | None
    verdict: Mapping[str, Any] | Path | None
    # What the profile asked of mkosi (packages, locale, keymap, time zone, kernel command line words):
    # these land in the image, not in the overlay.
    settings: Mapping[str, Any] | None = None


def _settings(image: Entry | None) -> Mapping[str, Any] | None:
    if image is None:
        return None
    content: Mapping[str, Any] | None = image.metadata()["derivation"]["inputs"].get("content")
    return content


def _stage(entry: Entry) -> str:
    return str(entry.metadata()["derivation"]["stage"])


def _reference(store: Store, entry: Entry, stage: str) -> Entry | None:
    for name in entry.references:
        if store.is_complete(name):
            ref = Entry(store.root / name)
            if _stage(ref) == stage:
                return ref
    return None


def _verdict_of_image(store: Store, image: Entry) -> Path | None:
    """The newest verdict entry in the store that tested this image."""
    found = [e for e in store.entries() if image.path_name in e.references and _stage(e) == "test"]
    found.sort(key=lambda e: str(e.metadata()["created"]))
    return found[-1].path / VERDICT_JSON if found else None


def _from_generation_verdict(store: Store, generation: Generation) -> Mapping[str, Any] | Path | None:
    if generation.verdict_path and store.is_complete(generation.verdict_path):
        return store.root / generation.verdict_path / VERDICT_JSON
    return generation.verdict


def _from_entry(store: Store, entry: Entry, label: str) -> System:
    stage = _stage(entry)
    if stage == "render":
        return System(label, entry.path, None, None)
    if stage == "test":
        image = _reference(store, entry, "build")
        overlay = _reference(store, image, "render") if image else None
        return System(label, overlay.path if overlay else None,
                      image.path / MANIFEST_NAME if image else None, entry.path / VERDICT_JSON, _settings(image))
    overlay = _reference(store, entry, "render")
    return System(label, overlay.path if overlay else None, entry.path / MANIFEST_NAME,
                  _verdict_of_image(store, entry), _settings(entry))


def resolve(store: Store, ref: str) -> System:
    """A system from a profile (`a.toml`, layered as `base.toml+kiosk.toml`), a store path or out-link,
    or a generation (`laptop@3`)."""
    parts = [Path(p) for p in ref.split("+")]
    if all(p.suffix == ".toml" for p in parts):
        missing = [p for p in parts if not p.is_file()]
        if missing:
            raise UsageError(f"diff: profile {missing[0]} does not exist", "pass existing profile files")
        return _from_profile(store, parts, ref)
    match = GENERATION.fullmatch(ref)
    if match and not Path(ref).exists():
        host, number = match["host"], int(match["number"])
        generation = next((g for g in store.history(host) if g.number == number), None)
        if generation is None:
            raise UsageError(f"diff: {ref}: host {host} has no generation {number}",
                             f"see `imagegen history {host}` for the numbers")
        if not store.is_complete(generation.store_path):
            raise UsageError(f"diff: {ref}: its entry {generation.store_path} is no longer in the store",
                             "rebuild it, or compare generations gc kept (imagegen gc --keep N)")
        system = _from_entry(store, Entry(store.root / generation.store_path), ref)
        return System(ref, system.overlay, system.manifest,
                      _from_generation_verdict(store, generation) or system.verdict, system.settings)
    return _from_entry(store, store.get(ref), ref)


def _from_profile(store: Store, files: list[Path], label: str) -> System:
    loaded = load_profiles(files)
    overlay = realise_overlay(store, loaded)
    state = host_state_for(loaded)  # kept by realise_overlay once its plan succeeded
    image = loaded.profile.image
    target = resolve_target(image)
    content = image_content(loaded)
    try:
        mkosi = mkosi_version()
    except ImagegenError:
        # The image's hash names the mkosi that builds it: with none here there is no image to look up,
        # and the overlays still compare.
        built = None
    else:
        drv = build_derivation(overlay, distribution=target.distribution, release=target.release, lab=False,
                               hostname=image.hostname, root_password_hash=image.root_password_hash,
                               mkosi=mkosi, state=state, content=content)
        built = store.lookup(drv)
    recorded = store.known_digest(profile_hash(loaded, state))
    verdict: Mapping[str, Any] | Path | None = None
    for generation in reversed(store.history(image.hostname)):
        if generation.profile_hash == recorded and generation.verdict is not None:
            verdict = _from_generation_verdict(store, generation)
            break
    return System(label, overlay.path, built.path / MANIFEST_NAME if built else None, verdict, content.inputs())


@dataclass(frozen=True)
class SystemDiff:
    a: System
    b: System
    files: TreeDiff | None
    packages: PackageDiff | None
    verdicts: VerdictDiff | None
    settings: list[str] | None = None

    def sections(self) -> list[tuple[str, str]]:
        """(heading, text) for the overlay, the packages and the verdicts."""
        out = []
        for title, diff, have_a, have_b, what in (
            ("overlay", self.files, self.a.overlay, self.b.overlay, "no overlay"),
            ("packages", self.packages, self.a.manifest, self.b.manifest, "no image built (imagegen build)"),
            ("verdict", self.verdicts, self.a.verdict, self.b.verdict, "no test verdict (imagegen test)"),
        ):
            if have_a is None or have_b is None:
                missing = [s.label for s, have in ((self.a, have_a), (self.b, have_b)) if have is None]
                verb = "has" if len(missing) == 1 else "have"
                out.append((title, f"not compared: {' and '.join(missing)} {verb} {what}"))
            else:
                out.append((title, str(diff) if diff else "identical"))
        if self.a.settings is not None and self.b.settings is not None:
            out.append(("image settings", "\n".join(self.settings or []) or "identical"))
        return out

    def to_json(self) -> dict[str, Any]:
        return {title: text for title, text in self.sections()}


def diff_systems(a: System, b: System) -> SystemDiff:
    files = diff_trees(a.overlay, b.overlay) if a.overlay and b.overlay else None
    packages = diff_packages(a.manifest, b.manifest) if a.manifest and b.manifest else None
    verdicts = None
    if a.verdict is not None and b.verdict is not None:
        verdicts = diff_verdicts(_load(a.verdict), _load(b.verdict))
    settings = diff_settings(a.settings, b.settings) if a.settings is not None and b.settings is not None else None
    return SystemDiff(a, b, files, packages, verdicts, settings)


def diff_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """One line per image setting that differs; list settings name what was added and removed."""
    lines = []
    for key in sorted(a.keys() | b.keys()):
        old, new = a.get(key), b.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            lines += [f"{key}: +{v}" for v in new if v not in old] + [f"{key}: -{v}" for v in old if v not in new]
        else:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines


def _load(verdict: Mapping[str, Any] | Path) -> Mapping[str, Any]:
    if isinstance(verdict, Path):
        data: Mapping[str, Any] = json.loads(verdict.read_text())
        return data
    return verdict
