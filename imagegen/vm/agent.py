"""The guest agent (qemu-guest-agent) through qemu.qmp without QMP negotiation.

The agent speaks QMP's wire format but sends no greeting and knows no qmp_capabilities; requests sent
while it is not running yet wait in the virtio port and are answered later, with ids nobody waits for any
more, which qemu.qmp drops. So readiness is "a guest-ping answered", retried with a short timeout.
"""

from __future__ import annotations

import base64
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from imagegen.errors import ImagegenError
from imagegen.vm.qmp import close_connection

log = logging.getLogger("imagegen.vm.agent")
# Answers to abandoned pings are expected while the guest boots; they are not warnings.
logging.getLogger("qemu.qmp").setLevel(logging.ERROR)


class AgentError(ImagegenError):
    pass


class GuestGone(AgentError):
    """The VM ended (QEMU exited: with -no-reboot, a guest kernel panic does that) while we waited."""


@dataclass(frozen=True)
class ExecResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> ExecResult:
        if self.rc != 0:
            raise AgentError(f"in the guest, `{shlex.join(self.argv)}` exited {self.rc}: "
                             f"{(self.stderr or self.stdout).strip()[-500:]}")
        return self


class GuestAgent:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._qga: QEMUMonitorProtocol | None = None

    def _connect(self) -> QEMUMonitorProtocol:
        if self._qga is None:
            qga = QEMUMonitorProtocol(str(self.socket))
            qga.connect(negotiate=False)
            self._qga = qga
        return self._qga

    def close(self) -> None:
        if self._qga is not None:
            close_connection(self._qga)
            self._qga = None

    def cmd(self, command: str, /, timeout: float = 30.0, **args: Any) -> Any:
        try:
            # Inside the try: a socket nobody serves (QEMU gone) is a ConnectError, a QMPError.
            qga = self._connect()
            qga.settimeout(timeout)
            return qga.cmd(command, **args)
        except TimeoutError as e:
            raise AgentError(f"guest agent did not answer {command} within {timeout:.0f} s") from e
        except QMPError as e:
            raise AgentError(f"guest agent {command} failed: {e}") from e

    def wait_ready(self, timeout: float, alive: Callable[[], bool] | None = None) -> float:
        """Ping until the agent answers; returns the seconds waited. With alive (is the VM still
        running?), a VM that has gone stops the wait at once instead of at the timeout."""
        start = time.monotonic()
        while True:
            tried = time.monotonic()
            try:
                self.cmd("guest-ping", timeout=3.0)
                return time.monotonic() - start
            except (AgentError, OSError) as e:
                if alive is not None and not alive():
                    raise GuestGone(f"QEMU exited {time.monotonic() - start:.0f} s after start, before the "
                                    "guest agent answered") from e
                if time.monotonic() - start > timeout:
                    raise AgentError(f"guest agent not answering after {timeout:.0f} s") from e
                if time.monotonic() - tried < 1.0:
                    # Failed at once (no connection), not by the ping's timeout: wait before trying again.
                    self.close()
                    time.sleep(1.0)

    def exec(self, argv: list[str] | tuple[str, ...], timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        """Run argv in the guest and wait for it; a coreutils `timeout` inside bounds it there too.

        guest-exec returns only once stdout and stderr close, so a daemon started this way must
        detach from them (setsid, redirections).
        """
        full = ["timeout", "-k", "3", f"{timeout:.0f}", *argv]
        args: dict[str, Any] = {"path": full[0], "arg": full[1:], "capture-output": True}
        if input is not None:
            args["input-data"] = base64.b64encode(input.encode()).decode()
        pid = self.cmd("guest-exec", **args)["pid"]
        deadline = time.monotonic() + timeout + 10
        delay = 0.05
        while True:
            st = self.cmd("guest-exec-status", pid=pid)
            if st.get("exited"):
                break
            if time.monotonic() > deadline:
                raise AgentError(f"`{shlex.join(argv)}` still running in the guest after {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        rc = st.get("exitcode", -st.get("signal", 0) or -1)
        out = base64.b64decode(st.get("out-data", "")).decode(errors="replace")
        err = base64.b64decode(st.get("err-data", "")).decode(errors="replace")
        if rc == 124:
            err += f"\n(killed by timeout after {timeout:.0f} s)"
        return ExecResult(tuple(argv), rc, out, err)

    def sh(self, script: str, timeout: float = 60.0) -> ExecResult:
        return self.exec(["sh", "-c", script], timeout=timeout)

    def read_file(self, path: str) -> bytes:
        handle = self.cmd("guest-file-open", path=path, mode="r")
        chunks: list[bytes] = []
        try:
            while True:
                r = self.cmd("guest-file-read", handle=handle, count=65536)
                chunks.append(base64.b64decode(r.get("buf-b64", "")))
                if r.get("eof") or not r.get("count"):
                    break
        finally:
            self.cmd("guest-file-close", handle=handle)
        return b"".join(chunks)

    def time(self) -> float:
        """The guest's wall clock, in seconds."""
        return int(self.cmd("guest-get-time")) / 1e9

    def unit_state(self, unit: str) -> str:
        return self.exec(["systemctl", "is-active", unit], timeout=30).stdout.strip()

    def wait_for_unit(self, unit: str, timeout: float, state: str = "active") -> float:
        """Poll until unit is in `state`; a unit that failed ends the wait at once."""
        start = time.monotonic()
        current = ""
        while time.monotonic() - start < timeout:
            current = self.unit_state(unit)
            if current == state:
                return time.monotonic() - start
            if current == "failed" and state != "failed":
                break
            time.sleep(1.0)
        raise AgentError(f"unit {unit} is {current or 'unknown'}, not {state}, after "
                         f"{time.monotonic() - start:.0f} s")
