"""RFC 3168 6.1.2: a window reduction after a loss that a tail loss probe
repaired (RFC 8985 7.4; Linux tcp_process_tlp_ack -> tcp_init_cwnd_reduction
-> tcp_ecn_queue_cwr) or that RACK's reorder timer found is announced with
CWR on the next new data, like any other reduction. Virtual time."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp import ecn
from ustack.tcp.recovery import LossRecovery
from ustack.wire.tcp import CWR, TcpSegment

MSS = 1000


def ecn_pair() -> Pair:
    """A asks for ECN, B agrees; no timestamps; 20 ms each way."""
    s = Settings(msl=1.0, ecn=1, timestamps=False)
    return Pair(settings=s, settings_b=Settings(msl=1.0, timestamps=False),
                mss=MSS, delay=0.02)


def lose_once(p: Pair, seq: int) -> list[int]:
    """Drop the first data segment A sends at `seq`; returns what was dropped."""
    dropped: list[int] = []

    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.seq == seq and seg.payload and not dropped:
            dropped.append(seg.seq)
            return True
        return False

    p.drop = drop
    return dropped


def test_a_tlp_repaired_loss_is_announced_with_cwr() -> None:
    p = ecn_pair()
    a, b = p.establish()
    assert a.ecn_flags & ecn.OK
    dropped = lose_once(p, (a.snd_nxt + 2 * MSS) & 0xFFFFFFFF)  # the tail
    a.send(b"t" * 3 * MSS)
    p.run(until=p.now + 1.0)  # the probe resends the tail; B ACKs it all
    assert dropped and a.counters["TCPLossProbes"] == 1
    assert a.counters["TCPTimeouts"] == 0
    assert a.snd_una == a.snd_max
    cwnd = a.cwnd
    start = len(p.log)
    # New data: its ACK goes beyond the probe, so the loss was real.
    a.send(b"n" * 2 * MSS)
    p.run(until=p.now + 0.2)
    assert a.counters["TCPLossProbeRecovery"] == 1
    assert a.cwnd < cwnd
    a.send(b"m" * MSS)  # the first new data after the reduction
    p.run(until=p.now + 0.2)
    cwr = [e.seg for e in p.sent("A>B", start) if e.seg.flags & CWR]
    assert len(cwr) == 1 and cwr[0].payload == b"m" * MSS
    assert not a.ecn_flags & ecn.QUEUE_CWR
    assert b.read(1 << 20) == b"t" * 3 * MSS + b"n" * 2 * MSS + b"m" * MSS


def test_a_loss_found_by_the_rack_reorder_timer_is_announced_with_cwr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 8985 6.3: the reorder window passes with no more ACKs and the
    hole is marked lost from the timer, not from an ACK: recovery starts
    there, and CWR still follows on new data."""
    fired: list[float] = []
    real = LossRecovery.on_reorder_timer

    def spy(self: LossRecovery, now: float, srtt: float) -> None:
        fired.append(now)
        real(self, now, srtt)

    monkeypatch.setattr(LossRecovery, "on_reorder_timer", spy)
    p = ecn_pair()
    a, b = p.establish()
    a.send(b"w" * 4 * MSS)  # an RTT sample first: RACK needs one
    p.run(until=p.now + 1.0)
    dropped = lose_once(p, a.snd_nxt)
    start = len(p.log)
    a.send(b"h" * 2 * MSS)  # the first is lost, the second SACKed
    p.run(until=p.now + 0.5)
    assert dropped and fired and a.counters["TCPSackRecovery"] == 1
    assert a.counters["TCPLossProbes"] == 0 and a.counters["TCPTimeouts"] == 0
    a.send(b"m" * MSS)
    p.run(until=p.now + 0.5)
    cwr = [e.seg for e in p.sent("A>B", start) if e.seg.flags & CWR]
    assert len(cwr) == 1 and cwr[0].payload == b"m" * MSS
    assert b.read(1 << 20) == b"w" * 4 * MSS + b"h" * 2 * MSS + b"m" * MSS
