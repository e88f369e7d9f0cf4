"""mkosi taken away, as on a machine where it was never installed (a test run with IMAGEGEN_TEST_NO_MKOSI=1).

tests/conftest.py runs this in the test process and puts this directory first on PYTHONPATH, so that every
Python the tests start (`python -m mkosi` included) runs it too, as its sitecustomize, after the .pth files
(imagegen setup's among them) have extended sys.path. The interpreter's own sitecustomize, if any, still runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _holds_mkosi(entry: str) -> bool:
    return bool(entry) and (Path(entry) / "mkosi").is_dir()


def hide_mkosi() -> None:
    sys.path[:] = [entry for entry in sys.path if not _holds_mkosi(entry)]
    for name in [m for m in sys.modules if m == "mkosi" or m.startswith("mkosi.")]:
        del sys.modules[name]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(d for d in path if d and not (Path(d) / "mkosi").exists())
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != HERE]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *python_path])


def _run_next_sitecustomize() -> None:
    others = [entry for entry in sys.path if entry and Path(entry).resolve() != HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if __name__ == "sitecustomize" and os.environ.get("IMAGEGEN_TEST_NO_MKOSI"):
    hide_mkosi()
    _run_next_sitecustomize()
