"""The run as JSON, for scripts and for comparing figures between runs."""

from __future__ import annotations

import json
from pathlib import Path

from imagegen.report.model import RunResult


def write_json(result: RunResult, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    tmp.replace(path)
