"""Read os-release(5): which distribution a machine runs."""

from __future__ import annotations

from pathlib import Path

# The file that names the building machine's distribution (a link to /usr/lib/os-release, as a rule).
OS_RELEASE = Path("/etc/os-release")


def os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"')
    return fields
