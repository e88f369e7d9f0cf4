"""The one way imagegen runs an external command: logged, checked, with a clear error."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagegen.errors import CommandError

log = logging.getLogger("imagegen.run")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = True,
    input: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv and return the finished process.

    With capture, stdout and stderr are merged into .stdout so a failure shows both in order.
    With log_file, output goes to that file (appended) instead, for long runs whose log is kept.
    """
    args = [os.fspath(a) for a in argv]
    log.info("+ %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    try:
        if log_file is not None:
            with log_file.open("a") as f:
                proc = subprocess.run(
                    args, cwd=cwd, env=full_env, input=input, text=True, timeout=timeout,
                    stdout=f, stderr=subprocess.STDOUT,
                )
            output = ""
        else:
            proc = subprocess.run(
                args, cwd=cwd, env=full_env, input=input, text=True, timeout=timeout,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None,
            )
            output = proc.stdout or ""
    except FileNotFoundError as e:
        raise CommandError(args, 127, f"{args[0]}: not found ({e})") from e
    except subprocess.TimeoutExpired as e:
        out = e.output.decode() if isinstance(e.output, bytes) else (e.output or "")
        raise CommandError(args, -1, f"timed out after {timeout} s\n{out}") from e
    if check and proc.returncode != 0:
        if log_file is not None:
            output = log_file.read_text(errors="replace")
        raise CommandError(args, proc.returncode, output)
    return proc
