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
    pacer.next_send = pacer.deadline = 1.0  # data waits for the pacer
    # 1.5 ms late: one burst (2 segments) plus the 1500 B it overslept.
    assert pacer.budget(1.0015, 1000) == 2000 + 1000
    assert pacer.deadline is None  # the pass re-arms it if data is left
    pacer.on_sent(3000, 3, now=1.0015)
    assert pacer.next_send == pytest.approx(1.003)  # still on the schedule
    pacer.deadline = pacer.next_send
    # Held back, then woken 50 ms late: at most 10 ms of credit.
    assert pacer.budget(1.053, 1000) == 2000 + 10_000
    pacer.on_sent(12_000, 12, now=1.053)
    assert pacer.next_send == pytest.approx(1.053 - 0.01 + 0.012)
    # Not held back (idle, or ACK-clocked while cwnd-limited): no credit,
    # the schedule restarts now (Linux: tcp_wstamp_ns = max(wstamp, now)).
    assert pacer.budget(5.0, 1000) == 2000
    pacer.on_sent(1000, 1, now=5.0)
    assert pacer.next_send == pytest.approx(5.001)


def test_late_burst_is_stamped_on_the_schedule() -> None:
    """EDT (Linux skb_mstamp_ns = tcp_wstamp_ns): a catch-up burst's
    segments carry their scheduled departure times, so the rate sampler's
    send interval sees the pacing rate, not the burst's line rate."""
    pacer = Pacer()
    pacer.rate, pacer.segments = 1_000_000.0, 10
    pacer.next_send = pacer.deadline = 1.0
    assert pacer.budget(1.0055, 1000) == 7000
    stamps = [pacer.stamp(1.0055, 1000) for _ in range(7)]
    assert stamps == pytest.approx([1.0, 1.001, 1.002, 1.003, 1.004, 1.005, 1.0055])
    pacer.end_burst()
    assert pacer.stamp(1.006, 1000) == 1.006  # outside a paced burst: now
    # On time or early (within the slack): the send time is now.
    pacer.next_send, pacer.deadline = 2.0, 2.0
    assert pacer.budget(1.9995, 1000) == 2000
    assert pacer.stamp(1.9995, 1000) == 1.9995


def test_pacer_averages_its_rate_under_late_wake_ups() -> None:
    """A pacer woken late by up to 8 ms (seeded) still sends at its rate on
    average, and never more than one burst plus MAX_CREDIT ahead of it."""
    import random

    rng = random.Random(7)
    pacer = Pacer()
    rate, mss = 2_500_000.0, 1448
    pacer.rate, pacer.segments = rate, 10
    now = pacer.next_send = 0.0
    pacer.deadline = 0.0
    sent = 0
    worst_ahead = 0.0
    while now < 10.0:
        budget = pacer.budget(now, mss)
        if budget:
            sent += budget
            pacer.end_burst()
            pacer.on_sent(budget, budget // mss, now)
        pacer.deadline = pacer.next_send  # always more to send
        worst_ahead = max(worst_ahead, sent - rate * now)
        now = max(now, pacer.next_send) + rng.choice((0.0, 0.0, 0.0005, 0.002, 0.008))
    assert sent / now == pytest.approx(rate, rel=0.01)
    assert worst_ahead <= rate * (0.001 + 0.01) + 2 * mss


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


def test_segments_leave_at_the_pacing_rate_through_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
