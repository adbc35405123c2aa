"""Sender-side SACK: fast recovery resends every hole, not one per RTT."""

from __future__ import annotations

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.rtxq import RetransmitQueue
from ustack.wire.tcp import TcpSegment

NO_TS = Settings(msl=1.0, timestamps=False)


def test_queue_merges_sacks_and_leaves_the_holes() -> None:
    """SACK blocks mark records (splitting them), overlapping blocks count
    once, and what stays unmarked below SACKed data is the holes."""
    q = RetransmitQueue(0)
    q.append(0, 10_000, 0.0)  # one offloaded record
    assert q.sack(1000, 2000, []) == 1000
    assert q.sack(1500, 3000, []) == 1000  # overlaps: only the new part
    assert q.sack(5000, 6000, []) == 1000
    assert q.sack(20_000, 21_000, []) == 0  # beyond what was sent
    holes = [(r.start, r.end) for r in q.recs if not r.sacked]
    assert holes == [(0, 1000), (3000, 5000), (6000, 10_000)]
    assert q.in_flight() == 10_000 - 3000
    q.ack(2500, [])
    assert q.sacked == 1500 and q.una == 2500  # [2500, 3000) and [5000, 6000)


def lose(seqs: set[int]) -> object:
    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and seg.seq in seqs:
            seqs.discard(seg.seq)  # lose only the first transmission
            return True
        return False

    return drop


def recovery(settings: Settings, settings_b: Settings) -> tuple[float, int]:
    p = Pair(delay=0.05, mss=1000, settings=settings, settings_b=settings_b)
    a, b = p.establish()
    a.cwnd = 40_000  # a full window in flight
    start = b.rcv_nxt
    p.drop = lose({start + 2000, start + 6000, start + 11_000})  # type: ignore[assignment]
    a.send(b"z" * 30_000)
    t0 = p.now
    got = b""
    while len(got) < 30_000 and p.now < t0 + 30:
        p.run(until=p.now + 0.01)
        got += b.read(1 << 20)
    assert got == b"z" * 30_000
    return p.now - t0, a.counters["TCPTimeouts"]


def test_three_losses_in_one_window_recovered_without_timeout() -> None:
    with_sack, timeouts = recovery(NO_TS, NO_TS)
    assert timeouts == 0
    without, _ = recovery(
        Settings(msl=1.0, timestamps=False, sack=False),
        Settings(msl=1.0, timestamps=False, sack=False),
    )
    # NewReno alone needs one RTT per hole; SACK fills them all at once.
    assert with_sack < without


def test_acks_with_new_sack_info_count_as_duplicates_despite_window_changes() -> None:
    """A receiver's window may change while it reports out-of-order data
    (its application reads); RFC 6675 counts such ACKs as duplicates anyway,
    so recovery starts without waiting for the RTO."""
    from tests.tcb_harness import mk
    from ustack.wire.tcp import ACK

    p = Pair(delay=0.05, mss=1000, settings=NO_TS, settings_b=NO_TS)
    a, b = p.establish()
    a.cwnd = 20_000
    p.drop = lambda d, s: d == "A>B" and bool(s.payload)
    a.send(b"q" * 10_000)
    a.flush(p.now)
    p.pump()
    una, before = a.snd_una, a.counters["RetransSegs"]
    for i in range(3):  # each ACK: same ACK number, a new window, more SACKed
        right = una + 2000 + 1000 * (i + 1)
        p.inject_a(mk(b.snd_nxt, una, ACK, window=60_000 + 1000 * i, to_b=False,
                      sack_blocks=((una + 2000, right),)))
    assert a.recover is not None  # in fast recovery, no RTO needed
    assert a.counters["RetransSegs"] > before
    assert a.counters["TCPTimeouts"] == 0
