"""The timeline of one failover or failback: when the AP's probe got replies, where the gaps are, when QMP
changed the link and when the guest kernel switched the bond's active slave.

All times are on the guest's wall clock (ping -D uses it, and the kernel's marks are moved onto it with a
clock mark); the QMP command's host time is moved onto it by the caller with the measured clock offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# What bonding prints on a switch, in the two wordings kernels have used:
#   "bond0: (slave wlp2s0): making interface the new active one"       (5.x and later)
#   "bond0: making interface wlp2s0 the new active one"                (older)
# and on the link changes that lead to it:
#   "bond0: (slave enp3s0): link status definitely down, disabling slave"
_ACTIVE = re.compile(r"^(?P<bond>\S+): (?:\(slave (?P<slave>\S+)\): making interface the new active one"
                     r"|making interface (?P<old>\S+) the new active one)")
_LINK = re.compile(r"^(?P<bond>\S+): \(slave (?P<slave>\S+)\): link status definitely (?P<state>up|down)")


@dataclass(frozen=True)
class KernelMark:
    time: float
    text: str
    # "active": the bond switched to this slave; "up"/"down": bonding's verdict on a slave's link.
    kind: str
    slave: str


@dataclass(frozen=True)
class Timeline:
    title: str
    interval_ms: float
    reply_times: tuple[float, ...]
    qmp_time: float
    marks: tuple[KernelMark, ...] = ()
    # Gaps from this length on are drawn and labelled: a few probe intervals, so that jitter is not.
    gap_threshold_ms: float = 60.0
    # The probe's last unanswered request, when replies had not come back before it stopped.
    unanswered_until: float | None = None

    def gaps(self) -> list[tuple[float, float]]:
        """(start, end) of every interval between consecutive replies of at least gap_threshold_ms, and of
        an outage still on when the probe stopped."""
        t = self.reply_times
        ends = [*t[1:], self.unanswered_until] if t and self.unanswered_until is not None else list(t[1:])
        return [(a, b) for a, b in zip(t, ends, strict=False) if (b - a) * 1000 >= self.gap_threshold_ms]


# Written to /dev/kmsg with the guest's wall-clock time in it (Machine.kernel_marks): the kernel
# stamps it like its own messages, which ties the printk clock to the wall clock at that moment.
CLOCK_MARK = "imagegen-clock"
_DMESG = re.compile(r"^\[\s*(?P<stamp>\d+\.\d+)\] (?P<msg>.*)$")


def parse_kernel_marks(text: str, bond: str | None = None) -> tuple[KernelMark, ...]:
    """The bond's switch and link marks from `dmesg` output that ends with a clock mark, on the wall clock.

    printk stamps its messages with the kernel's local clock, which is neither the wall clock nor
    CLOCK_MONOTONIC: the two differ by an amount fixed at boot (tens of milliseconds under TCG), so the
    journal's monotonic stamps cannot place a kernel message on the wall clock to that precision. The
    clock mark can: its printk stamp and the wall-clock time inside it were taken a moment apart. Without
    one there is no way to place the marks, and none are returned.
    """
    offset: float | None = None
    found: list[tuple[float, str]] = []
    for line in text.splitlines():
        m = _DMESG.match(line.strip())
        if m is None:
            continue
        stamp, msg = float(m["stamp"]), m["msg"]
        if msg.startswith(CLOCK_MARK + " "):
            try:
                offset = float(msg.split()[1]) - stamp
            except (IndexError, ValueError):
                continue
        else:
            found.append((stamp, msg))
    if offset is None:
        return ()
    marks: list[KernelMark] = []
    for stamp, msg in found:
        active, link = _ACTIVE.match(msg), _LINK.match(msg)
        hit = active or link
        if hit is None or (bond is not None and hit["bond"] != bond):
            continue
        if active:
            marks.append(KernelMark(stamp + offset, msg, "active", active["slave"] or active["old"]))
        else:
            assert link is not None
            marks.append(KernelMark(stamp + offset, msg, link["state"], link["slave"]))
    return tuple(sorted(marks, key=lambda k: k.time))


def plot_timeline(tl: Timeline, path: Path, *, window: tuple[float, float] = (-0.5, 1.5)) -> Path:
    """Draw tl around its QMP command (window in seconds relative to it) into path (.svg or .png).

    The window grows to the end of any gap that begins inside it, so that a long outage is seen whole.
    """
    # Imported here: matplotlib takes most of a second to import, which every imagegen command would pay.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a build host
    import matplotlib.pyplot as plt

    lo, hi = tl.qmp_time + window[0], tl.qmp_time + window[1]
    hi = max([hi, *(b + 0.2 for a, b in tl.gaps() if lo <= a <= hi)])

    def ms(t: float) -> float:
        return (t - tl.qmp_time) * 1000

    replies = [ms(t) for t in tl.reply_times if lo <= t <= hi]
    fig, ax = plt.subplots(figsize=(9, 2.8))
    try:
        ax.vlines(replies, 0.15, 0.85, color="tab:green", linewidth=0.8, label=f"probe reply ({tl.interval_ms:g} ms)")
        for a, b in tl.gaps():
            if b < lo or a > hi:
                continue
            ax.axvspan(ms(a), ms(b), color="tab:red", alpha=0.18)
            open_end = " (not over at probe end)" if b == tl.unanswered_until else ""
            ax.annotate(f"gap {1000 * (b - a):.0f} ms{open_end}", xy=((ms(a) + ms(b)) / 2, 0.92), ha="center",
                        va="bottom", fontsize=8, color="tab:red")
        ax.axvline(0, color="black", linestyle="--", linewidth=1.2, label="QMP set_link")
        styles = {"active": ("tab:blue", "-", "new active slave"), "down": ("tab:orange", ":", "link down"),
                  "up": ("tab:purple", ":", "link up")}
        seen: set[str] = set()
        for k in tl.marks:
            if not lo <= k.time <= hi:
                continue
            color, style, label = styles[k.kind]
            ax.axvline(ms(k.time), color=color, linestyle=style, linewidth=1.2,
                       label=f"kernel: {label}" if k.kind not in seen else None)
            seen.add(k.kind)
            ax.annotate(f"{k.slave} {'active' if k.kind == 'active' else k.kind}", xy=(ms(k.time), 0.05),
                        xytext=(3, 0), textcoords="offset points", fontsize=7, color=color, rotation=90,
                        va="bottom")
        ax.set_xlim(ms(lo), ms(hi))
        ax.set_ylim(0, 1.15)
        ax.set_yticks([])
        ax.set_xlabel("ms after the QMP command (guest clock)")
        ax.set_title(tl.title, fontsize=10)
        ax.legend(loc="upper left", fontsize=7, ncols=4, frameon=False, bbox_to_anchor=(0, -0.3))
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        # Text stays text (small, searchable); a fixed salt for the element ids and no date keep the
        # file the same for the same data.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "imagegen"}):
            fig.savefig(tmp, metadata={"Date": None} if path.suffix == ".svg" else None)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
