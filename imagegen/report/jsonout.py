"""The run as JSON, for scripts and for comparing figures between runs."""

from __future__ import annotations

import json
from pathlib import Path

from imagegen.report.model import RunResult
from imagegen.safeoutput import json_object_with, safe_replace

# What a report of `imagegen test --json FILE` holds, one run or several (--repeat): a file with
# neither shape is not imagegen's, and is never replaced.
_RUN = json_object_with("profile", "accel", "boot", "scenarios")
_REPEAT = json_object_with("repeat", "runs_passed", "runs")


def is_json_report(content: bytes) -> bool:
    return _RUN(content) or _REPEAT(content)


def write_json(result: RunResult, path: Path, option: str = "--json") -> None:
    safe_replace(path, (json.dumps(result.to_dict(), indent=2) + "\n").encode(), option=option,
                 ours=is_json_report)
