"""RFC 2018 SACK, receive side: we report what we hold out of order."""

from __future__ import annotations

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.wire.tcp import TcpSegment


def test_negotiated_only_when_both_offer() -> None:
    a, b = Pair().establish()
    assert a.sack_ok and b.sack_ok
    p = Pair(settings=Settings(msl=1.0), settings_b=Settings(sack=False))
    a, b = p.establish()
    assert not a.sack_ok and not b.sack_ok


def test_ack_for_out_of_order_data_carries_sack_blocks() -> None:
    p = Pair(mss=1000, settings=Settings(msl=1.0, timestamps=False))
    a, b = p.establish()
    start = b.rcv_nxt
    dropped: list[int] = []

    def lose_first(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and not dropped:
            dropped.append(seg.seq)
            return True
        return False

    p.drop = lose_first
    a.send(b"x" * 3000)
    a.flush(p.now)
    p.pump()
    assert dropped == [start]
    acks = [e.seg for e in p.sent("B>A") if e.seg.sack_blocks]
    # Each duplicate ACK reports what B holds beyond the hole, latest first.
    assert [s.ack for s in acks] == [start, start]
    assert acks[0].sack_blocks == ((start + 1000, start + 2000),)
    assert acks[1].sack_blocks == ((start + 1000, start + 3000),)
    # Once the hole is filled (retransmission), ACKs carry no blocks.
    p.run(until=p.now + 5)
    assert b.read(5000) == b"x" * 3000
    assert p.sent("B>A")[-1].seg.sack_blocks == ()
