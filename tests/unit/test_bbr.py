"""BBR v1's model and state machine (Linux tcp_bbr.c), driven with synthetic
rate samples in virtual time: each `ack` call is one ACK that ends a round."""

from __future__ import annotations

import pytest

from ustack.tcp import cc
from ustack.tcp.cc import bbr as bbr_mod
from ustack.tcp.cc.bbr import (
    DRAIN,
    PROBE_BW,
    PROBE_RTT,
    STARTUP,
    Bbr,
    MaxFilter,
)
from ustack.tcp.pacing import Pacer

MSS = 1000
RTT = 0.1


def ack(b: Bbr, now: float, bw: float, in_flight: int, rtt: float = RTT,
        acked: int = 10 * MSS, ca_state: int = 0) -> None:
    """One ACK delivering `acked` bytes with a `bw` sample; a new round."""
    s = b.sampler
    assert s is not None
    rs = s.begin(in_flight)
    rs.prior_delivered = s.delivered  # sent after the last round began
    rs.prior_time = now - rtt
    s.delivered += acked
    s.delivered_time = now
    rs.acked_sacked = acked
    rs.delivered = int(bw * rtt)
    rs.interval = rtt
    rs.rtt = rtt
    b.on_sample(rs, now, in_flight, ca_state)


def test_registered_as_bbr() -> None:
    b = cc.create("bbr", MSS, 10 * MSS)
    assert isinstance(b, Bbr) and b.model_based and not b.reacts_to_ecn
    assert b.sampler is not None


def test_startup_exits_after_three_rounds_without_25pct_growth() -> None:
    b = Bbr(MSS, 10 * MSS)
    now, bw = 0.0, 100_000.0
    for _ in range(5):  # doubling: stays in startup
        now += RTT
        ack(b, now, bw, in_flight=b.cwnd)
        bw *= 2
        assert b.mode == STARTUP and b.pacing_gain == pytest.approx(2.885)
    plateau = bw / 2
    for i in range(3):
        now += RTT
        ack(b, now, plateau * 1.2, in_flight=10 * b.bdp(plateau, 1.0))  # +20%: no
        assert b.full_bw_reached == (i == 2)
    assert b.mode == DRAIN
    assert b.pacing_gain == pytest.approx(1 / 2.885)


def test_drain_lasts_until_inflight_is_one_bdp() -> None:
    b = Bbr(MSS, 10 * MSS)
    now = 0.0
    for _ in range(5):
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=200 * MSS)
    assert b.mode == DRAIN
    bdp = b.inflight(b.max_bw, 1.0)
    now += RTT
    ack(b, now, 1_000_000.0, in_flight=bdp + MSS)
    assert b.mode == DRAIN
    now += RTT
    ack(b, now, 1_000_000.0, in_flight=bdp)
    assert b.mode == PROBE_BW
    assert b.cycle_idx != 1  # never starts in the 0.75 phase
    assert b.cwnd_gain == 2.0


def to_probe_bw(b: Bbr, bw: float = 1_000_000.0) -> float:
    now = 0.0
    for _ in range(5):
        now += RTT
        ack(b, now, bw, in_flight=b.inflight(bw, 1.0))
    assert b.mode == PROBE_BW
    return now


def test_probe_rtt_every_10s_for_200ms_at_4_packets() -> None:
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    stamp = b.min_rtt_stamp
    while now < stamp + 10.0:  # RTT samples never below the minimum
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd, rtt=RTT * 1.5)
        if now <= stamp + 10.0:
            assert b.mode == PROBE_BW
    assert b.mode == PROBE_RTT
    assert b.cwnd == 4 * MSS
    saved = b.prior_cwnd
    assert saved >= 2 * 1_000_000 * RTT  # the window from before it
    # The 200 ms start once inflight is down to 4 packets.
    now += 0.01
    ack(b, now, 1_000_000.0, in_flight=4 * MSS, rtt=RTT)
    start = now
    assert b.probe_rtt_done == pytest.approx(start + 0.2)
    while now < start + 0.2:
        assert b.mode == PROBE_RTT and b.cwnd <= 4 * MSS
        now += 0.05
        ack(b, now, 1_000_000.0, in_flight=4 * MSS, rtt=RTT)
    now += 0.05
    ack(b, now, 1_000_000.0, in_flight=4 * MSS, rtt=RTT)
    assert b.mode == PROBE_BW  # bw was full: back to probing bandwidth
    assert b.cwnd >= 2 * 1_000_000 * RTT  # restored (capped at the target)
    assert b.min_rtt_stamp > start + 0.2  # the next probe is 10 s from its end


def test_gain_cycle_is_125_075_then_six_unity_phases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bbr_mod._rng, "randrange", lambda n: 0)  # start at phase 0
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    gains = [b.pacing_gain]
    bw = 1_000_000.0
    for _ in range(8):
        inflight = b.inflight(bw, 1.25) if b.pacing_gain > 1 else 0
        now += RTT + 0.001  # a phase lasts min_rtt
        ack(b, now, bw, in_flight=inflight)
        gains.append(b.pacing_gain)
    assert gains == [1.25, 0.75, 1, 1, 1, 1, 1, 1, 1.25]


def test_cwnd_is_gain_times_bdp_plus_quanta() -> None:
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b, 1_000_000.0)
    for _ in range(30):
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd)
    bdp = 1_000_000.0 * RTT
    assert 2 * bdp <= b.cwnd <= 2 * bdp + 3 * b.tso_goal() + 4 * MSS + b.cwnd * 0.01 \
        + b._ack_aggregation_cwnd()


def test_recovery_conserves_packets_then_restores_the_window() -> None:
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    for _ in range(10):
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd)
    before = b.cwnd
    b.ssthresh = b.ssthresh_after_loss(now)  # recovery starts: no cut
    assert b.cwnd == before and b.prior_cwnd == before
    now += 0.01
    ack(b, now, 1_000_000.0, in_flight=50 * MSS, acked=2 * MSS, ca_state=3)
    assert b.cwnd == 52 * MSS  # inflight + delivered: packet conservation
    now += 0.01
    ack(b, now, 1_000_000.0, in_flight=150 * MSS, acked=2 * MSS, ca_state=0)
    assert b.cwnd >= before


def test_policer_found_by_long_term_sampling() -> None:
    # A token-bucket policer: a steady 500 kB/s with 30% loss, while the
    # bursts measured 1 MB/s. After two consistent 4-round intervals BBR
    # paces at the policed rate (lt_bw).
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    s = b.sampler
    assert s is not None
    for _ in range(12):
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd, acked=50_000)
        s.delivered_time = now
        s.lost_total += 15_000
        s.rs.losses = 15_000
        b._lt_sampling(s.rs, s, now)
    assert b.lt_use_bw
    assert b.bw == pytest.approx(500_000, rel=0.05)


def test_max_filter_forgets_after_its_window() -> None:
    f = MaxFilter()
    f.update(10, 1, 100.0)
    f.update(10, 5, 50.0)
    assert f.get() == 100.0
    f.update(10, 12, 40.0)
    assert f.get() == 50.0


# ----- fidelity to tcp_bbr.c: inflight at the earliest departure time, and
# the min_rtt filter's treatment of delayed ACKs


def paced(b: Bbr, next_send: float) -> Pacer:
    """Give `b`'s sampler a pacer whose next burst is due at `next_send`."""
    p = Pacer()
    p.rate = b.pacing_rate or 1_000_000.0
    p.next_send = next_send
    assert b.sampler is not None
    b.sampler.pacer = p
    return p


def at_phase(monkeypatch: pytest.MonkeyPatch, idx: int) -> tuple[Bbr, float]:
    """A Bbr in PROBE_BW at gain-cycle phase `idx` (0: 1.25, 1: 0.75), that
    phase just begun."""
    monkeypatch.setattr(bbr_mod._rng, "randrange", lambda n: 0)  # to phase 0
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    assert b.cycle_idx == 0
    if idx == 1:  # a full-length probe that reached its target
        now += RTT + 0.001
        ack(b, now, b.max_bw, in_flight=b.inflight(b.max_bw, 1.25) + b.cwnd)
    assert b.cycle_idx == idx
    return b, now


def test_probing_phase_counts_what_leaves_before_the_next_departure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bbr_packets_in_net_at_edt: prior inflight at the 1.25 target, but the
    # next paced burst leaves 10 ms from now, when 10 ms of bw will have
    # been delivered: below the target, so the probe goes on.
    b, now = at_phase(monkeypatch, 0)
    bw = b.max_bw
    target = b.inflight(bw, 1.25)
    now += RTT + 0.001  # the phase has lasted min_rtt
    paced(b, now + 0.01)
    ack(b, now, bw, in_flight=target)
    assert b.cycle_idx == 0 and b.pacing_gain == 1.25


def test_probing_phase_counts_the_burst_departing_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When raising inflight the burst sent at the EDT counts (tso_segs_goal):
    # one burst short of the 1.25 target is enough to end the probe.
    b, now = at_phase(monkeypatch, 0)
    bw = b.max_bw
    target = b.inflight(bw, 1.25)
    now += RTT + 0.001
    paced(b, now)  # due now: nothing leaves before it
    ack(b, now, bw, in_flight=target - b.tso_goal())
    assert b.cycle_idx == 1 and b.pacing_gain == 0.75


def test_draining_phase_ends_once_inflight_at_the_edt_is_one_bdp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The 0.75 phase ends early when inflight will be down to one BDP by the
    # next departure, though it is still above it now.
    b, now = at_phase(monkeypatch, 1)
    bw = b.max_bw
    target = b.inflight(bw, 1.0)
    now += 0.01  # well within min_rtt
    paced(b, now + 0.005)  # 5 ms of bw = 5 segments leave before it
    ack(b, now, bw, in_flight=target + 3 * MSS)
    assert b.cycle_idx == 2 and b.pacing_gain == 1.0


def test_drain_ends_once_inflight_at_the_edt_is_one_bdp() -> None:
    # bbr_check_drain uses the same estimate of inflight.
    b = Bbr(MSS, 10 * MSS)
    now = 0.0
    for _ in range(5):
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=200 * MSS)
    assert b.mode == DRAIN
    bdp = b.inflight(b.max_bw, 1.0)
    now += RTT
    paced(b, now + 0.005)
    ack(b, now, 1_000_000.0, in_flight=bdp + 3 * MSS)
    assert b.mode == PROBE_BW


def expire_min_rtt(b: Bbr, now: float) -> float:
    """Run ACKs with RTTs above the minimum until its 10 s are nearly up."""
    stamp = b.min_rtt_stamp
    while now + RTT < stamp + 10.0:
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd, rtt=RTT * 1.5)
    assert b.mode == PROBE_BW and b.min_rtt == RTT
    return stamp + 10.0 + 0.001


def delayed_ack(b: Bbr, now: float, rtt: float) -> None:
    s = b.sampler
    assert s is not None
    rs = s.begin(MSS // 2)
    rs.prior_delivered = s.delivered
    rs.prior_time = now - rtt
    s.delivered += MSS // 2
    s.delivered_time = now
    rs.acked_sacked = rs.delivered = MSS // 2
    rs.interval = rtt
    rs.rtt = rtt
    rs.is_ack_delayed = True
    b.on_sample(rs, now, MSS // 2, 0)


def test_expired_min_rtt_ignores_a_delayed_ack_sample() -> None:
    # bbr_update_min_rtt: after 10 s any sample replaces min_rtt, except one
    # from a probably delayed ACK (its RTT has the receiver's 40 ms+ timer).
    b = Bbr(MSS, 10 * MSS)
    now = expire_min_rtt(b, to_probe_bw(b))
    delayed_ack(b, now, RTT + 0.04)
    assert b.min_rtt == RTT  # kept
    assert b.mode == PROBE_RTT  # but the filter did expire: probe for it


def test_expired_min_rtt_takes_an_undelayed_sample() -> None:
    b = Bbr(MSS, 10 * MSS)
    now = expire_min_rtt(b, to_probe_bw(b))
    ack(b, now, 1_000_000.0, in_flight=b.cwnd, rtt=RTT * 1.5)
    assert b.min_rtt == RTT * 1.5 and b.min_rtt_stamp == now


def test_a_sample_equal_to_min_rtt_refreshes_it() -> None:
    # rs->rtt_us <= bbr->min_rtt_us: a path that still shows its minimum
    # needs no PROBE_RTT.
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    for _ in range(150):  # 15 s of samples at exactly the minimum
        now += RTT
        ack(b, now, 1_000_000.0, in_flight=b.cwnd, rtt=RTT)
        assert b.mode == PROBE_BW
    assert b.min_rtt_stamp == now


def burst_ack(b: Bbr, now: float, acked: int, in_flight: int) -> None:
    """An ACK within the current round (no round start) delivering `acked`."""
    s = b.sampler
    assert s is not None
    rs = s.begin(in_flight)
    rs.prior_delivered = b.next_rtt_delivered - 1  # sent before the round began
    rs.prior_time = now - RTT
    s.delivered += acked
    s.delivered_time = now
    rs.acked_sacked = acked
    rs.delivered = int(b.max_bw * RTT)
    rs.interval = RTT
    rs.rtt = RTT
    b.on_sample(rs, now, in_flight, 0)


def test_ack_aggregation_adds_the_extra_acked_to_the_window() -> None:
    # bbr_update_ack_aggregation: ACKs that arrive in bursts (here 40 kB in
    # 1 ms, every 100 ms, at a 1 MB/s bw) deliver more than bw * time; the
    # excess is kept (max over 5-10 rounds) and added to the cwnd target so
    # the sender keeps sending through the silences.
    b = Bbr(MSS, 10 * MSS)
    now = to_probe_bw(b)
    bw = 1_000_000.0
    for _ in range(30):
        now += RTT
        ack(b, now, bw, in_flight=b.cwnd)  # one 10 kB ACK per round
    smooth_target = b.quantization_budget(b.bdp(bw, 2.0))
    # One ACK's worth is always "extra" (an epoch starts with it), as Linux.
    assert b._ack_aggregation_cwnd() == 10 * MSS
    assert b.cwnd <= smooth_target + 10 * MSS
    for _ in range(3):
        now += RTT
        ack(b, now, bw, in_flight=b.cwnd, acked=MSS)  # a round starts
        for _ in range(4):
            now += 0.00025
            burst_ack(b, now, 10 * MSS, in_flight=b.cwnd)
    extra = b._ack_aggregation_cwnd()
    assert 39 * MSS <= extra <= 41 * MSS  # 41 kB in 1 ms, less 1 ms of bw
    assert b.cwnd >= smooth_target + 30 * MSS
    # Ten smooth rounds later both halves of the filter have aged out.
    for _ in range(10):
        now += RTT
        ack(b, now, bw, in_flight=b.cwnd)
    assert b._ack_aggregation_cwnd() == 10 * MSS
