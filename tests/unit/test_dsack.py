"""D-SACK generation (RFC 2883 4): the receiver's ACKs for the examples of
sections 4.1.1-4.2.3, played into a TCB in virtual time, plus the
out-of-order queue's duplicate detection on its own."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair, mk
from ustack.config import Settings
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.seq import MASK
from ustack.wire.tcp import ACK, TcpSegment

NO_TS = Settings(msl=1.0, timestamps=False)


class Receiver:
    """B after the handshake; RFC sequence number `origin` is B's RCV.NXT,
    so the examples' numbers can be written as they are."""

    def __init__(self, origin: int, settings: Settings = NO_TS) -> None:
        self.p = Pair(settings=settings)
        a, self.b = self.p.establish()
        self.snd = a.snd_nxt
        # A never sent the data played here: keep B's ACKs from it (they are
        # still logged), or A's answers would make B ACK again.
        self.p.drop = lambda direction, seg: direction == "B>A"
        self.base = self.b.rcv_nxt - origin

    def seq(self, n: int) -> int:
        return (self.base + n) & MASK

    def rfc(self, n: int) -> int:
        return (n - self.base) & MASK

    def send(self, first: int, last: int) -> TcpSegment:
        """Deliver bytes first..last (inclusive, as the RFC's tables write
        them) to B; return the ACK B sent, in RFC numbers."""
        n = len(self.p.log)
        payload = b"d" * (last + 1 - first)
        self.p.inject_b(mk(self.seq(first), self.snd, ACK, 65535, payload))
        self.p.advance(1.0)  # a delayed ACK goes out too
        acks = [e.seg for e in self.p.sent("B>A", n)]
        assert len(acks) == 1, "B did not ACK once"
        return acks[0]

    def view(self, seg: TcpSegment) -> tuple[int, list[tuple[int, int]]]:
        return self.rfc(seg.ack), [(self.rfc(lo), self.rfc(hi))
                                   for lo, hi in seg.sack_blocks]


def test_4_1_1_duplicate_segment_below_the_cumulative_ack() -> None:
    r = Receiver(3000)
    r.send(3000, 3499)
    r.send(3500, 3999)
    assert r.view(r.send(3000, 3499)) == (4000, [(3000, 3500)])
    assert r.b.counters["TCPDSACKOldSent"] == 1


def test_4_1_2_out_of_order_segment_and_a_duplicate_segment() -> None:
    r = Receiver(3000)
    r.send(3000, 3499)
    r.send(3500, 3999)
    assert r.view(r.send(4500, 4999)) == (4000, [(4500, 5000)])
    assert r.view(r.send(3000, 3499)) == (4000, [(3000, 3500), (4500, 5000)])


def test_4_1_3_duplicate_of_an_out_of_order_segment() -> None:
    r = Receiver(3500)
    r.send(3500, 3999)
    assert r.view(r.send(4500, 4999)) == (4000, [(4500, 5000)])
    assert r.view(r.send(5000, 5499)) == (4000, [(4500, 5500)])
    # The duplicate first, then the SACK block that holds it.
    assert r.view(r.send(5000, 5499)) == (4000, [(5000, 5500), (4500, 5500)])
    assert r.b.counters["TCPDSACKOfoSent"] == 1
    # Reported once: the next ACK is a plain SACK again.
    assert r.view(r.send(6000, 6499)) == (4000, [(6000, 6500), (4500, 5500)])


def test_4_2_1_a_single_duplicate_subsegment() -> None:
    r = Receiver(500)
    r.send(500, 999)
    assert r.view(r.send(2000, 2499)) == (1000, [(2000, 2500)])
    assert r.view(r.send(1000, 1499)) == (1500, [(2000, 2500)])
    assert r.view(r.send(1000, 1999)) == (2500, [(1000, 1500)])


def test_4_2_2_two_duplicate_subsegments_covered_by_the_cumulative_ack() -> None:
    r = Receiver(500)
    r.send(500, 999)
    assert r.view(r.send(3000, 3499)) == (1000, [(3000, 3500)])
    assert r.view(r.send(1000, 1499)) == (1500, [(3000, 3500)])
    assert r.view(r.send(2000, 2499)) == (1500, [(2000, 2500), (3000, 3500)])
    # 1000-1499 and 2000-2499 are both duplicates: only the first is reported.
    assert r.view(r.send(1000, 2499)) == (2500, [(1000, 1500), (3000, 3500)])


def test_4_2_3_two_duplicate_subsegments_not_covered_by_the_cumulative_ack() -> None:
    r = Receiver(500)
    r.send(500, 999)
    assert r.view(r.send(3500, 3999)) == (1000, [(3500, 4000)])
    assert r.view(r.send(1500, 1999)) == (1000, [(1500, 2000), (3500, 4000)])
    assert r.view(r.send(2500, 2999)) == (
        1000, [(2500, 3000), (1500, 2000), (3500, 4000)])
    assert r.view(r.send(1500, 2999)) == (
        1000, [(1500, 2000), (1500, 3000), (3500, 4000)])
    assert r.b.counters["TCPDSACKOfoSent"] == 1


def test_in_order_text_over_queued_text_reports_the_overlap() -> None:
    """Linux tcp_ofo_queue: queued data that in-order data also carried is
    a duplicate; it is now below the cumulative ACK."""
    r = Receiver(1000)
    assert r.view(r.send(1500, 1999)) == (1000, [(1500, 2000)])
    assert r.view(r.send(1000, 1999)) == (2000, [(1500, 2000)])
    assert r.b.counters["TCPDSACKOfoSent"] == 1


def test_no_dsack_without_sack_and_none_for_new_data() -> None:
    r = Receiver(1000, Settings(msl=1.0, timestamps=False, sack=False))
    r.send(1500, 1999)
    assert r.view(r.send(1500, 1999)) == (1000, [])
    assert r.b.counters["TCPDSACKOfoSent"] == 0
    r = Receiver(1000)
    r.send(1500, 1999)
    assert r.view(r.send(2000, 2499)) == (1000, [(1500, 2500)])
    assert r.b.counters["TCPDSACKOfoSent"] == 0


def test_the_sender_reads_an_out_of_order_dsack_as_one() -> None:
    """End to end: the network duplicates a segment above a hole; A's loss
    recovery gets it as a D-SACK (RFC 2883 4: the first block inside the
    second), not as new SACK information."""
    p = Pair(settings=NO_TS, mss=1000)
    a, b = p.establish()
    copies = {"n": 0}

    def drop(direction: str, seg: TcpSegment) -> bool:
        copies["n"] += direction == "A>B" and bool(seg.payload)
        return copies["n"] == 1 and direction == "A>B" and bool(seg.payload)

    def net(direction: str, seg: TcpSegment) -> list[float]:
        third = seg.payload and (seg.seq - a.iss - 1) == 2 * a.mss
        return [0.0, 0.0] if direction == "A>B" and third else [0.0]

    p.drop = drop
    p.net = net
    a.send(b"z" * 5 * a.mss)
    p.run(until=p.now + 0.01)
    assert b.counters["TCPDSACKOfoSent"] == 1
    assert a.counters["TCPDSACKRecv"] == 1


@pytest.mark.parametrize(
    ("held", "seg", "dup"),
    [
        ([(10, 20)], (10, 20), (10, 20)),  # all held
        ([(10, 20)], (5, 15), (10, 15)),  # overlaps the left end
        ([(10, 20)], (15, 30), (15, 20)),  # overlaps the right end
        ([(10, 20), (30, 40)], (5, 45), (10, 20)),  # two: the first only
        ([(10, 20)], (20, 30), None),  # adjacent, nothing held twice
        ([(10, 20)], (1, 10), None),
    ],
)
def test_the_queue_returns_the_first_held_part(
    held: list[tuple[int, int]], seg: tuple[int, int], dup: tuple[int, int] | None
) -> None:
    nxt = (0xFFFFFFFF - 25) & MASK  # across the wrap
    r = Reassembly(1 << 20)
    for lo, hi in held:
        assert r.add(nxt, (nxt + lo) & MASK, b"h" * (hi - lo)) is None
    want = None if dup is None else ((nxt + dup[0]) & MASK, (nxt + dup[1]) & MASK)
    assert r.first_held(nxt, (nxt + seg[0]) & MASK, (nxt + seg[1]) & MASK) == want
    assert r.add(nxt, (nxt + seg[0]) & MASK, b"s" * (seg[1] - seg[0])) == want


