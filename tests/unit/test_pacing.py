"""Pacing (Linux internal TCP pacing): segments leave at the pacing rate,
released by the TCB's timer deadline (which the stack's one heap fires)."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.cc.reno import Reno
from ustack.tcp.pacing import Pacer

MSS = 1460


def data_times(p: Pair) -> list[float]:
    return [e.time for e in p.log if e.direction == "A>B" and e.seg.payload]


def test_pacer_spacing_and_burst_size() -> None:
    pacer = Pacer()
    pacer.rate = 10e6  # 10 MB/s: ~1 ms is 9765 B -> 6 segments per burst
    pacer.segments = 10
    pacer.next_send = 1.0
    assert pacer.budget(1.0, MSS) == 6 * MSS
    pacer.on_sent(6 * MSS, 6, now=1.0)
    assert pacer.next_send == pytest.approx(1.0 + 6 * MSS / 10e6)
    assert pacer.budget(1.0, MSS) == 6 * MSS  # due within the timer slack
    assert pacer.budget(pacer.next_send - 0.0015, MSS) == 0  # too early
    pacer.rate = 100_000.0  # below 1.2 Mbit/s: one segment at a time
    assert pacer.budget(2.0, MSS) == 0 * MSS + MSS  # 10 ms credit: under a segment


def test_late_wake_up_catches_up_but_idle_earns_no_credit() -> None:
    pacer = Pacer()
    pacer.rate, pacer.segments = 1_000_000.0, 10
    pacer.next_send = 1.0
    # 1.5 ms late: one burst (2 segments) plus the 1500 B it overslept.
    assert pacer.budget(1.0015, 1000) == 2000 + 1000
    pacer.on_sent(3000, 3, now=1.0015)
    assert pacer.next_send == pytest.approx(1.003)  # still on the schedule
    pacer.on_sent(1000, 1, now=5.0)  # after idling: at most 10 ms of credit
    assert pacer.next_send == pytest.approx(5.0 - 0.01 + 0.001)
    assert pacer.budget(5.0002, 1000) == 2000 + 9000


def test_setting_decides_who_paces() -> None:
    assert Pair(Settings(congestion="bbr")).a.pacer is not None
    assert Pair(Settings(congestion="cubic")).a.pacer is None
    assert Pair(Settings(congestion="cubic", pacing="on")).a.pacer is not None
    assert Pair(Settings(congestion="bbr", pacing="off")).a.pacer is None
    p = Pair(Settings(congestion="cubic"))
    p.a.set_congestion("bbr")  # TCP_CONGESTION switches pacing on
    assert p.a.pacer is not None
    s = Settings()
    with pytest.raises(ValueError, match="pacing"):
        s.set_from_string("pacing=sometimes")
    s.set_from_string("pacing=on")
    assert s.pacing == "on"


def test_segments_leave_at_the_pacing_rate_through_the_timer(monkeypatch) -> None:
    # 100 segments/s: below 1.2 Mbit/s, so one segment per 10 ms burst.
    rate = 100 * MSS
    monkeypatch.setattr(Reno, "pacing_rate_for", lambda self, srtt, now: rate)
    p = Pair(Settings(congestion="reno", pacing="on"), delay=0.005)
    a, _ = p.establish()
    a.cwnd = 200 * MSS
    assert a.pacer is not None
    a.pacer.rate = rate
    a.pacer.next_send = start = p.now
    a.send(b"x" * (40 * a.mss))
    # The first ten segments go unpaced (Linux: data_segs_out >= 10) ...
    p.pump()
    times = data_times(p)
    assert len(times) == 11 and all(t == start for t in times)
    # ... then the rest waits for the pacing deadline, one per 10 ms.
    assert a.deadline == pytest.approx(a.pacer.next_send)
    seg = a.mss  # 1460 less the timestamp option
    assert a.pacer.next_send == pytest.approx(start + seg / rate)
    p.run(until=start + 1.0)
    times = data_times(p)
    assert len(times) == 40
    gaps = [b - a for a, b in zip(times[10:], times[11:], strict=False)]
    assert all(g == pytest.approx(seg / rate, rel=0.01) for g in gaps)
