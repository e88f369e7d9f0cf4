"""A copy of the laptop example that a test may change and write beside: the profile and what it names."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copy_laptop(dest: Path, *, with_state: bool = False) -> Path:
    """The profile and its `tests.scripts`; with_state also its host state (DUID, keys), so the image the
    README's command built is the one a test reuses."""
    shutil.copy(EXAMPLES / "laptop.toml", dest / "laptop.toml")
    shutil.copytree(EXAMPLES / "tests", dest / "tests")
    state = EXAMPLES / "laptop.state.toml"
    if with_state and state.exists():
        shutil.copy(state, dest / "laptop.state.toml")
    return dest / "laptop.toml"
