"""Render a host profile into the overlay tree that goes into its image."""

from __future__ import annotations

from pathlib import Path

from imagegen.profile.load import LoadedProfile
from imagegen.profile.state import HostState, existing_or_new_state, keep_new_state, load_or_create_state, state_path
from imagegen.render.distro import Target, resolve_target
from imagegen.render.plan import File, HardLink, Plan, Symlink, plan_overlay
from imagegen.render.write import write_overlay
from imagegen.safeoutput import check_tree

__all__ = [
    "File", "HardLink", "Plan", "Symlink", "Target", "plan_overlay", "planned_overlay", "render_overlay",
    "resolve_target", "host_state_for", "write_overlay",
]


def host_state_for(loaded: LoadedProfile, state_file: Path | None = None, *, create: bool = True) -> HostState:
    return load_or_create_state(host_state_path(loaded, state_file), create=create)


def host_state_path(loaded: LoadedProfile, state_file: Path | None = None) -> Path:
    return state_file or state_path(loaded.base_dir, loaded.profile.image.hostname)


def planned_overlay(loaded: LoadedProfile, state_file: Path | None = None, target: Target | None = None,
                    *, before_keeping: Path | None = None) -> tuple[Plan, HostState]:
    """Plan the overlay with the host's state, creating a new host's state file only once the plan has
    succeeded: a profile with an error writes nothing. before_keeping: an --out tree to check first."""
    target = target or resolve_target(loaded.profile.image)
    path = host_state_path(loaded, state_file)
    state, new = existing_or_new_state(path)
    plan = plan_overlay(loaded, state, target)
    if new:
        if before_keeping is not None:
            check_tree(before_keeping, "--out")
        kept = keep_new_state(path, state)
        if kept != state:  # another imagegen created the file meanwhile: its values are the host's
            state, plan = kept, plan_overlay(loaded, kept, target)
    return plan, state


def render_overlay(
    loaded: LoadedProfile, out: Path, *, state: HostState | None = None, target: Target | None = None,
    state_file: Path | None = None,
) -> Plan:
    """Plan the overlay of a loaded profile and write it to out atomically; return the plan.

    Without state, the host's state file (state_file, else HOSTNAME.state.toml beside the last
    profile) is read, or created once the plan has succeeded.
    """
    target = target or resolve_target(loaded.profile.image)
    if state is None:
        plan, _ = planned_overlay(loaded, state_file, target, before_keeping=out)
    else:
        plan = plan_overlay(loaded, state, target)
    write_overlay(plan, out)
    return plan
