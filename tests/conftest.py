from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture
def write_profile(tmp_path: Path):
    """Write TOML text to a profile file in tmp_path and return its path."""

    def write(text: str, name: str = "host.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
