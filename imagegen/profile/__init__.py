"""Host profiles: the model, loading and layering, validation, and the per-host state file."""

from imagegen.profile.load import LoadedProfile, format_path, load_profiles
from imagegen.profile.model import Bond, Bridge, Interface, Network, Profile
from imagegen.profile.state import HostState, load_or_create_state, state_path

__all__ = [
    "Bond", "Bridge", "HostState", "Interface", "LoadedProfile", "Network", "Profile",
    "format_path", "load_or_create_state", "load_profiles", "state_path",
]
