"""Render a host profile into the overlay tree that goes into its image."""

from __future__ import annotations

from pathlib import Path

from imagegen.profile.load import LoadedProfile
from imagegen.profile.state import HostState, load_or_create_state, state_path
from imagegen.render.distro import Target, resolve_target
from imagegen.render.plan import File, HardLink, Plan, Symlink, plan_overlay
from imagegen.render.write import write_overlay

__all__ = [
    "File", "HardLink", "Plan", "Symlink", "Target", "plan_overlay", "render_overlay", "resolve_target",
    "host_state_for", "write_overlay",
]


def host_state_for(loaded: LoadedProfile, state_file: Path | None = None, *, create: bool = True) -> HostState:
    path = state_file or state_path(loaded.base_dir, loaded.profile.image.hostname)
    return load_or_create_state(path, create=create)


def render_overlay(
    loaded: LoadedProfile, out: Path, *, state: HostState | None = None, target: Target | None = None
) -> Plan:
    """Plan the overlay of a loaded profile and write it to out atomically; return the plan."""
    target = target or resolve_target(loaded.profile.image)
    plan = plan_overlay(loaded, state or host_state_for(loaded), target)
    write_overlay(plan, out)
    return plan
