"""The files of the seed article (shared/seed/archwiki-wireless-bonding.txt), as the article prints them."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Beside the checkout, as in a clone next to a copy of shared/ (CI's layout).
BESIDE = Path(__file__).resolve().parents[2] / "shared/seed/archwiki-wireless-bonding.txt"
HOW_TO_GIVE = "pass --seed PATH to pytest or set IMAGEGEN_SEED (tests/conftest.py's --seed sets it)"


def seed_path() -> Path | None:
    """The article: IMAGEGEN_SEED when set (it must then be a file), else the copy beside the checkout."""
    given = os.environ.get("IMAGEGEN_SEED")
    if given:
        return Path(given) if Path(given).is_file() else None
    return BESIDE if BESIDE.is_file() else None


def _is_config(line: str) -> bool:
    s = line.rstrip()
    if re.match(r"[A-Z][a-z]+,? ", s) and s.endswith(".") and len(s.split()) > 8:
        return False  # a sentence of the article, even one that quotes "Environment="
    return (
        not s
        or s[0] in "#[ \t-}"
        or "=" in s
        or s.endswith((";", "{", "}", "\\"))
        or s.startswith(("options ", "profile ", "id-assoc ", "keyinfo "))
    )


def seed_files(path: Path) -> dict[str, str]:
    """Map each /etc path the article prints to the text printed under it."""
    lines = path.read_text().splitlines()
    files: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if re.fullmatch(r"/etc/\S+", lines[i]):
            name, body = lines[i], []
            i += 1
            while i < len(lines) and _is_config(lines[i]) and not re.fullmatch(r"/etc/\S+", lines[i]):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            files[name] = "\n".join(body) + "\n"
        else:
            i += 1
    return files
