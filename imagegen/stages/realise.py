"""Realise the render and build stages in the store: each runs only when its derivation is new."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from imagegen.errors import UsageError
from imagegen.image.aptsources import mirror_from_url
from imagegen.image.config import BuildRequest, image_content
from imagegen.image.manifest import MANIFEST_NAME, BuildManifest
from imagegen.image.mkosi import build_image, mkosi_version
from imagegen.osrelease import OS_RELEASE
from imagegen.profile import HostState, LoadedProfile, load_profiles
from imagegen.render import host_state_for, host_state_path, plan_overlay, planned_overlay, resolve_target
from imagegen.render.write import write_tree
from imagegen.stages.derivations import build_derivation, profile_hash, profile_named_paths, render_derivation
from imagegen.stages.outcome import ImageBuild, check_out_link, link_and_record
from imagegen.stages.unchanged import Inputs
from imagegen.store import Derivation, Entry, Store, diff_packages, resolve_store_root
from imagegen.store.substitution import Substituter


def open_store(option: Path | None, substituter: Substituter | None = None) -> Store:
    """The store named by --store, else $IMAGEGEN_STORE, else the user's cache directory; substituter:
    where it looks for an entry before building one (imagegen.cache)."""
    return Store(resolve_store_root(option, os.environ), substituter)


def realise_overlay(store: Store, loaded: LoadedProfile, *, lab: bool = False,
                    state_file: Path | None = None, state: HostState | None = None) -> Entry:
    """The rendered overlay of a profile (with the lab's per-profile files for the lab variant).

    state: the host state, if the caller has read it already (else it is read from state_file, and a new
    host's file is created only once the plan has succeeded: a profile error leaves nothing behind)."""
    # One answer for the target, hashed and rendered alike.
    target = resolve_target(loaded.profile.image)
    if state is None:
        plan, state = planned_overlay(loaded, state_file, target)
    else:
        plan = plan_overlay(loaded, state, target)
    drv = render_derivation(loaded, state, lab=lab, target=target)

    def render(out: Path) -> dict[str, Any]:
        # The lab's modules only when an overlay is rendered: a build that finds its entries needs none.
        from imagegen.vm.lab import lab_profile, render_lab_overlay

        write_tree(plan, out)
        written = render_lab_overlay(lab_profile(loaded), out) if lab else []
        return {"entries": len(plan.entries) + len(written)}

    return store.realise(drv, render)


def image_derivation(loaded: LoadedProfile, overlay: Entry, *, lab: bool, state: HostState) -> Derivation:
    """The build stage's derivation of a profile over its overlay entry (which need not exist yet);
    state: the host's, whose hash key keys the root password hash's digest."""
    image = loaded.profile.image
    target = resolve_target(image)
    return build_derivation(overlay, distribution=target.distribution, release=target.release, lab=lab,
                            hostname=image.hostname, root_password_hash=image.root_password_hash,
                            mkosi=mkosi_version(), state=state, content=image_content(loaded))


def image_overlay(store: Store, loaded: LoadedProfile, *, lab: bool = False,
                  state_file: Path | None = None) -> Entry:
    """Where the profile's overlay entry is (or would be) in store, computed without rendering."""
    state = host_state_for(loaded, state_file, create=False)
    target = resolve_target(loaded.profile.image)
    return Entry(store.path_of(render_derivation(loaded, state, lab=lab, target=target)))


def planned_image(store: Store, loaded: LoadedProfile, *, lab: bool = False,
                  state_file: Path | None = None) -> Entry:
    """Where the profile's image entry is (or would be) in store, computed without rendering or building:
    enough to ask a cache for its verdict, which then needs no image at all. A new host's state file is
    not written for it: the hashes of fresh state match nothing in any cache."""
    state = host_state_for(loaded, state_file, create=False)
    overlay = image_overlay(store, loaded, lab=lab, state_file=state_file)
    return Entry(store.path_of(image_derivation(loaded, overlay, lab=lab, state=state)))


def input_files(loaded: LoadedProfile, state_file: Path | None = None) -> tuple[Path, ...]:
    """Every file a build of loaded reads, absolute: the profile files, the host state file (whether or
    not it exists yet), the files the profile names, os-release."""
    named = profile_named_paths(loaded).values()
    files = [*loaded.files, host_state_path(loaded, state_file), *named, OS_RELEASE]
    return tuple(Path(os.path.abspath(f)) for f in files)


def build_inputs(store: Store, profiles: Sequence[Path], *, lab: bool = False,
                 state_file: Path | None = None) -> Inputs:
    """What a build of profiles reads and the entries it gives, from a fresh load: for the record of a
    finished build (stages/unchanged.py)."""
    loaded = load_profiles(profiles)
    image = planned_image(store, loaded, lab=lab, state_file=state_file)
    overlay = image_overlay(store, loaded, lab=lab, state_file=state_file)
    return Inputs(files=input_files(loaded, state_file), image=image.path_name, overlay=overlay.path_name,
                  hostname=loaded.profile.image.hostname)


def realise_image(
    store: Store,
    loaded: LoadedProfile,
    *,
    lab: bool = False,
    mirror: str | None = None,
    cache_root: Path | None = None,
    state_file: Path | None = None,
    refresh: bool = False,
    link: Path | None = None,
    record: bool = True,
    console: Console | None = None,
) -> ImageBuild:
    """Render and build a profile through the store; reuse whatever is already there.

    link: an out-link to leave pointing at the image entry (a GC root). record: add a generation.
    """
    started = time.monotonic()
    console = console or Console(stderr=True)
    image = loaded.profile.image
    # One answer for "which distribution and release", the renderer's, so paths and packages agree.
    target = resolve_target(image)
    distribution = target.distribution
    mirror = mirror or image.mirror
    if mirror is not None:
        mirror_from_url(mirror)  # a bad URL is a usage error before anything is rendered or built
    elif distribution == "arch":
        raise UsageError("image.mirror: an Arch image needs an Arch mirror and this host's apt sources name none",
                         "pass --mirror URL (an Arch mirror, e.g. http://HOST/archlinux) or set image.mirror")
    check_out_link(store, link)
    overlay = realise_overlay(store, loaded, lab=lab, state_file=state_file)
    state = host_state_for(loaded, state_file)  # kept by realise_overlay: read, never created here
    request_release = target.release
    drv = image_derivation(loaded, overlay, lab=lab, state=state)
    phash = profile_hash(loaded, state)
    previous = store.lookup(drv) if refresh else None
    old_manifest = json.loads((previous.path / MANIFEST_NAME).read_text()) if previous else None

    def build(work: Path) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="imagegen-overlay-") as tmp:
            # Store trees are read-only; mkosi copies modes into the image, so it gets a writable copy.
            copy = Path(tmp) / "overlay"
            store.copy_out(overlay, copy)
            request = BuildRequest(
                overlay=copy, out_dir=store.path_of(drv), distribution=distribution, release=request_release,
                mirror=mirror, lab=lab, hostname=image.hostname, root_password_hash=image.root_password_hash,
                profile_hash=phash, cache_root=cache_root, content=image_content(loaded),
                digest_key=state.hash_key,
            )
            result = build_image(request, console=console, into=work, refresh=refresh)
        m = result.manifest
        return {"packages": len(m.packages), "cache_reused": m.cache_reused, "cache_reason": m.cache_reason,
                "mkosi_seconds": m.duration_seconds}

    entry = store.realise(drv, build, force=refresh,
                          on_wait=lambda: console.print(Text(f"waiting for another imagegen building {drv.path_name}")))
    refreshed = None
    if old_manifest is not None:
        refreshed = diff_packages(old_manifest, json.loads((entry.path / MANIFEST_NAME).read_text()))
    finished = link_and_record(store, entry, link=link, hostname=image.hostname, profile_hash=phash, record=record)
    return ImageBuild(entry=entry, overlay=overlay, manifest=BuildManifest.load(entry.path / MANIFEST_NAME),
                      profile_hash=finished.recorded_hash, seconds=time.monotonic() - started, link=finished.link,
                      generation=finished.generation, refreshed=refreshed)


def entry_manifest(entry: Entry) -> Mapping[str, Any] | None:
    path = entry.path / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else None
