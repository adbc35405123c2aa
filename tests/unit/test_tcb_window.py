"""Receive window edges: zero-window probes are ACKed (RFC 9293 3.8.6.1) and
the right edge never moves left through scaling (RFC 9293 3.8.6.2.2)."""

from __future__ import annotations

from tests.tcb_harness import Pair, mk, transfer
from ustack.config import Settings
from ustack.tcp.seq import MASK, seq_ge, seq_gt
from ustack.wire.tcp import ACK

ISS_A = 1000


def test_one_byte_zero_window_probe_is_acked() -> None:
    """Issue 10 item 6: a probe carrying one new byte at RCV.NXT into a zero
    window (what BSD, macOS and Windows send) gets an ACK with window 0."""
    sb = Settings(msl=1.0, rcv_buf=4000, wscale=0)
    p = Pair(iss_a=ISS_A, settings_b=sb)
    a, b = p.establish()
    a.send(b"x" * 10_000)
    p.run(until=0.5)  # B's buffer fills; nobody reads it
    assert b.advertised_window_field() == 0
    n = len(p.log)
    p.inject_b(mk(b.rcv_nxt, a.snd_una, ACK, 65535, b"y"))
    p.pump()
    acks = [e.seg for e in p.sent("B>A", n)]
    assert [(s.ack, s.window) for s in acks] == [(b.rcv_nxt, 0)]
    assert len(b.rcvbuf) == 4000  # the probe's byte was not taken


def test_right_edge_never_moves_left_through_scaling() -> None:
    """Issue 10 item 11: with wscale 7 and a buffer that is no multiple of
    128, no advertised right edge is a whole scale unit (128 bytes) behind
    the one before: rounding is up, except where keeping the edge would take
    it more than a unit past the buffer (then it may retreat by less than a
    unit, RFC 7323 2.4; see the test below)."""
    settings = Settings(msl=1.0, rcv_buf=100_001, wscale=7)
    p = Pair(iss_a=ISS_A, settings=settings)
    a, b = p.establish()
    assert b.rcv_wscale == 7
    transfer(p, a, b, bytes(range(256)) * 2000, chunk=7777)
    edge = None
    for e in p.sent("B>A"):
        seg = e.seg
        if not seg.flags & ACK or seg.flags & 0x02:
            continue
        right = (seg.ack + (seg.window << 7)) & MASK
        if edge is not None:
            assert seq_ge((right + 127) & MASK, edge), (e.time, right, edge)
        if edge is None or seq_ge(right, edge):
            edge = right


def test_tiny_segments_cannot_walk_the_edge_past_the_buffer() -> None:
    """Keeping the offered edge by rounding up from each new RCV.NXT would
    move it out by a byte for every 1-byte segment, so a peer sending tiny
    segments to an application that does not read would never see the window
    close. The buffer stays within one scale unit of its size."""
    sb = Settings(msl=1.0, rcv_buf=4000, wscale=7)
    p = Pair(iss_a=ISS_A, settings_b=sb)
    a, b = p.establish()
    assert b.rcv_wscale == 7
    a.send(b"x" * 1000)
    p.run(until=0.5)
    seq = b.rcv_nxt
    for _ in range(20_000):  # bounded: each segment is one byte
        right = (b.rcv_nxt + (b.advertised_window_field() << 7)) & MASK
        if not seq_gt(right, seq):
            break
        p.inject_b(mk(seq, a.snd_una, ACK, 65535, b"y"))
        seq = (seq + 1) & MASK
    else:
        raise AssertionError("the window never closed")
    assert len(b.rcvbuf) < 4000 + 128
