"""One RTT sample per ACK (RFC 7323 Appendix G; issue 10 item 14)."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.rto import RtoEstimator


def test_an_ack_gives_one_sample_with_timestamps() -> None:
    """Before: a timestamped ACK fed the estimator twice (send-time RTT and
    the TSecr echo), weighting that ACK double."""
    p = Pair(delay=0.05, settings=Settings(msl=1.0))
    a, b = p.establish()
    assert a.ts_ok
    samples: list[float] = []

    class Counting(RtoEstimator):
        def sample(self, rtt: float, per_rtt: int = 1) -> None:
            samples.append(rtt)
            super().sample(rtt, per_rtt)

    old = a.rto
    a.rto = Counting(old.rto_min, old.rto_max, old.rto, old.srtt, old.rttvar)
    a.send(b"x" * 100)
    a.flush(p.now)
    p.run(until=p.now + 1.0)
    acks = [e for e in p.sent("B>A") if e.seg.ack == a.snd_max]
    assert len(acks) == 1 and len(samples) == 1
    assert samples[0] == pytest.approx(0.14)  # 2 x 50 ms + 40 ms delayed ACK


def test_many_samples_per_rtt_do_not_collapse_rttvar() -> None:
    """RFC 7323 Appendix G: with N samples per RTT, alpha and beta are divided
    by N, so RTTVAR decays per RTT as it would with one sample per RTT."""
    one = RtoEstimator(0.2, 120.0)
    many = RtoEstimator(0.2, 120.0)
    one.sample(0.3)
    many.sample(0.3)
    for _ in range(10):  # ten round trips of a steady 100 ms RTT
        one.sample(0.1)
        for _ in range(50):
            many.sample(0.1, per_rtt=50)
    # Without the division the 500 samples would drive RTTVAR to ~0.
    assert many.rttvar == pytest.approx(one.rttvar, rel=0.35)
    assert many.rttvar > 0.01
