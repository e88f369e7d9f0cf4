"""The failover timeline: kernel marks read from dmesg, and the picture drawn from synthetic data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from imagegen.report.timeline import CLOCK_MARK, Timeline, parse_kernel_marks, plot_timeline

T0 = 1_732_560_000.0


BOOTED = T0 - 300.0  # the wall-clock time at which the printk clock read 0 in these examples


def _dmesg(message: str, walltime: float) -> str:
    return f"[{walltime - BOOTED:12.6f}] {message}"


def _clock_mark(walltime: float, printk_lag: float = 0.0) -> str:
    return f"[{walltime - BOOTED + printk_lag:12.6f}] {CLOCK_MARK} {walltime:.9f}"


def test_kernel_marks_are_placed_with_the_clock_mark_in_both_wordings() -> None:
    text = "\n".join([
        _dmesg("bond0: (slave enp1s0): link status definitely down, disabling slave", T0 + 0.11),
        _dmesg("bond0: (slave wlp2s0): making interface the new active one", T0 + 0.12),
        _dmesg("bond1: making interface eth9 the new active one", T0 + 0.2),
        _dmesg("e1000e: eth0 NIC Link is Down", T0 + 0.05),
        "not a dmesg line",
        _clock_mark(T0 + 4.0),
    ])
    marks = parse_kernel_marks(text, "bond0")
    assert [(m.kind, m.slave) for m in marks] == [("down", "enp1s0"), ("active", "wlp2s0")]
    assert abs(marks[0].time - (T0 + 0.11)) < 1e-6
    old = parse_kernel_marks(text, "bond1")
    assert [(m.kind, m.slave) for m in old] == [("active", "eth9")]


def test_the_clock_mark_moves_the_marks_by_the_printk_clocks_offset() -> None:
    # The printk clock runs 40 ms ahead of the wall clock's idea of it: every mark moves back by 40 ms.
    line = _dmesg("bond0: (slave wlp2s0): making interface the new active one", T0 + 0.12)
    marks = parse_kernel_marks(line + "\n" + _clock_mark(T0 + 4.0, printk_lag=0.04), "bond0")
    assert abs(marks[0].time - (T0 + 0.08)) < 1e-6
    # Without a clock mark the printk stamps cannot be placed: no marks rather than wrong ones.
    assert parse_kernel_marks(line, "bond0") == ()


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
    marks = parse_kernel_marks(_dmesg("bond0: (slave wlp2s0): making interface the new active one", T0 + 0.1)
                               + "\n" + _clock_mark(T0 + 2.0), "bond0")
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
