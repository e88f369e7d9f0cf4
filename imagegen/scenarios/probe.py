"""The outage probe: ping every few ms from the AP's namespace to the bond, timestamped by ping -D.

The numbers come from ping's own lines, e.g.

    [1732560000.123456] 64 bytes from 192.168.0.2: icmp_seq=12 ttl=64 time=0.512 ms
    [1732560000.123456] 64 bytes from fd6c:6162:0:1::1d4: icmp_seq=12 ttl=64 time=0.512 ms
    [1732560000.143981] no answer yet for icmp_seq=13
    40 packets transmitted, 38 received, 5% packet loss, time 801ms
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The source is an IPv4 or an IPv6 address: the latter has colons of its own.
_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from \S+?: icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)")
_SUMMARY = re.compile(r"^(\d+) packets transmitted, (\d+) (?:packets )?received")


@dataclass(frozen=True)
class ProbeResult:
    interval_ms: float
    sent: int
    received: int
    lost_seqs: tuple[int, ...]
    # Largest time between two consecutive replies: the outage as the peer saw it. An outage that
    # lasts until the probe stops counts up to the probe's last line.
    gap_ms: float
    gap_start: float | None  # guest wall clock of the last reply before the largest gap
    gap_end: float | None  # None: traffic had not come back when the probe stopped
    first_reply: float | None
    last_reply: float | None
    reply_times: tuple[float, ...] = ()
    # Set when the last probes went unanswered: ping's last "no answer yet" line.
    unanswered_until: float | None = None

    @property
    def lost(self) -> int:
        return len(self.lost_seqs)

    def replies_after(self, t: float) -> bool:
        return self.last_reply is not None and self.last_reply > t

    def gap_around(self, t0: float, t1: float) -> tuple[float, float | None]:
        """The largest gap (ms) between consecutive replies that overlaps [t0, t1], and its start.

        The overall largest gap of a long probe can be scheduling jitter far from the event; this is
        the outage the event caused.
        """
        best, start = 0.0, None
        for a, b, _ in _gaps(self.reply_times, self.unanswered_until):
            if b >= t0 and a <= t1 and b - a > best:
                best, start = b - a, a
        return round(best * 1000, 1), start

    @property
    def recovered(self) -> bool:
        return self.unanswered_until is None


def _gaps(times: tuple[float, ...], unanswered_until: float | None) -> list[tuple[float, float, bool]]:
    """(start, end, recovered) of each interval between replies, and of the trailing outage."""
    gaps = [(a, b, True) for a, b in zip(times, times[1:], strict=False)]
    if times and unanswered_until is not None:
        gaps.append((times[-1], unanswered_until, False))
    return gaps


def parse_ping(text: str, interval_ms: float) -> ProbeResult:
    replies: dict[int, float] = {}
    unanswered: dict[int, float] = {}
    sent: int | None = None
    for line in text.splitlines():
        m = _REPLY.match(line.strip())
        if m:
            replies.setdefault(int(m.group(2)), float(m.group(1)))
            continue
        n = _NO_ANSWER.match(line.strip())
        if n:
            unanswered[int(n.group(2))] = float(n.group(1))
            continue
        s = _SUMMARY.match(line.strip())
        if s:
            sent = int(s.group(1))
    highest = max(replies, default=0)
    if sent is None:
        # Killed before it printed its summary: count up to the last sequence number seen.
        sent = max(highest, max(unanswered, default=0))
    # ping numbers from 1; replies that arrive out of order still count once.
    lost = tuple(seq for seq in range(1, sent + 1) if seq not in replies)
    times = tuple(sorted(replies.values()))
    # ping -O reports each probe still unanswered when the next one goes out; those after the last
    # reply mean the outage was still on when the probe stopped.
    trailing = [t for seq, t in unanswered.items() if seq > highest and seq not in replies]
    unanswered_until = max(trailing) if trailing and times and max(trailing) > times[-1] else None
    gap, start, end = 0.0, None, None
    for a, b, recovered in _gaps(times, unanswered_until):
        if b - a > gap:
            gap, start, end = b - a, a, (b if recovered else None)
    return ProbeResult(interval_ms=interval_ms, sent=sent, received=len(replies), lost_seqs=lost,
                       gap_ms=round(gap * 1000, 1), gap_start=start, gap_end=end,
                       first_reply=times[0] if times else None, last_reply=times[-1] if times else None,
                       reply_times=times, unanswered_until=unanswered_until)
