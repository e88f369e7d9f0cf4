"""The failover timeline: kernel marks read from the journal, and the picture drawn from synthetic data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from imagegen.report.timeline import Timeline, parse_kernel_marks, plot_timeline

T0 = 1_732_560_000.0


def _journal_line(message: str, realtime: float, monotonic_lag_us: int | None = None) -> str:
    rec = {"MESSAGE": message, "__REALTIME_TIMESTAMP": str(round(realtime * 1e6))}
    if monotonic_lag_us is not None:
        rec |= {"__MONOTONIC_TIMESTAMP": str(5_000_000 + monotonic_lag_us), "_SOURCE_MONOTONIC_TIMESTAMP": "5000000"}
    return json.dumps(rec)


def test_kernel_marks_use_the_printk_stamp_and_both_wordings() -> None:
    text = "\n".join([
        _journal_line("bond0: (slave enp1s0): link status definitely down, disabling slave", T0 + 0.15, 40_000),
        _journal_line("bond0: (slave wlp2s0): making interface the new active one", T0 + 0.12),
        _journal_line("bond1: making interface eth9 the new active one", T0 + 0.2),
        _journal_line("e1000e: eth0 NIC Link is Down", T0 + 0.05),
        json.dumps({"MESSAGE": [255, 0], "__REALTIME_TIMESTAMP": "1"}),
        "-- No entries --",
    ])
    marks = parse_kernel_marks(text, "bond0")
    assert [(m.kind, m.slave) for m in marks] == [("down", "enp1s0"), ("active", "wlp2s0")]
    # Received 40 ms after printk stamped it: the mark is at the printk time.
    assert abs(marks[0].time - (T0 + 0.11)) < 1e-6
    old = parse_kernel_marks(text, "bond1")
    assert [(m.kind, m.slave) for m in old] == [("active", "eth9")]


def _replies(gap_start: float, gap_end: float) -> tuple[float, ...]:
    before = [t for t in (T0 - 1 + i * 0.02 for i in range(200)) if t <= gap_start + 1e-9]
    after = [gap_end + i * 0.02 for i in range(150)]
    return tuple(before + after)


def test_gaps_are_the_long_intervals_only() -> None:
    tl = Timeline("failover", 20, _replies(T0 + 0.02, T0 + 0.16), T0)
    gaps = tl.gaps()
    assert len(gaps) == 1
    assert abs((gaps[0][1] - gaps[0][0]) * 1000 - 140) < 1


def test_plot_writes_an_svg_with_the_gap_and_the_marks(tmp_path: Path) -> None:
    marks = parse_kernel_marks(_journal_line("bond0: (slave wlp2s0): making interface the new active one",
                                             T0 + 0.1), "bond0")
    tl = Timeline("failover cycle 1", 20, _replies(T0 + 0.02, T0 + 0.16), T0, marks)
    out = plot_timeline(tl, tmp_path / "artifacts" / "timeline-failover.svg")
    assert out.is_file()
    svg = out.read_text()
    ET.fromstring(svg)  # well-formed XML
    assert "gap 140 ms" in svg
    assert "wlp2s0 active" in svg
    assert "QMP set_link" in svg
    # Same data, same bytes: the picture can be compared between runs and kept in a repository.
    again = plot_timeline(tl, tmp_path / "again.svg")
    assert again.read_text() == svg
    assert not list(tmp_path.glob("**/.*.tmp*"))


def test_a_long_outage_widens_the_window(tmp_path: Path) -> None:
    tl = Timeline("failover", 20, _replies(T0 + 0.5, T0 + 3.1), T0)
    svg = plot_timeline(tl, tmp_path / "long.svg").read_text()
    assert "gap 2600 ms" in svg
