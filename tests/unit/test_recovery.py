"""Loss detection and recovery: RACK-TLP (RFC 8985), PRR (RFC 6937), undo
(RFC 2883, 3522, 5682), D-SACK, restart after idle. Virtual time throughout."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.prr import Prr
from ustack.tcp.rack import Rack
from ustack.tcp.rtxq import RetransmitQueue
from ustack.wire.tcp import TcpSegment

MSS = 1000
NO_TS = Settings(msl=1.0, timestamps=False)


def queue_of(n: int, sent_at: float = 0.0) -> RetransmitQueue:
    q = RetransmitQueue(1)
    for i in range(n):
        q.append(1 + i * MSS, 1 + (i + 1) * MSS, sent_at)
    return q


# ----------------------------------------------------------------- RACK


def test_rack_marks_lost_only_after_the_reordering_window() -> None:
    q = queue_of(5)
    rack = Rack()
    delivered: list = []
    q.sack(1 + 4 * MSS, 1 + 5 * MSS, delivered)  # the last one arrived
    prior_fack = 1
    for rec in delivered:
        rack.update(rec, 0.1, prior_fack)
    assert rack.rtt == pytest.approx(0.1) and rack.min_rtt == pytest.approx(0.1)
    # One SACKed segment, no recovery: the window is min_rtt / 4 = 25 ms.
    reo = rack.reo_wnd(False, 1, 0.1)
    assert reo == pytest.approx(0.025)
    lost: list = []
    wait = rack.detect_loss(q, 0.1, reo, lost)
    assert lost == [] and wait == pytest.approx(0.025)
    wait = rack.detect_loss(q, 0.124, reo, lost)
    assert lost == [] and wait == pytest.approx(0.001)
    rack.detect_loss(q, 0.126, reo, lost)
    assert [r.start for r in lost] == [1, 1 + MSS, 1 + 2 * MSS, 1 + 3 * MSS]
    assert q.pending == 4 * MSS and q.in_flight() == 0


def test_rack_window_is_zero_with_dupthresh_sacks_until_reordering_seen() -> None:
    rack = Rack()
    rack.min_rtt = 0.1
    assert rack.reo_wnd(False, 3, 0.1) == 0.0  # RFC 8985 6.2 step 4
    assert rack.reo_wnd(True, 0, 0.1) == 0.0
    rack.reordering_seen = True
    assert rack.reo_wnd(True, 3, 0.1) == pytest.approx(0.025)
    rack.on_dsack(snd_nxt=10_000)  # D-SACK: one more quarter min_rtt
    rack.on_dsack(snd_nxt=10_000)  # same round: no further widening
    assert rack.reo_wnd(True, 3, 0.1) == pytest.approx(0.05)
    assert rack.reo_wnd(True, 3, 0.03) == pytest.approx(0.03)  # capped at SRTT


def test_rack_detects_reordering_below_the_highest_sack() -> None:
    q = queue_of(3)
    rack = Rack()
    delivered: list = []
    q.sack(1 + 2 * MSS, 1 + 3 * MSS, delivered)
    rack.update(delivered[0], 0.1, 1)
    fack = q.fack
    delivered.clear()
    q.ack(1 + MSS, delivered)  # segment 1 arrived late, never resent
    rack.update(delivered[0], 0.11, fack)
    assert rack.reordering_seen


# ----------------------------------------------------------------- PRR


def test_prr_sends_in_proportion_then_ends_at_ssthresh() -> None:
    """RFC 6937 section 5's first example: cwnd 20, one loss, ssthresh 10;
    each of the 19 duplicate ACKs delivers a segment. PRR sends one segment
    per two delivered (RFC 6675 would wait, then burst)."""
    prr = Prr()
    prr.start(10 * MSS, 20 * MSS)
    pipe = 19 * MSS  # the lost segment left the pipe
    sends = []
    for _ in range(19):
        pipe -= MSS  # one segment delivered
        cwnd = prr.cwnd(MSS, pipe, MSS)
        n = -(-max(0, cwnd - pipe) // MSS)  # whole segments, as the TCB sends
        prr.on_sent(n * MSS)
        pipe += n * MSS
        sends.append(n)
    assert sends[:6] == [1, 0, 1, 0, 1, 0]  # the first is the fast retransmit
    assert sum(sends) == 10  # ceil(19 * 10 / 20) segments over the episode
    assert pipe == 10 * MSS  # ssthresh when recovery ends


def test_prr_ssrb_rebuilds_at_most_one_mss_beyond_delivered() -> None:
    prr = Prr()
    prr.start(10 * MSS, 20 * MSS)
    prr.on_sent(MSS)
    pipe = 4 * MSS  # heavy losses: pipe far below ssthresh
    cwnd = prr.cwnd(MSS, pipe, MSS)
    assert cwnd - pipe == 2 * MSS  # delivered (1) + 1 MSS


# ----------------------------------------------------------------- TCB level


def drop_first(seqs: set[int]):  # type: ignore[no-untyped-def]
    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and seg.seq in seqs:
            seqs.discard(seg.seq)
            return True
        return False

    return drop


def send_and_finish(p: Pair, data: bytes, limit: float = 30.0) -> bytes:
    a, b = p.a, p.b
    assert b is not None
    a.send(data)
    a.flush(p.now)
    got = b""
    t0 = p.now
    while len(got) < len(data) and p.now < t0 + limit:
        p.run(until=p.now + 0.01)
        got += b.read(1 << 22)
    return got


@pytest.mark.parametrize("lost", [1, 3])
def test_tail_loss_probe_repairs_a_tail_loss_without_rto(lost: int) -> None:
    p = Pair(delay=0.05, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    start = a.snd_max
    p.drop = drop_first({start + i * MSS for i in range(10 - lost, 10)})
    data = b"t" * (10 * MSS)
    assert send_and_finish(p, data) == data
    p.run(until=p.now + 1.0)  # the last ACKs come back
    assert a.snd_una == a.snd_max
    assert a.counters["TCPLossProbes"] == 1
    assert a.counters["TCPTimeouts"] == 0
    assert a.cwnd >= 5 * MSS  # no collapse to one segment
    probe = [e for e in p.sent("A>B") if e.seg.seq == start + 9 * MSS][1]
    last_ack = max(e.time for e in p.sent("B>A") if e.time < probe.time) + 0.05
    if lost == 3:
        # More than one segment in flight: PTO = 2 SRTT (RFC 8985 7.2).
        assert probe.time - last_ack == pytest.approx(2 * 0.1, abs=0.01)
    else:
        # One: 2 SRTT or 1.5 SRTT + the worst-case delayed ACK (0.35 s),
        # but the probe takes the RTO's place if that comes first.
        assert probe.time - last_ack <= 0.35 + 1e-9


def test_lost_retransmission_repaired_without_rto() -> None:
    p = Pair(delay=0.02, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    a.cwnd = 40 * MSS
    lost = a.snd_max + 5 * MSS
    drops = {"n": 2}

    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.seq == lost and seg.payload and drops["n"]:
            drops["n"] -= 1  # the original and its first retransmission
            return True
        return False

    p.drop = drop
    data = b"r" * (200 * MSS)
    assert send_and_finish(p, data) == data
    assert drops["n"] == 0
    assert a.counters["TCPLostRetransmit"] >= 1
    assert a.counters["TCPTimeouts"] == 0


def test_each_hole_is_resent_once() -> None:
    """Several losses in one window: RFC 6675 / RACK resend each hole once
    (the old partial-ACK rule sent one hole up to three times)."""
    p = Pair(delay=0.05, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    a.cwnd = 40 * MSS
    base = a.snd_max
    holes = {base + i * MSS for i in (3, 7, 12, 20)}
    p.drop = drop_first(set(holes))
    data = b"h" * (30 * MSS)
    assert send_and_finish(p, data) == data
    for seq in holes:
        copies = [e for e in p.sent("A>B") if e.seg.seq == seq and e.seg.payload]
        assert len(copies) == 2, seq
    assert a.counters["TCPTimeouts"] == 0
    assert a.counters["TCPSackRecovery"] == 1  # one episode, one reduction


def test_no_second_reduction_after_rto_until_recovery_point() -> None:
    """RFC 6582 3.2 step 1 / RFC 6675 5.1: duplicate ACKs caused by the
    go-back-N resends after an RTO do not start a fast recovery."""
    p = Pair(delay=0.05, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    a.cwnd = 20 * MSS
    p.drop = lambda d, s: d == "A>B" and bool(s.payload) and p.now < 1.0
    data = b"g" * (20 * MSS)
    a.send(data)
    a.flush(p.now)
    p.run(until=p.now + 0.9)  # a probe, then the RTO
    assert a.counters["TCPTimeouts"] >= 1
    ssthresh = a.ssthresh
    p.drop = lambda d, s: False
    got = b""
    while len(got) < len(data) and p.now < 30:
        p.run(until=p.now + 0.01)
        got += b.read(1 << 22)
    assert got == data
    assert a.counters["TCPSackRecovery"] == 0
    assert a.ssthresh >= ssthresh


@pytest.mark.parametrize("timestamps", [False, True])
def test_spurious_rto_is_undone(timestamps: bool) -> None:
    """A delay spike longer than the RTO: the originals' ACKs arrive after
    the timeout. F-RTO (RFC 5682) or, with timestamps, Eifel (RFC 3522)
    see it and restore the window."""
    settings = Settings(msl=1.0, timestamps=timestamps)
    p = Pair(delay=0.01, mss=MSS, settings=settings)
    a, b = p.establish()
    data = b"s" * (50 * MSS)
    assert send_and_finish(p, data) == data
    cwnd = a.cwnd
    spike = {"until": p.now + 0.6}
    p.net = lambda d, s: [0.5] if d == "B>A" and p.now < spike["until"] else [0.0]
    more = b"m" * (20 * MSS)
    assert send_and_finish(p, more) == more
    p.run(until=p.now + 2.0)  # until the late ACKs are in
    assert a.snd_una == a.snd_max
    assert a.counters["TCPTimeouts"] >= 1
    assert a.counters["TCPSpuriousRTOs"] >= 1
    assert a.cwnd >= cwnd  # the window came back (RFC 4015 response)


def test_dsack_reported_for_a_duplicate_segment() -> None:
    p = Pair(mss=MSS, settings=NO_TS)
    a, b = p.establish()
    a.send(b"d" * 500)
    a.flush(p.now)
    p.pump()
    seg = next(e.seg for e in p.sent("A>B") if e.seg.payload)
    n = len(p.log)
    p.inject_b(seg)  # a spurious retransmission of data B already has
    ack = next(e.seg for e in p.log[n:] if e.direction == "B>A")
    assert ack.sack_blocks[0] == (seg.seq, seg.seq + 500)  # RFC 2883 4
    assert b.counters["TCPDSACKOldSent"] == 1
    assert a.counters["TCPDSACKRecv"] == 1


def test_sack_blocks_ride_on_data_segments_when_there_is_room() -> None:
    p = Pair(mss=MSS, settings=NO_TS, delay=0.05)
    a, b = p.establish()
    hole = a.snd_max
    p.drop = drop_first({hole})
    a.send(b"x" * (2 * MSS))
    a.flush(p.now)
    p.run(until=p.now + 0.06)  # B holds the second segment, not the first
    assert len(b.ooo) == 1
    b.send(b"reply")  # B's data segment should carry the SACK block
    b.flush(p.now)
    p.pump()
    seg = [e.seg for e in p.sent("B>A") if e.seg.payload][-1]
    assert seg.sack_blocks == ((hole + MSS, hole + 2 * MSS),)


def test_restart_after_idle_sends_at_most_the_initial_window() -> None:
    p = Pair(delay=0.01, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    data = b"i" * (300 * MSS)
    assert send_and_finish(p, data) == data
    assert a.cwnd > 20 * MSS
    p.run(until=p.now + 5.0)  # idle for many RTOs
    n = len(p.log)
    a.send(b"j" * (100 * MSS))
    a.flush(p.now)
    p.pump()
    burst = [e for e in p.log[n:] if e.direction == "A>B" and e.seg.payload]
    assert len(burst) == 10  # RFC 5681 4.1: back to the restart window


def test_idle_restart_off_keeps_the_window() -> None:
    settings = Settings(msl=1.0, timestamps=False, slow_start_after_idle=False)
    p = Pair(delay=0.01, mss=MSS, settings=settings)
    a, b = p.establish()
    data = b"i" * (300 * MSS)
    assert send_and_finish(p, data) == data
    p.run(until=p.now + 5.0)
    cwnd = a.cwnd
    a.send(b"j" * (100 * MSS))
    a.flush(p.now)
    assert a.cwnd == cwnd


def test_application_limited_sender_does_not_grow_cwnd() -> None:
    """RFC 7661: a sender that never fills its window keeps it."""
    p = Pair(delay=0.01, mss=MSS, settings=NO_TS)
    a, b = p.establish()
    cwnd = a.cwnd
    for _ in range(200):  # two segments per RTT, far below cwnd (10)
        a.send(b"a" * (2 * MSS))
        a.flush(p.now)
        p.run(until=p.now + 0.02)
        b.read(1 << 20)
    assert a.cwnd == cwnd


@pytest.mark.parametrize("sack", [True, False])
def test_loss_in_a_small_window_needs_no_rto(sack: bool) -> None:
    """Limited transmit (RFC 3042): with cwnd = 3 segments, one loss yields
    only two duplicate ACKs; each lets one new segment out (they leave the
    pipe), whose ACKs complete the three that start fast retransmit."""
    settings = Settings(msl=1.0, timestamps=False, sack=sack, tlp=False)
    p = Pair(delay=0.05, mss=MSS, settings=settings)
    a, b = p.establish()
    # One exchange first: the first ACK after the handshake updates the
    # window (scaling starts), so it would not count as a duplicate.
    assert send_and_finish(p, b"w") == b"w"
    p.run(until=p.now + 0.5)
    a.cwnd = 3 * MSS
    a.ssthresh = 3 * MSS
    p.drop = drop_first({a.snd_max})
    data = b"l" * (8 * MSS)
    assert send_and_finish(p, data) == data
    assert a.counters["TCPTimeouts"] == 0
    assert a.counters["TCPSackRecovery" if sack else "TCPRenoRecovery"] == 1


def test_only_dsacks_of_our_retransmissions_count_for_undo() -> None:
    """A duplicate made by the network (or from before the episode) must not
    undo a real reduction (Linux counts D-SACKs after undo_marker only)."""
    from collections import Counter

    from ustack.tcp.cc.reno import Reno
    from ustack.tcp.recovery import LossRecovery

    rec = LossRecovery(Reno(MSS, 10 * MSS), Counter(), sack_ok=True)
    rec.reset(1)
    q = rec.queue
    for i in range(6):
        q.append(1 + i * MSS, 1 + (i + 1) * MSS, 0.0)
    q.ack(1 + 2 * MSS, [])
    rec._start_undo()  # the episode starts at offset 2001
    q.mark_lost(q.recs[0])
    rec.on_retransmit(q.recs[0], 0.1, 100)
    assert rec._dsack_segs((1, 1 + MSS)) == 0  # older than the episode
    assert rec._dsack_segs((1 + 3 * MSS, 1 + 4 * MSS)) == 0  # never resent
    assert rec._dsack_segs((1 + 2 * MSS, 1 + 3 * MSS)) == 1  # our resend


def sack_sender(n: int = 10):  # type: ignore[no-untyped-def]
    """A SACK sender (Reno) with `n` one-MSS segments sent at t=0."""
    from collections import Counter

    from ustack.tcp.cc.reno import Reno
    from ustack.tcp.recovery import LossRecovery

    rec = LossRecovery(Reno(MSS, 10 * MSS), Counter(), sack_ok=True)
    rec.reset(1)
    for i in range(n):
        rec.queue.append(1 + i * MSS, 1 + (i + 1) * MSS, 0.0)
    return rec


def seg(i: int) -> tuple[int, int]:
    return (1 + i * MSS, 1 + (i + 1) * MSS)


def test_retransmitted_ranges_are_known_before_and_after_their_ack() -> None:
    q = queue_of(6)
    q.mark_lost(q.recs[1])
    q.on_retransmit(q.recs[1], 0.1)
    assert q.retransmitted(*seg(1)) and not q.retransmitted(*seg(2))
    q.ack(1 + 4 * MSS, [])  # segment 1's record leaves the queue
    assert q.retransmitted(*seg(1))
    assert not q.retransmitted(*seg(0)) and not q.retransmitted(*seg(3))
    assert not q.retransmitted(*seg(5))  # still queued, sent once


def test_dsack_of_a_network_duplicate_does_not_widen_the_reordering_window() -> None:
    """dup=2%: the receiver D-SACKs copies the network made of our
    originals. Only a D-SACK of data we retransmitted says a retransmission
    was spurious (RFC 8985 6.2 step 4; Linux tcp_dsack_seen)."""
    rec = sack_sender()
    rack = rec.rack
    rack.reordering_seen = True
    rec.on_ack(1 + 2 * MSS, [], None, False, 0.1, None, 0.1)
    assert rack.min_rtt == pytest.approx(0.1)
    # Segment 1 arrived twice (never resent): below the ACK ...
    rec.on_ack(1 + 2 * MSS, [], seg(1), True, 0.101, None, 0.1)
    # ... and segment 5, SACKed, then its copy inside the SACK block.
    rec.on_ack(1 + 2 * MSS, [seg(5)], None, False, 0.102, None, 0.1)
    rec.on_ack(1 + 2 * MSS, [seg(5)], seg(5), True, 0.103, None, 0.1)
    assert rec.counters["TCPDSACKRecv"] == 2
    assert rack.reo_wnd_mult == 1
    assert rack.reo_wnd(True, 1, 0.1) == pytest.approx(0.025)


def test_dsack_of_a_spurious_retransmission_widens_the_window_once_per_round() -> None:
    rec = sack_sender()
    q, rack = rec.queue, rec.rack
    rec.on_ack(1 + MSS, [seg(3)], None, False, 0.1, None, 0.1)
    q.mark_lost(q.recs[0])  # segment 1, resent; then the original shows up
    rec.on_retransmit(q.recs[0], 0.11, 110)
    rack.reordering_seen = True
    rec.on_ack(1 + 3 * MSS, [seg(3)], None, False, 0.115, None, 0.1)
    rec.on_ack(1 + 4 * MSS, [], seg(1), False, 0.12, None, 0.1)
    assert rack.reo_wnd_mult == 2
    rec.on_ack(1 + 4 * MSS, [], seg(1), True, 0.121, None, 0.1)  # same round
    assert rack.reo_wnd_mult == 2


def test_dsack_without_reordering_seen_or_for_a_probe_does_not_widen() -> None:
    rec = sack_sender()
    q, rack = rec.queue, rec.rack
    q.mark_lost(q.recs[0])
    rec.on_retransmit(q.recs[0], 0.05, 50)
    rec.on_ack(1 + MSS, [], None, False, 0.1, None, 0.1)
    rec.on_ack(1 + MSS, [], seg(0), True, 0.101, None, 0.1)
    assert not rack.reordering_seen and rack.reo_wnd_mult == 1
    # A tail loss probe resent the last segment; both copies arrived.
    rack.reordering_seen = True
    last = q.recs[-1]
    rec.on_retransmit(last, 0.2, 200)
    rec.on_probe_sent(retransmitted=True)
    rec.on_ack(1 + 10 * MSS, [], seg(9), False, 0.25, None, 0.1)
    assert rack.reo_wnd_mult == 1


def test_partial_undo_waits_while_retransmissions_are_out() -> None:
    """Linux tcp_try_undo_partial: a partial ACK echoing a timestamp older
    than our first retransmission means an original filled the hole. With
    other retransmissions still out, the recovery is not undone (that
    would forget the losses they repair) and nothing more is marked lost."""
    from ustack.tcp.recovery import CaState

    rec = sack_sender()
    q = rec.queue
    # Segments 0 and 4 missing; 5..9 SACKed long after: RACK marks both.
    rec.on_ack(
        1,
        [(1 + MSS, 1 + 4 * MSS), (1 + 5 * MSS, 1 + 10 * MSS)],
        None,
        True,
        0.1,
        50,
        0.1,
    )
    assert rec.state is CaState.RECOVERY and q.pending == 2 * MSS
    for r in (q.recs[0], q.recs[2]):
        rec.on_retransmit(r, 0.1, 100)
    assert q.retrans_out == 2 * MSS
    # The original of segment 0 arrives (TSecr 50 < 100): a partial ACK.
    rec.on_ack(1 + 4 * MSS, [(1 + 5 * MSS, 1 + 10 * MSS)], None, False, 0.12, 50, 0.1)
    assert rec.state is CaState.RECOVERY
    assert rec.counters["TCPPartialUndo"] == 0
    assert rec.rack.reordering_seen
    assert q.lost == MSS  # segment 4 is still presumed lost, its resend out
    # Segment 4's original arrives too (no retransmission left out): undo.
    rec.on_ack(1 + 10 * MSS, [], seg(4), False, 0.13, 50, 0.1)
    assert (
        rec.counters["TCPPartialUndo"]
        + rec.counters["TCPDSACKUndo"]
        + rec.counters["TCPFullUndo"]
        == 1
    )
    assert rec.state is CaState.OPEN


def test_sack_blocks_walk_only_what_the_previous_ack_did_not_cover() -> None:
    q = queue_of(10)
    got: list = []
    assert q.sack_blocks([seg(3)], got) == MSS
    # The receiver repeats the block, grown by one segment: only that is new.
    assert q.sack_blocks([(1 + 3 * MSS, 1 + 5 * MSS)], got) == MSS
    assert [r.start for r in got] == [1 + 3 * MSS, 1 + 4 * MSS]
    assert q.sacked == 2 * MSS and q.in_flight() == 8 * MSS
    # After a renege (RTO: SACK marks forgotten) the same block counts again.
    q.clear_sacks()
    assert q.sacked == 0
    assert q.sack_blocks([(1 + 3 * MSS, 1 + 5 * MSS)], got) == 2 * MSS


def test_adjacent_sacked_records_merge_into_one_run() -> None:
    q = queue_of(8)
    q.mark_lost(q.recs[6])
    q.on_retransmit(q.recs[6], 0.1)
    for i in (2, 4, 3, 5, 6):
        q.sack(*seg(i), [])
    # 2..5 are one SACKed run; 6 (retransmitted) stays apart.
    spans = [(r.start, r.end, r.sacked) for r in q.recs]
    assert spans == [
        (*seg(0), False),
        (*seg(1), False),
        (1 + 2 * MSS, 1 + 6 * MSS, True),
        (*seg(6), True),
        (*seg(7), False),
    ]
    assert q.sacked == 5 * MSS and q.retrans_out == 0
    assert q.in_flight() == 3 * MSS
    assert q.retransmitted(*seg(6)) and not q.retransmitted(*seg(4))
    q.ack(1 + 4 * MSS, [])  # into the run: its SACKed bytes leave the count
    assert q.sacked == 3 * MSS and q.recs[0].start == 1 + 4 * MSS
    assert q.in_flight() == MSS


def test_duplicating_path_causes_no_spurious_retransmissions() -> None:
    """A path that duplicates data (the bench's mixed path, in virtual
    time), on a connection that has seen reordering before: every D-SACK
    reports a copy the network made, so RACK's reordering window stays at
    min_RTT / 4 and each dropped segment is resent once (before, each round
    with such a D-SACK widened the window, up to a whole SRTT)."""
    p = Pair(delay=0.01, mss=MSS, settings=Settings(msl=1.0))
    a, b = p.establish()
    a.rec.rack.reordering_seen = True
    seen: set[int] = set()
    count = 0

    def net(direction: str, s: TcpSegment) -> list[float]:
        nonlocal count
        if direction != "A>B" or not s.payload or s.seq in seen:
            return [0.0]  # ACKs and retransmissions pass untouched
        seen.add(s.seq)
        count += 1
        if count in (30, 75, 140):
            return []
        if count % 9 == 0:
            return [0.0, 0.0]  # the network duplicates it
        return [0.0]

    p.net = net
    data = bytes(200 * MSS)
    assert send_and_finish(p, data) == data
    assert a.counters["TCPDSACKRecv"] > 5
    assert a.rec.rack.reo_wnd_mult == 1
    assert a.counters["RetransSegs"] == 3
    assert a.counters["TCPTimeouts"] == 0
