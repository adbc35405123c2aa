"""Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation,
Linux tcp_rate.c) on hand-built send/ACK sequences."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.rate import RateSample, RateSampler
from ustack.tcp.rtxq import RetransmitQueue, Sent

SEG = 1000


def send(r: RateSampler, q: RetransmitQueue, now: float, n: int = 1) -> list[Sent]:
    out = []
    for _ in range(n):
        idle = not q.recs
        rec = q.append(q.nxt, q.nxt + SEG, now)
        r.on_send(rec, now, idle)
        out.append(rec)
    return out


def ack(r: RateSampler, q: RetransmitQueue, upto: int, now: float,
        sacks: tuple[tuple[int, int], ...] = (), min_rtt: float = 0.0) -> RateSample:
    delivered: list[Sent] = []
    n = q.ack(upto, delivered) if upto > q.una else 0
    for lo, hi in sacks:
        n += q.sack(lo, hi, delivered)
    r.begin(q.in_flight())
    for rec in delivered:
        r.on_delivered(rec)
    return r.finish(n, 0, now, min_rtt)


def test_first_flight_rate_is_bytes_over_the_ack_interval() -> None:
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 10)
    rs = ack(r, q, 10 * SEG, 0.1)
    assert rs.delivered == 10 * SEG
    assert rs.interval == pytest.approx(0.1)
    assert rs.rate == pytest.approx(100_000)
    assert r.delivered == 10 * SEG and r.delivered_time == 0.1


def test_compressed_acks_use_the_longer_send_interval() -> None:
    # Draft 3.3: ACKs bunched in 10 ms for data sent over 100 ms must not
    # read as a 10x faster path: interval = max(send elapsed, ack elapsed).
    r, q = RateSampler(), RetransmitQueue()
    for i in range(11):
        send(r, q, i * 0.01)
    ack(r, q, 10 * SEG, 0.2)  # first_sent_time becomes 0.09; one still out
    for i in range(10):
        send(r, q, 0.2 + i * 0.01)
    rs = ack(r, q, 21 * SEG, 0.30)  # a stretch ACK for all eleven
    assert rs.delivered == 11 * SEG
    # send elapsed: 0.29 - 0.09 = 0.2; ack elapsed: 0.30 - 0.2 = 0.1
    assert rs.interval == pytest.approx(0.2)
    assert rs.rate == pytest.approx(55_000)


def test_sample_shorter_than_min_rtt_is_invalid() -> None:
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 2)
    rs = ack(r, q, SEG, 0.05, min_rtt=0.1)
    assert rs.delivered == SEG and rs.interval == -1.0 and rs.rate == 0.0
    assert r.delivery_rate == 0.0  # not shown either


def test_app_limited_marks_samples_until_the_data_is_delivered() -> None:
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 2)
    r.mark_app_limited(q.in_flight())  # ran out of data with 2 in flight
    assert r.app_limited == 2 * SEG
    send(r, q, 0.01)  # sent while app-limited
    rs = ack(r, q, 2 * SEG, 0.1)
    assert not rs.is_app_limited  # those two left before the mark
    assert r.app_limited == 2 * SEG  # not passed yet (delivered == mark)
    rs = ack(r, q, 3 * SEG, 0.11)
    assert rs.is_app_limited
    assert r.app_limited == 0  # the phase is over: delivered passed the mark
    send(r, q, 0.12)
    assert q.recs[-1].snap is not None and not q.recs[-1].snap[3]


def test_app_limited_sample_updates_delivery_rate_only_when_higher() -> None:
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 10)
    ack(r, q, 10 * SEG, 0.1)
    assert r.delivery_rate == pytest.approx(100_000)
    r.mark_app_limited(0)
    send(r, q, 0.2)
    rs = ack(r, q, 11 * SEG, 0.3)  # 1000 B in 0.1 s, app-limited: lower
    assert rs.is_app_limited and rs.rate == pytest.approx(10_000)
    assert r.delivery_rate == pytest.approx(100_000)
    assert not r.rate_app_limited


def test_retransmission_takes_a_new_snapshot() -> None:
    r, q = RateSampler(), RetransmitQueue()
    (first,) = send(r, q, 0.0)
    send(r, q, 0.0, 3)
    ack(r, q, 0, 0.1, sacks=((SEG, 4 * SEG),))  # three SACKed, the first lost
    q.mark_lost(first)
    q.on_retransmit(first, 0.1)
    r.on_send(first, 0.1, False)
    assert first.snap is not None and first.snap[0] == 3 * SEG
    rs = ack(r, q, 4 * SEG, 0.2)
    assert rs.is_retrans
    assert rs.delivered == SEG  # since the retransmission's snapshot
    assert rs.interval == pytest.approx(0.1)


def test_sacked_record_counts_once_when_the_cumulative_ack_passes_it() -> None:
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 4)
    rs = ack(r, q, 0, 0.1, sacks=((2 * SEG, 4 * SEG),))
    assert rs.delivered == 2 * SEG
    assert all(rec.snap is None for rec in q.recs[2:])  # used up
    rs = ack(r, q, 4 * SEG, 0.12)
    # Only the two newly delivered records give a snapshot; the SACKed ones
    # do not make the sample start over at the old delivered count.
    assert rs.acked_sacked == 2 * SEG
    assert r.delivered == 4 * SEG
    assert rs.delivered == 4 * SEG and rs.interval == pytest.approx(0.12)


def test_split_record_keeps_its_snapshot() -> None:
    r, q = RateSampler(), RetransmitQueue()
    rec = q.append(0, 4 * SEG, 0.0)
    r.on_send(rec, 0.0, True)
    rs = ack(r, q, 0, 0.1, sacks=((2 * SEG, 4 * SEG),))
    assert rs.delivered == 2 * SEG
    assert q.recs[0].snap is not None  # the unSACKed left part still has one


def test_paced_catch_up_burst_keeps_its_scheduled_send_times() -> None:
    """EDT (Linux skb_mstamp_ns): a flow paced at 1 MB/s (a 1000-B segment
    per ms) woken 10 ms late sends 12 segments at once; they keep their
    places on the schedule (0, 1, .. 10 ms) as send times. A later sample
    whose send phase starts at the second of them measures from 1 ms, not
    from the burst's 10 ms: the catch-up does not look like a faster send."""
    from ustack.tcp.pacing import Pacer

    pacer = Pacer()
    pacer.rate, pacer.segments = 1_000_000.0, 10
    r, q = RateSampler(), RetransmitQueue()
    r.pacer = pacer
    pacer.next_send = pacer.deadline = 0.0
    assert pacer.budget(0.010, SEG) == 12 * SEG
    burst = send(r, q, 0.010, 12)
    pacer.end_burst()
    stamps = [rec.snap[4] for rec in burst if rec.snap is not None]
    assert stamps == pytest.approx([i / 1000 for i in range(11)] + [0.010])
    assert all(rec.xmit == 0.010 for rec in burst)  # RTT/RACK: the real time
    ack(r, q, 2 * SEG, 0.050)
    assert r.first_sent_time == pytest.approx(0.001)
    send(r, q, 0.050)  # unpaced (no burst open): stamped now
    rs = ack(r, q, 13 * SEG, 0.052)  # compressed ACK for the rest
    assert rs.delivered == 11 * SEG
    assert rs.send_elapsed == pytest.approx(0.049)  # wall clock: 0.040
    assert rs.interval == pytest.approx(0.049)


def runt(r: RateSampler, q: RetransmitQueue, now: float, size: int) -> Sent:
    idle = not q.recs
    rec = q.append(q.nxt, q.nxt + size, now)
    r.on_send(rec, now, idle)
    return rec


def ack_flags(r: RateSampler, q: RetransmitQueue, upto: int, now: float,
              alert: bool = False) -> RateSample:
    delivered: list[Sent] = []
    n = q.ack(upto, delivered)
    r.begin(q.in_flight())
    for rec in delivered:
        r.on_delivered(rec)
    return r.finish(n, 0, now, 0.0, mss=SEG, alert=alert)


def test_lone_runt_acked_alone_is_maybe_a_delayed_ack() -> None:
    # Linux tcp_clean_rtx_queue's FLAG_ACK_MAYBE_DELAYED: one sub-MSS
    # segment sent into an empty pipe, ACKed alone: the receiver likely held
    # the ACK for its delayed-ACK timer.
    r, q = RateSampler(), RetransmitQueue()
    send(r, q, 0.0, 2)
    ack_flags(r, q, 2 * SEG, 0.1)
    runt(r, q, 0.2, 300)
    rs = ack_flags(r, q, 2 * SEG + 300, 0.34)
    assert rs.is_ack_delayed and rs.rtt == pytest.approx(0.14)


def test_not_a_delayed_ack() -> None:
    r, q = RateSampler(), RetransmitQueue()
    # A full-sized lone segment (Linux flags runts only).
    send(r, q, 0.0)
    assert not ack_flags(r, q, SEG, 0.1).is_ack_delayed
    # A runt sent behind other data in flight, ACKed alone.
    send(r, q, 0.2)
    runt(r, q, 0.2, 300)
    ack_flags(r, q, 2 * SEG, 0.3)
    assert not ack_flags(r, q, 2 * SEG + 300, 0.35).is_ack_delayed
    # Two runts ACKed together: two segments.
    base = q.nxt
    runt(r, q, 0.6, 300)
    runt(r, q, 0.6, 300)
    assert not ack_flags(r, q, base + 600, 0.7).is_ack_delayed
    base += 600
    # A lone runt whose ACK also brought SACK/D-SACK/ECE news.
    runt(r, q, 0.8, 300)
    assert not ack_flags(r, q, base + 300, 0.9, alert=True).is_ack_delayed
    # Without an MSS nothing is a runt.
    runt(r, q, 1.0, 300)
    delivered: list[Sent] = []
    n = q.ack(base + 600, delivered)
    r.begin(0)
    for rec in delivered:
        r.on_delivered(rec)
    assert not r.finish(n, 0, 1.1, 0.0).is_ack_delayed


def test_the_tcb_flags_the_delayed_ack_of_a_lone_runt() -> None:
    # Through loss recovery (which passes the MSS and the ACK's SACK/ECE
    # news): a 100-byte write into an idle connection is ACKed by the
    # receiver's delayed-ACK timer, 40 ms after the 20 ms round trip.
    p = Pair(Settings(congestion="bbr"), delay=0.01)
    a, _ = p.establish()
    s = a.cc.sampler
    assert s is not None
    a.send(b"x" * 100)
    p.run(until=p.now + 1.0)
    assert s.rs.is_ack_delayed and s.rs.rtt == pytest.approx(0.06)
    a.send(b"x" * 2 * a.mss)  # two full segments: ACKed at once
    p.run(until=p.now + 1.0)
    assert not s.rs.is_ack_delayed and s.rs.rtt == pytest.approx(0.02)
