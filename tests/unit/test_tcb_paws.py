"""PAWS (RFC 7323 5) for reordered segments, as Linux tcp_validate_incoming:
a disordered duplicate ACK (tcp_disordered_ack_check) is used, not dropped;
an old ACK overtaken by later segments is dropped silently (PAWSOldAck);
anything else older than TS.Recent is dropped (PAWSEstab). Virtual time."""

from __future__ import annotations

from tests.tcb_harness import Pair, mk, transfer
from ustack.tcp.seq import MASK
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, PSH, TcpSegment

MSS = 1000


def _outstanding() -> tuple[Pair, Tcb, Tcb, int]:
    """A has four segments (of a.mss bytes) out that B never got; A's TS.Recent is B's
    TSval T. Returns (pair, a, b, T)."""
    p = Pair(mss=MSS, delay=0.01)
    a, b = p.establish()
    p.drop = lambda d, s: d == "A>B" and bool(s.payload)
    a.send(b"x" * 4 * a.mss)
    p.run(until=p.now + 0.001)
    assert a.snd_max == (a.snd_una + 4 * a.mss) & MASK
    return p, a, b, a.ts_recent


def _ack_from_b(a: Tcb, tsval: int, *, ack: int | None = None,
                window: int | None = None,
                blocks: tuple[tuple[int, int], ...] = ()) -> TcpSegment:
    """A pure ACK as B would send it: SEQ = A's RCV.NXT, B's usual window."""
    wnd = window if window is not None else a.snd_wnd >> a.snd_wscale
    return mk(a.rcv_nxt, a.snd_una if ack is None else ack, ACK, wnd, to_b=False,
              timestamp=(tsval & MASK, a._tsval()), sack_blocks=blocks)


def test_a_reordered_sack_dup_ack_with_an_older_tsval_is_used() -> None:
    p, a, b, t = _outstanding()
    m = a.mss
    una = a.snd_una
    seg2 = (una + m, una + 2 * m)
    seg4 = (una + 3 * m, una + 4 * m)
    # B's later ACK (T+10) SACKs segment 2; its earlier one (T+5), which a
    # reordering path delivers second, SACKs segment 4.
    p.inject_a(_ack_from_b(a, t + 10, blocks=(seg2,)))
    assert a.ts_recent == t + 10
    assert a.rec.queue.sacked == m
    p.inject_a(_ack_from_b(a, t + 5, blocks=(seg4,)))
    assert a.rec.queue.sacked == 2 * m  # its SACK block counted
    assert a.ts_recent == t + 10  # never moved back by an older TSval
    assert a.counters["PAWSDisorderedAck"] == 1
    assert a.counters["PAWSEstab"] == 0
    assert a.snd_una == una


def test_a_disordered_ack_with_a_smaller_window_leaves_the_window() -> None:
    """tcp_may_update_window says no (same SEQ, smaller non-zero window):
    Linux accepts the ACK and keeps the send window it has."""
    p, a, b, t = _outstanding()
    m = a.mss
    p.inject_a(_ack_from_b(a, t + 10))
    wnd = a.snd_wnd
    p.inject_a(_ack_from_b(a, t + 5, window=(wnd >> a.snd_wscale) // 2,
                           blocks=((a.snd_una + m, a.snd_una + 2 * m),)))
    assert a.counters["PAWSDisorderedAck"] == 1
    assert a.snd_wnd == wnd
    assert a.rec.queue.sacked == m


def test_an_old_ack_that_would_open_the_window_is_dropped() -> None:
    p, a, b, t = _outstanding()
    m = a.mss
    p.inject_a(_ack_from_b(a, t + 10))
    wnd = a.snd_wnd
    p.inject_a(_ack_from_b(a, t + 5, window=0xFFFF,
                           blocks=((a.snd_una + m, a.snd_una + 2 * m),)))
    assert (0xFFFF << a.snd_wscale) > wnd  # a window update: not a duplicate
    assert a.counters["PAWSDisorderedAck"] == 0
    assert a.counters["PAWSEstab"] == 1
    assert a.rec.queue.sacked == 0
    assert a.snd_wnd == wnd


def test_an_old_ack_that_advances_snd_una_is_dropped_as_linux_does() -> None:
    """Linux keeps only duplicate ACKs (SEG.ACK = SND.UNA): an older ACK
    that acknowledges new data fails PAWS (PAWSEstab, a rate-limited ACK);
    a later ACK carries the same cumulative acknowledgement."""
    p, a, b, t = _outstanding()
    m = a.mss
    una = a.snd_una
    p.inject_a(_ack_from_b(a, t + 10))
    p.inject_a(_ack_from_b(a, t + 5, ack=una + m))
    assert a.snd_una == una
    assert a.counters["PAWSEstab"] == 1
    assert a.counters["PAWSDisorderedAck"] == 0


def test_a_disordered_ack_outside_the_replay_window_is_dropped() -> None:
    """tcp_tsval_replay: at most RTO x 1200 ticks older than TS.Recent."""
    p, a, b, t = _outstanding()
    m = a.mss
    replay = int(a.rto.rto * 1200)
    p.inject_a(_ack_from_b(a, t + 10))
    p.inject_a(_ack_from_b(a, t + 10 - replay - 1,
                           blocks=((a.snd_una + m, a.snd_una + 2 * m),)))
    assert a.counters["PAWSEstab"] == 1
    assert a.rec.queue.sacked == 0
    p.inject_a(_ack_from_b(a, t + 10 - replay,
                           blocks=((a.snd_una + m, a.snd_una + 2 * m),)))
    assert a.counters["PAWSDisorderedAck"] == 1
    assert a.rec.queue.sacked == m


def test_a_reordered_data_segment_with_an_old_tsval_is_still_dropped() -> None:
    """Data never passes as a disordered ACK: dropped, answered at once."""
    p = Pair(mss=MSS, delay=0.01)
    a, b = p.establish()
    p.run(until=p.now + 1)
    recent = b.ts_recent
    n = len(p.log)
    p.inject_b(mk(b.rcv_nxt, b.snd_una, ACK | PSH, b.snd_wnd >> b.snd_wscale,
                  b"late", timestamp=((recent - 5) & MASK, 0)))
    assert b.read(100) == b""
    assert b.counters["PAWSEstab"] == 1
    assert b.counters["PAWSDisorderedAck"] == 0
    acks = p.sent("B>A", n)
    assert len(acks) == 1 and acks[0].seg.ack == b.rcv_nxt
    assert b.ts_recent == recent


def test_an_old_pure_ack_below_rcv_nxt_is_dropped_without_an_answer() -> None:
    """Linux >= 6.14 (TCP_RFC7323_PAWS_ACK, PAWSOldAck): an ACK sent before
    data that has since arrived is common on reordering paths."""
    p = Pair(mss=MSS, delay=0.01)
    a, b = p.establish()
    b.send(b"y" * 500)
    p.run(until=p.now + 1)
    assert a.read(1000) == b"y" * 500
    n = len(p.log)
    p.inject_a(mk(a.rcv_nxt - 500, a.snd_una, ACK, a.snd_wnd >> a.snd_wscale,
                  to_b=False, timestamp=((a.ts_recent - 5) & MASK, 0)))
    assert a.counters["PAWSOldAck"] == 1
    assert a.counters["PAWSEstab"] == 0
    assert p.sent("A>B", n) == []


def test_reordered_acks_on_a_lossy_path_are_used_not_dropped() -> None:
    """End to end: A's segments reach B spread over a few ms, so B's ACKs
    carry distinct TSvals; B's pure ACKs take one of two paths 3 ms apart.
    With lost segments they are SACK-carrying duplicate ACKs, and the
    reordered duplicates still count. TS.Recent never moves back."""
    p = Pair(mss=MSS, delay=0.02)
    a, b = p.establish()
    seen: set[int] = set()
    sent = [0, 0]

    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction != "A>B" or not seg.payload or seg.seq in seen:
            return False
        seen.add(seg.seq)
        sent[0] += 1
        return sent[0] % 20 == 0  # every 20th first copy is lost

    recents: list[int] = []

    def net(direction: str, seg: TcpSegment) -> list[float]:
        recents.append(a.ts_recent)  # sampled at every send
        sent[1] += 1
        if direction == "A>B":
            return [(sent[1] % 5) * 0.001]
        return [0.003 if sent[1] % 2 and not seg.payload else 0.0]

    p.drop = drop
    p.net = net
    data = bytes(range(256)) * 400
    assert transfer(p, a, b, data) == data
    assert a.counters["TCPSackRecovery"] > 0
    # Before, PAWS dropped all of these; it still drops the reordered ACKs
    # below SND.UNA (PAWSEstab), as Linux does.
    assert a.counters["PAWSDisorderedAck"] > 0
    assert recents == sorted(recents)  # TS.Recent never moved back


def test_an_old_segment_without_ack_is_no_old_ack() -> None:
    """tcp_disordered_ack_check step 1: only a segment with ACK is a pure ACK."""
    p = Pair(mss=MSS, delay=0.01)
    a, b = p.establish()
    b.send(b"y" * 500)
    p.run(until=p.now + 1)
    p.inject_a(mk(a.rcv_nxt - 500, 0, 0, a.snd_wnd >> a.snd_wscale, to_b=False,
                  timestamp=((a.ts_recent - 5) & MASK, 0)))
    assert a.counters["PAWSOldAck"] == 0
    assert a.counters["PAWSEstab"] == 1
