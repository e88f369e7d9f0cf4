from __future__ import annotations

import json

import pytest

from imagegen.scenarios.bonding import parse_bonding, parse_ip_json
from imagegen.scenarios.probe import parse_ping

# The seed's own output, "Using the wireless interface".
SEED_WIRELESS = """\
Ethernet Channel Bonding Driver: v3.7.1 (April 27, 2011)

Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)
Primary Slave: enp3s0 (primary_reselect always)
Currently Active Slave: wlp2s0
MII Status: up
MII Polling Interval (ms): 100
Up Delay (ms): 0
Down Delay (ms): 0

Slave Interface: wlp2s0
MII Status: up
Speed: Unknown
Duplex: Unknown
Link Failure Count: 0
Permanent HW addr: 68:a3:c4:ac:63:d1
Slave queue ID: 0

Slave Interface: enp3s0
MII Status: down
Speed: Unknown
Duplex: Unknown
Link Failure Count: 2
Permanent HW addr: e8:9a:8f:2a:9e:e1
Slave queue ID: 0
"""

NO_ACTIVE = """\
Ethernet Channel Bonding Driver: v6.12.48

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: None
MII Status: down
MII Polling Interval (ms): 100
"""


def test_bonding_of_the_seed() -> None:
    b = parse_bonding(SEED_WIRELESS)
    assert b.mode == "active-backup"
    assert b.fail_over_mac == "active"
    assert b.primary == "enp3s0" and b.primary_reselect == "always"
    assert b.active == "wlp2s0"
    assert b.miimon_ms == 100
    assert [s.name for s in b.slaves] == ["wlp2s0", "enp3s0"]
    wired = b.slave("enp3s0")
    assert wired is not None and wired.mii_status == "down" and wired.link_failures == 2
    assert wired.permanent_mac == "e8:9a:8f:2a:9e:e1"


def test_bonding_without_active_slave_or_primary() -> None:
    b = parse_bonding(NO_ACTIVE)
    assert b.active is None and b.primary is None and b.slaves == ()
    assert b.fail_over_mac == "none"


def test_bonding_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="Bonding Mode"):
        parse_bonding("hello: world\n")


def test_ip_json_marks_leases_dynamic() -> None:
    text = json.dumps([{
        "ifname": "bond0", "address": "02:00:00:00:00:00", "flags": ["BROADCAST", "MASTER", "UP"],
        "addr_info": [
            {"family": "inet", "local": "192.168.0.2", "prefixlen": 24, "scope": "global",
             "valid_life_time": 4294967295},
            {"family": "inet", "local": "192.168.0.150", "prefixlen": 24, "scope": "global", "dynamic": True,
             "valid_life_time": 3500},
            {"family": "inet6", "local": "fd6c:6162:0:1::1a2", "prefixlen": 128, "scope": "global",
             "valid_life_time": 3600},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link",
             "valid_life_time": 4294967295},
        ]}])
    link = parse_ip_json(text)["bond0"]
    assert link.up and link.mac == "02:00:00:00:00:00"
    assert [str(a) for a in link.with_family(4, dynamic=True)] == ["192.168.0.150/24"]
    assert [str(a) for a in link.with_family(4, dynamic=False)] == ["192.168.0.2/24"]
    assert [str(a) for a in link.with_family(6, dynamic=True)] == ["fd6c:6162:0:1::1a2/128"]


def ping_line(t: float, seq: int) -> str:
    return f"[{t:.6f}] 64 bytes from 192.168.0.2: icmp_seq={seq} ttl=64 time=0.4 ms"


def test_probe_gap_and_losses() -> None:
    lines = [ping_line(1000.0 + 0.02 * i, i + 1) for i in range(10)]  # seq 1..10
    lines += ["[1000.220000] no answer yet for icmp_seq=11", "[1000.240000] no answer yet for icmp_seq=12"]
    lines += [ping_line(1000.26 + 0.02 * i, 13 + i) for i in range(5)]  # seq 13..17
    lines += ["", "--- 192.168.0.2 ping statistics ---",
              "18 packets transmitted, 15 received, 16.6667% packet loss, time 360ms"]
    r = parse_ping("\n".join(lines), 20)
    assert r.sent == 18 and r.received == 15
    assert r.lost_seqs == (11, 12, 18)
    # Last reply before the outage at 1000.18 (seq 10), first after at 1000.26 (seq 13).
    assert r.gap_ms == pytest.approx(80.0, abs=0.1)
    assert r.gap_start == pytest.approx(1000.18) and r.gap_end == pytest.approx(1000.26)
    assert r.replies_after(1000.3) and not r.replies_after(1000.4)


def test_probe_killed_before_summary_counts_to_last_seq() -> None:
    r = parse_ping("\n".join([ping_line(5.0, 1), ping_line(5.02, 2), ping_line(5.1, 6)]), 20)
    assert r.sent == 6 and r.lost_seqs == (3, 4, 5)
    assert r.gap_ms == pytest.approx(80.0, abs=0.1)


def test_probe_with_no_reply() -> None:
    r = parse_ping("3 packets transmitted, 0 received, 100% packet loss, time 40ms\n", 20)
    assert r.received == 0 and r.lost == 3 and r.gap_ms == 0.0 and not r.replies_after(0)


def test_gap_around_an_event_ignores_jitter_elsewhere() -> None:
    times = [100.0 + 0.02 * i for i in range(50)]  # steady until 100.98
    times += [101.1 + 0.02 * i for i in range(50)]  # a 120 ms outage at 100.98
    times += [103.0]  # 1 s of jitter much later
    text = "\n".join(ping_line(t, i + 1) for i, t in enumerate(times))
    r = parse_ping(text, 20)
    assert r.gap_ms == pytest.approx(920.0, abs=0.5)
    gap, start = r.gap_around(100.9, 101.2)
    assert gap == pytest.approx(120.0, abs=0.5) and start == pytest.approx(100.98)
    assert r.gap_around(200.0, 201.0) == (0.0, None)


def test_probe_outage_still_on_when_the_probe_stops() -> None:
    # Replies stop at seq 5; ping -O keeps reporting the unanswered ones until it is interrupted.
    lines = [ping_line(10.0 + 0.02 * i, i + 1) for i in range(5)]  # last reply at 10.08
    lines += [f"[{10.1 + 0.02 * i:.6f}] no answer yet for icmp_seq={6 + i}" for i in range(150)]  # until 13.08
    lines += ["155 packets transmitted, 5 received, 96.7742% packet loss, time 3100ms"]
    r = parse_ping("\n".join(lines), 20)
    assert not r.recovered and r.gap_end is None
    assert r.gap_start == pytest.approx(10.08)
    assert r.gap_ms == pytest.approx(3000.0, abs=0.5)
    # The outage an event at 10.09 caused is the trailing one, not the 20 ms before it.
    assert r.gap_around(10.05, 10.5) == (pytest.approx(3000.0, abs=0.5), pytest.approx(10.08))


def test_probe_unanswered_lines_before_a_reply_do_not_count_as_trailing() -> None:
    lines = [ping_line(1.0, 1), "[1.020000] no answer yet for icmp_seq=2", ping_line(1.04, 3)]
    r = parse_ping("\n".join(lines), 20)
    assert r.recovered and r.gap_ms == pytest.approx(40.0, abs=0.1) and r.sent == 3


def test_probe_killed_before_summary_counts_unanswered_seqs() -> None:
    r = parse_ping("\n".join([ping_line(5.0, 1), "[5.020000] no answer yet for icmp_seq=2"]), 20)
    assert r.sent == 2 and r.lost_seqs == (2,)


def test_probe_reads_ipv6_replies() -> None:
    lines = ["PING fd6c:6162:0:1::1d4 (fd6c:6162:0:1::1d4) 56 data bytes",
             "[7.000000] 64 bytes from fd6c:6162:0:1::1d4: icmp_seq=1 ttl=64 time=19.3 ms",
             "[7.020000] no answer yet for icmp_seq=2",
             "[7.040000] 64 bytes from fd6c:6162:0:1::1d4: icmp_seq=3 ttl=64 time=2.4 ms",
             "3 packets transmitted, 2 received, 33.3333% packet loss, time 40ms"]
    r = parse_ping("\n".join(lines), 20)
    assert (r.sent, r.received, r.lost_seqs) == (3, 2, (2,))
    assert r.gap_ms == pytest.approx(40.0, abs=0.1) and r.recovered
