"""Pacing with segmentation offload (issue 14, Build 2): a paced burst of
about 1 ms of the pacing rate leaves as one super-segment (Linux
tcp_tso_autosize with sk_pacing_shift 10), so a fast flow costs one timer
wake-up and one link write per millisecond, not one per MSS. Virtual time."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.cc.bbr import Bbr
from ustack.tcp.pacing import BURST_TIME, GSO_MAX, UNPACED_SEGMENTS

RATE = 10e6  # bytes/s: 1 ms is 9765 B


def run_paced(
    monkeypatch: pytest.MonkeyPatch, tso_limit: int
) -> tuple[Pair, list[tuple[float, int]]]:
    monkeypatch.setattr(Bbr, "pacing_rate_for", lambda self, srtt, now: RATE)
    p = Pair(Settings(congestion="bbr", snd_buf=4 << 20, rcv_buf=4 << 20), delay=0.005)
    a, _ = p.establish()
    a.tso_limit = tso_limit
    a.send(b"x" * (2 << 20))
    p.run(until=p.now + 0.3)
    sent = [
        (e.time, len(e.seg.payload))
        for e in p.log
        if e.direction == "A>B" and e.seg.payload
    ]
    return p, sent


def rate_between(sent: list[tuple[float, int]], lo: float, hi: float) -> float:
    """Bytes/s sent in [lo, hi): the 2 MB are done by about 0.25 s."""
    return sum(n for t, n in sent if lo <= t < hi) / (hi - lo)


def test_a_paced_burst_is_one_super_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    p, sent = run_paced(monkeypatch, GSO_MAX)
    mss = p.a.mss
    burst = int(RATE * BURST_TIME) // mss * mss  # 6 segments
    assert burst == 6 * mss
    steady = sent[UNPACED_SEGMENTS + 2 : -1]
    assert len(steady) > 100
    sizes = [n for _, n in steady]
    # Nearly every write is one whole burst: one super-segment per ~1 ms
    # (a few are cut short by cwnd while the window opens).
    assert sizes.count(burst) >= 0.9 * len(sizes)
    assert max(sizes) <= burst + int(0.01 * RATE) // mss * mss  # + catch-up
    # At most two writes share an instant: the next burst may follow in the
    # same wake-up when due within the timer slack (pacing.TIMER_SLACK).
    per_time: dict[float, int] = {}
    for t, _ in steady:
        per_time[t] = per_time.get(t, 0) + 1
    assert max(per_time.values()) <= 2
    # On average the bursts leave at the pacing rate.
    assert rate_between(sent, 0.1, 0.2) == pytest.approx(RATE, rel=0.03)
    assert p.a.pacer is not None and p.a.pacer.rate == RATE


def test_without_offload_the_same_burst_is_mss_segments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, sent = run_paced(monkeypatch, 0)
    mss = p.a.mss
    assert all(n <= mss for _, n in sent)
    # The same schedule: each burst is six MSS segments at one instant
    # (two bursts when the second was due within the timer slack).
    steady = sent[UNPACED_SEGMENTS + 2 : -1]
    per_time: dict[float, int] = {}
    for t, n in steady:
        per_time[t] = per_time.get(t, 0) + n
    counts = list(per_time.values())
    bursts = sum(1 for c in counts if c in (6 * mss, 12 * mss))
    assert bursts >= 0.9 * len(counts)
    assert rate_between(sent, 0.1, 0.2) == pytest.approx(RATE, rel=0.03)
