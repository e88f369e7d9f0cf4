"""QMP, the VM's control channel, through qemu.qmp's synchronous API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from imagegen.errors import ImagegenError

log = logging.getLogger("imagegen.vm.qmp")
# A failed connection attempt is raised (and retried) here; the library's own log line would only repeat it.
logging.getLogger("qemu.qmp.protocol").setLevel(logging.CRITICAL)

COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Event:
    """A QMP event; time is QEMU's own wall-clock stamp, comparable with time.time() on this host."""

    name: str
    time: float
    data: Mapping[str, Any]


def _event(msg: Mapping[str, Any]) -> Event:
    ts = msg.get("timestamp", {})
    return Event(str(msg["event"]), ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6,
                 msg.get("data", {}))


def close_connection(conn: QEMUMonitorProtocol) -> None:
    """Close a connection of qemu.qmp's synchronous shim, and collect what an interrupt left on it.

    A call interrupted by Ctrl-C leaves its task waiting on the shim's event loop; the disconnect then
    fails it (ExecInterruptedError: Disconnected), and asyncio logs "Task exception was never retrieved"
    with its traceback unless someone takes that result: here, after the close.
    """
    loop = conn._aloop  # the shim's own loop (no public accessor); tasks of other connections may share it
    waiting = [t for t in asyncio.all_tasks(loop) if not t.done()]
    try:
        conn.close()
    except (OSError, QMPError, EOFError):
        pass  # QEMU already gone: nothing left to close
    finally:
        for task in waiting:
            if task.done() and not task.cancelled():
                task.exception()


class Monitor:
    """One QMP connection. Every event seen is kept in .events, in order, for the report's timeline."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._qmp: QEMUMonitorProtocol | None = None
        self.events: list[Event] = []

    def connect(self, timeout: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
        """Connect, retrying while QEMU sets up its socket; with alive (does QEMU still run?), a QEMU that
        has exited ends the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.socket.exists() and time.monotonic() < deadline and (alive is None or alive()):
                time.sleep(0.05)  # QEMU has not created it yet
                continue
            qmp = QEMUMonitorProtocol(str(self.socket))
            try:
                qmp.connect(negotiate=True)
                break
            except (OSError, QMPError) as e:
                qmp.close()
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    raise ImagegenError(f"cannot connect to QMP at {self.socket}: {e}") from e
                time.sleep(0.2)
        qmp.settimeout(COMMAND_TIMEOUT)
        self._qmp = qmp

    def close(self) -> None:
        if self._qmp is not None:
            close_connection(self._qmp)
            self._qmp = None

    @property
    def connected(self) -> bool:
        return self._qmp is not None

    def cmd(self, command: str, /, **args: Any) -> Any:
        if self._qmp is None:
            raise ImagegenError("QMP is not connected")
        log.debug("qmp %s %s", command, args)
        try:
            return self._qmp.cmd(command, **args)
        except QMPError as e:
            raise ImagegenError(f"QMP {command} failed: {e}") from e

    def _drain(self, wait: float | bool = False) -> list[Event]:
        assert self._qmp is not None
        try:
            new = [_event(m) for m in self._qmp.get_events(wait=wait)]
        except TimeoutError:
            new = []
        self.events.extend(new)
        return new

    def wait_event(self, name: str, timeout: float, since: int = 0, **match: Any) -> Event:
        """The first event `name` (with data matching `match`) at index >= since in .events."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[since:]:
                if ev.name == name and all(ev.data.get(k) == v for k, v in match.items()):
                    return ev
            since = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no QMP event {name} {match or ''} within {timeout:.0f} s")
            self._drain(wait=min(left, 1.0))

    # The commands the scenarios use, named as QMP names them.

    def cont(self) -> None:
        self.cmd("cont")

    def status(self) -> str:
        return str(self.cmd("query-status")["status"])

    def set_link(self, device: str, up: bool) -> float:
        """Set a NIC's link; returns the host wall-clock time just before the command was sent.

        QEMU changes the link while it handles the command, and its answer can reach this process tens
        of milliseconds later under load: the guest was seen to switch its bond before the answer
        arrived. The send time is the lower bound that keeps "after the QMP command" true.
        """
        sent = time.time()
        self.cmd("set_link", name=device, up=up)
        return sent

    def device_del(self, device: str, timeout: float = 60.0) -> Event:
        """Unplug a device and wait until the guest has let it go (DEVICE_DELETED)."""
        mark = len(self.events)
        self.cmd("device_del", id=device)
        return self.wait_event("DEVICE_DELETED", timeout, since=mark, device=device)

    def device_add(self, props: Mapping[str, str]) -> float:
        self.cmd("device_add", **props)
        return time.time()

    def devices(self) -> list[str]:
        """Ids of the devices plugged now (query-pci shows those behind a root port only once the
        guest's firmware has numbered its bus; QOM knows them from the start)."""
        return sorted(p["name"] for p in self.cmd("qom-list", path="/machine/peripheral")
                      if str(p.get("type", "")).startswith("child<"))

    def system_powerdown(self) -> float:
        self.cmd("system_powerdown")
        return time.time()

    def quit(self) -> None:
        try:
            self.cmd("quit")
        except (ImagegenError, EOFError, OSError):
            pass  # QEMU closes the socket as it exits, sometimes before answering
