"""Congestion control plug-ins against their RFCs' equations (no network)."""

from __future__ import annotations

import pytest

from ustack.tcp import cc
from ustack.tcp.cc.cubic import ALPHA, BETA, C, Cubic
from ustack.tcp.cc.hystart import CSS_GROWTH_DIVISOR, CSS_ROUNDS, N_RTT_SAMPLE
from ustack.tcp.cc.reno import Reno

MSS = 1000


def test_registry_names_like_linux() -> None:
    assert isinstance(cc.create("cubic", MSS, 10 * MSS), Cubic)
    assert isinstance(cc.create("reno", MSS, 10 * MSS), Reno)
    assert cc.create("newreno", MSS, 10 * MSS).name == "reno"
    with pytest.raises(ValueError, match="known: bbr, cubic, newreno, reno"):
        cc.create("vegas", MSS, 10 * MSS)


# ----------------------------------------------------------------- Reno


def test_slow_start_counts_every_byte_of_a_stretch_ack() -> None:
    """A 45-segment stretch ACK (one 64 KB offloaded segment) grows cwnd by
    45 MSS, as 45 ACKs would (Linux tcp_slow_start), not by 2 MSS."""
    r = Reno(MSS, 10 * MSS)
    r.on_ack(45 * MSS, 0.0, cwnd_limited=True, round_start=False)
    assert r.cwnd == 55 * MSS


def test_slow_start_stops_at_ssthresh_and_carries_over() -> None:
    r = Reno(MSS, 10 * MSS)
    r.ssthresh = 12 * MSS
    r.on_ack(4 * MSS, 0.0, True, False)
    assert r.cwnd == 12 * MSS  # 2 MSS of slow start, 2 MSS counted for CA
    assert r.bytes_acked == 2 * MSS


@pytest.mark.parametrize("ack_size", [1, 100, 2 * MSS, 10 * MSS])
def test_congestion_avoidance_grows_one_mss_per_window_of_bytes(ack_size: int) -> None:
    """RFC 3465 2.1 byte counting: delayed ACKs (2 MSS each), per-segment
    ACKs and ACK division (1-byte ACKs) all give 1 MSS per cwnd acked."""
    r = Reno(MSS, 10 * MSS)
    r.ssthresh = 5 * MSS
    for _ in range(10 * MSS // ack_size):
        r.on_ack(ack_size, 0.0, True, False)
    assert r.cwnd == 11 * MSS


def test_no_growth_while_application_limited() -> None:
    """RFC 7661: an application-limited sender keeps its window."""
    r = Reno(MSS, 10 * MSS)
    r.on_ack(5 * MSS, 0.0, cwnd_limited=False, round_start=False)
    assert r.cwnd == 10 * MSS


def test_reno_halves_and_undo_restores() -> None:
    r = Reno(MSS, 20 * MSS)
    r.remember_for_undo()
    r.ssthresh = r.ssthresh_after_loss(0.0)
    assert r.ssthresh == 10 * MSS
    r.on_recovery_done(0.0)
    assert r.cwnd == 10 * MSS
    r.undo(0.0)
    assert r.cwnd == 20 * MSS


# ----------------------------------------------------------------- CUBIC


def after_loss(w_max: int, rtt: float) -> Cubic:
    c = Cubic(MSS, w_max * MSS)
    c.ssthresh = c.ssthresh_after_loss(0.0)
    c.on_recovery_done(0.0)
    c.srtt = rtt
    return c


def drive(c: Cubic, rtt: float, until: float, t: float = 0.0) -> float:
    """One ACK per MSS, a window's worth per RTT, until time `until`."""
    while t < until - 1e-9:
        n = c.cwnd // MSS
        for i in range(n):
            c.on_ack(MSS, t + rtt * i / n, True, i == 0)
        t += rtt
    return t


def test_cubic_window_after_loss_follows_rfc9438() -> None:
    c = after_loss(100, 0.1)
    assert c.ssthresh == int(BETA * 100 * MSS)  # eq. 5: beta = 0.7
    assert c.cwnd == 70 * MSS
    drive(c, 0.1, 0.1)
    k = ((100 - 70) / C) ** (1 / 3)  # eq. 2
    assert c.k == pytest.approx(k)
    assert c.w_cubic(0) == pytest.approx(70)
    assert c.w_cubic(k) == pytest.approx(100)  # the plateau at W_max
    t = drive(c, 0.1, 2.0, 0.1)
    # Concave region: cwnd tracks W_cubic(t + RTT) within a segment or two.
    assert c.cwnd / MSS == pytest.approx(c.w_cubic(t), abs=2.5)
    t = drive(c, 0.1, k, t)
    assert c.cwnd / MSS == pytest.approx(100, abs=2.5)
    t = drive(c, 0.1, k + 2.0, t)
    assert c.cwnd / MSS == pytest.approx(c.w_cubic(t), abs=3.0)  # convex


def test_cubic_reno_friendly_region_uses_w_est() -> None:
    """RFC 9438 4.3: with a short RTT, W_est (Reno's rate, alpha_cubic
    until W_max, then 1 per RTT) outgrows W_cubic and sets cwnd."""
    c = after_loss(10, 0.01)
    rounds = 100
    drive(c, 0.01, rounds * 0.01)
    # eq. 4 per ACK of one segment, cwnd following W_est in whole bytes.
    w_est = cwnd = 7.0
    for _ in range(rounds):
        for _ack in range(int(cwnd)):
            w_est += (ALPHA if w_est < 10 else 1.0) / cwnd
            cwnd = int(w_est * MSS) / MSS
    assert c.w_cubic(rounds * 0.01) < w_est
    assert c.cwnd / MSS == pytest.approx(w_est, abs=2)


def test_cubic_fast_convergence_releases_bandwidth() -> None:
    """RFC 9438 4.7: a loss below the previous W_max remembers less."""
    c = Cubic(MSS, 100 * MSS)
    c.ssthresh_after_loss(0.0)
    assert c.w_max == 100
    c.cwnd = 80 * MSS
    c.ssthresh_after_loss(1.0)
    assert c.w_max == pytest.approx(80 * (1 + BETA) / 2)


def test_cubic_idle_time_shifts_the_epoch() -> None:
    c = after_loss(100, 0.1)
    drive(c, 0.1, 1.0)
    start = c.epoch_start
    assert start is not None
    c.on_idle(5.0, 3.0)
    assert c.epoch_start == pytest.approx(start + 3.0)


# ----------------------------------------------------------------- HyStart++


def rounds_with_rtts(c: Cubic, rtts: list[float]) -> None:
    for rtt in rtts:
        c.on_ack(MSS, 0.0, True, round_start=True)
        for _ in range(N_RTT_SAMPLE):
            c.on_rtt(rtt, 0.0)


def test_hystart_enters_css_on_rtt_increase_then_leaves_slow_start() -> None:
    c = Cubic(MSS, 10 * MSS)
    rounds_with_rtts(c, [0.050, 0.050])
    assert not c.hystart.in_css
    # 50 ms + max(4 ms, min(50/8 ms, 16 ms)) = 56.25 ms: 60 ms is an increase.
    rounds_with_rtts(c, [0.060])
    assert c.hystart.in_css and c.in_slow_start
    before = c.cwnd
    c.on_ack(CSS_GROWTH_DIVISOR * MSS, 0.0, True, False)
    assert c.cwnd == before + MSS  # CSS grows at a quarter of slow start
    rounds_with_rtts(c, [0.060] * (CSS_ROUNDS - 1))
    assert c.in_slow_start
    c.on_ack(MSS, 0.0, True, round_start=True)  # the fifth CSS round ends
    assert not c.in_slow_start and c.ssthresh == 15 * MSS  # ssthresh = cwnd


def test_hystart_spurious_increase_returns_to_slow_start() -> None:
    c = Cubic(MSS, 10 * MSS)
    rounds_with_rtts(c, [0.050, 0.050, 0.060])
    assert c.hystart.in_css
    rounds_with_rtts(c, [0.055])  # below the CSS baseline of 60 ms
    assert not c.hystart.in_css and c.in_slow_start
