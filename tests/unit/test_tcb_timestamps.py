"""RFC 7323 timestamps: negotiation, echo, RTT measurement and PAWS."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair, mk
from ustack.config import Settings
from ustack.tcp.state import State
from ustack.wire.tcp import ACK, PSH, RST, TcpSegment


def test_negotiated_when_both_offer_and_carried_on_every_segment() -> None:
    p = Pair(delay=0.01)
    a, b = p.establish()
    assert a.ts_ok and b.ts_ok
    a.send(b"hello")
    p.run(until=p.now + 1)
    segments = [e.seg for e in p.log]
    assert all(s.timestamp is not None for s in segments)
    # B echoes the TSval of A's segment it last accepted in order.
    data = next(e for e in p.sent("A>B") if e.seg.payload)
    ack = next(e for e in p.sent("B>A") if e.time > data.time)
    assert data.seg.timestamp is not None and ack.seg.timestamp is not None
    assert ack.seg.timestamp[1] == data.seg.timestamp[0]


def test_off_when_one_side_does_not_offer() -> None:
    p = Pair(settings=Settings(msl=1.0), settings_b=Settings(timestamps=False))
    a, b = p.establish()
    assert not a.ts_ok and not b.ts_ok
    assert all(e.seg.timestamp is None for e in p.sent("B>A"))
    a.send(b"x")
    p.run(until=p.now + 1)
    assert all(e.seg.timestamp is None for e in p.sent("A>B")[1:])


def test_rtt_measured_from_echo_even_after_retransmission() -> None:
    """Timestamps date the retransmission itself: no ambiguity, no Karn."""
    p = Pair(delay=0.05)
    a, b = p.establish()
    lost: list[int] = []

    def drop(d: str, s: TcpSegment) -> bool:
        if d == "A>B" and bool(s.payload):
            lost.append(1)
            return len(lost) == 1  # only the first transmission
        return False

    p.drop = drop
    a.send(b"data")
    p.run(until=p.now + 5)
    assert len(lost) >= 2 and b.read(10) == b"data"
    # The sample after the retransmission is a real RTT (0.1 s + delayed ACK),
    # not the time since the first transmission.
    assert a.rto.srtt is not None and a.rto.srtt < 0.2


def test_paws_rejection_acks_are_rate_limited() -> None:
    """Issue 10 item 5: each PAWS-rejected segment got an ACK, so a blind
    sender of old-timestamped ACKs had a 1:1 reflector. Now at most one ACK
    per invalid_ratelimit for segments without data (Linux
    LINUX_MIB_TCPACKSKIPPEDPAWS)."""
    p = Pair(delay=0.01)
    a, b = p.establish()
    p.run(until=p.now + 2)
    recent = b.ts_recent
    n = len(p.log)
    for _ in range(20):
        p.inject_b(mk(a.snd_nxt, a.rcv_nxt, ACK,
                      timestamp=((recent - 1000) & 0xFFFFFFFF, 0)))
    p.pump()
    assert b.counters["PAWSEstab"] == 20
    assert len(p.sent("B>A", n)) == 1
    assert b.counters["TCPACKSkippedPAWS"] == 19


def test_paws_drops_an_old_duplicate() -> None:
    p = Pair(delay=0.01)
    a, b = p.establish()
    p.run(until=p.now + 2)
    assert b.ts_ok
    recent = b.ts_recent
    before = len(p.sent("B>A"))
    # An in-window data segment whose timestamp is older than TS.Recent.
    old = mk(a.snd_nxt, a.rcv_nxt, ACK | PSH, payload=b"stale",
             timestamp=((recent - 1000) & 0xFFFFFFFF, 0))
    p.inject_b(old)
    p.pump()
    assert b.read(100) == b""  # not delivered
    assert b.counters["PAWSEstab"] == 1
    assert len(p.sent("B>A")) > before  # answered with an ACK
    # The same segment with a current timestamp is accepted.
    fresh = mk(a.snd_nxt, a.rcv_nxt, ACK | PSH, payload=b"fresh",
               timestamp=(recent + 5, 0))
    p.inject_b(fresh)
    p.pump()
    assert b.read(100) == b"fresh"
    assert b.ts_recent == recent + 5


def test_paws_never_blocks_a_reset() -> None:
    p = Pair()
    a, b = p.establish()
    rst = mk(b.rcv_nxt, 0, RST, timestamp=((b.ts_recent - 1000) & 0xFFFFFFFF, 0))
    p.inject_b(rst)
    p.pump()
    assert b.state is State.CLOSED
    assert isinstance(b.error, ConnectionResetError)


@pytest.mark.parametrize("start", [0xFFFFFFFF - 3, 12345])
def test_ts_recent_follows_the_peer_across_wrap(start: int) -> None:
    p = Pair(delay=0.01)
    p.a.ts_offset = start  # A's timestamp clock wraps during the connection
    a, b = p.establish()
    for _ in range(5):
        a.send(b"z" * 100)
        p.run(until=p.now + 0.5)
    assert b.read(10_000) == b"z" * 500
    assert b.counters["PAWSEstab"] == 0


def test_a_segment_stamped_before_the_last_send_keeps_the_tsval_clock() -> None:
    """A link that knows arrival times (Stack._input_stamped) can hand a
    TCB a segment that arrived before a send it already made: ACK
    processing may use that earlier time, but TSvals never go back (the
    peer's PAWS would drop them, RFC 7323 5.3)."""
    pair = Pair(Settings(msl=1.0))
    a, b = pair.establish()
    a.flush(1.0)
    a.send(b"x")
    a.flush(1.010)  # a send at 1.010: TSval clock at 1.010
    sent = a.outbox[-1].timestamp
    assert sent is not None
    a.outbox.clear()
    b.send(b"y")
    b.flush(1.005)
    seg = b.outbox[-1]
    a.on_segment(seg, 1.005)  # it arrived at 1.005, read after the send
    assert a.clock == 1.010
    a.ack_now = True
    a.flush(1.010)
    echo = a.outbox[-1].timestamp
    assert echo is not None and echo[0] == sent[0]
