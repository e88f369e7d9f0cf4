"""Reading systemd's own account of a stop or start: the job messages in the journal, and the order they
say the units were stopped in.

`journalctl -o json _PID=1` gives one JSON object a line; the job messages carry a MESSAGE_ID and the
unit's name:

    {"MESSAGE_ID":"de5b426a63be47a7b6ac3eaac82e2f6f","UNIT":"dhclient@bond0.service",
     "MESSAGE":"Stopping dhclient@bond0.service - ISC dhclient on interface bond0...",
     "__MONOTONIC_TIMESTAMP":"81234567", ...}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

# systemd's catalog (sd-messages.h): a job began, a job ended.
MESSAGE_IDS = {
    "7d4958e842da4a758f6c1cdc7b36dcc5": "starting",
    "39f53479d3a045ac8e11786248231fbf": "started",
    "de5b426a63be47a7b6ac3eaac82e2f6f": "stopping",
    "9d1aaa27d60140bd96365438aad20286": "stopped",
}
# The same messages in plain text, for a journal that lost its fields (a console copy, say).
_TEXT = re.compile(r"^(Starting|Started|Stopping|Stopped) (\S+\.(?:service|device|target|socket|mount))\b")


@dataclass(frozen=True)
class UnitEvent:
    unit: str
    kind: str  # "starting", "started", "stopping", "stopped"
    monotonic_s: float | None  # the guest's CLOCK_MONOTONIC when journald got the message
    index: int  # position in the journal: the order the events happened in


def parse_unit_events(text: str) -> tuple[UnitEvent, ...]:
    """The job messages of a `journalctl -o json` excerpt, in journal order; other lines are ignored."""
    events: list[UnitEvent] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        message = entry.get("MESSAGE")
        kind = MESSAGE_IDS.get(str(entry.get("MESSAGE_ID", "")))
        unit = entry.get("UNIT")
        if kind is None and isinstance(message, str) and (m := _TEXT.match(message)):
            kind, unit = m.group(1).lower(), unit or m.group(2)
        if kind is None or not isinstance(unit, str):
            continue
        try:
            mono = int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        except (KeyError, TypeError, ValueError):
            mono = None
        events.append(UnitEvent(unit, kind, mono, len(events)))
    return tuple(events)


def first(events: Iterable[UnitEvent], unit: str, kind: str) -> UnitEvent | None:
    return next((e for e in events if e.unit == unit and e.kind == kind), None)


@dataclass(frozen=True)
class OrderCheck:
    name: str
    ok: bool
    detail: str


def _at(e: UnitEvent | None) -> str:
    if e is None:
        return "not in the journal"
    return f"at {e.monotonic_s:.3f} s" if e.monotonic_s is not None else f"journal line {e.index}"


def stop_order(events: tuple[UnitEvent, ...], *, master: str, slaves: Iterable[str],
               configs: Iterable[str]) -> list[OrderCheck]:
    """What the article's master@ stop promises, checked against the journal of `systemctl stop master@…`:

    every configuration unit (dhclient@, dhcp6c@, static@) is stopped by that job — its stop begins
    before the master's does, which only the master's RequiredBy= brings about — and has stopped before
    any slave unit begins to stop (the slaves are ordered Before= them); every slave has stopped before
    the master begins to stop (they are After= it). A unit stopped only because its device went away
    with the bond begins to stop after the master did, and fails here.
    """
    slaves, configs = tuple(slaves), tuple(configs)
    checks: list[OrderCheck] = []
    m_stopping = first(events, master, "stopping")
    checks.append(OrderCheck(f"{master} stopped", m_stopping is not None and
                             first(events, master, "stopped") is not None,
                             f"stopping {_at(m_stopping)}, stopped {_at(first(events, master, 'stopped'))}"))
    for c in configs:
        stopping, stopped = first(events, c, "stopping"), first(events, c, "stopped")
        ok = (stopping is not None and m_stopping is not None and stopping.index < m_stopping.index
              and stopped is not None)
        checks.append(OrderCheck(f"{c} stopped as part of the master's stop (RequiredBy=)", ok,
                                 f"began to stop {_at(stopping)}, stopped {_at(stopped)}; "
                                 f"{master} began to stop {_at(m_stopping)}"))
        for s in slaves:
            s_stopping = first(events, s, "stopping")
            ok = stopped is not None and s_stopping is not None and stopped.index < s_stopping.index
            checks.append(OrderCheck(f"{c} stopped before {s} began to stop", ok,
                                     f"{c} stopped {_at(stopped)}, {s} began to stop {_at(s_stopping)}"))
    for s in slaves:
        stopped = first(events, s, "stopped")
        ok = stopped is not None and m_stopping is not None and stopped.index < m_stopping.index
        checks.append(OrderCheck(f"{s} stopped before {master} began to stop", ok,
                                 f"{s} stopped {_at(stopped)}, {master} began to stop {_at(m_stopping)}"))
    return checks


def span(events: tuple[UnitEvent, ...], units: Iterable[str], begin: str, end: str) -> float | None:
    """Seconds from the first `begin` event of any of units to the last `end` event of any of them."""
    wanted = set(units)
    begins = [e.monotonic_s for e in events if e.unit in wanted and e.kind == begin and e.monotonic_s is not None]
    ends = [e.monotonic_s for e in events if e.unit in wanted and e.kind == end and e.monotonic_s is not None]
    if not begins or not ends:
        return None
    return round(max(ends) - min(begins), 2)


def parse_unit_states(text: str, units: Iterable[str]) -> dict[str, str]:
    """`systemctl show --property=Id,ActiveState,SubState -- UNIT...` as unit -> "active/running",
    "inactive/dead", ...; "missing" for a unit the output does not name."""
    states: dict[str, str] = {}
    for block in text.strip().split("\n\n"):
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in kv:
            states[kv["Id"]] = f"{kv.get('ActiveState', '?')}/{kv.get('SubState', '?')}"
    return {u: states.get(u, "missing") for u in units}
