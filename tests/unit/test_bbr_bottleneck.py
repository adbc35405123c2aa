"""BBR through a simulated 10 Mbit/s, 40 ms RTT bottleneck (virtual time,
tests/bottleneck_net.py): it fills the link without keeping a queue, and
two flows share it fairly. CUBIC on the same path fills the buffer, which
shows the queue check can fail."""

from __future__ import annotations

import statistics

from tests.bottleneck_net import HEADER, BottleneckNet
from ustack.config import Settings
from ustack.tcp.cc.bbr import seed_phase_rng

RATE = 10e6 / 8  # bytes/s on the wire
DELAY = 0.02  # one way: 40 ms RTT
MSS = 1460
PAYLOAD_RATE = RATE * MSS / (MSS + HEADER)
BDP_TIME = 2 * DELAY  # a queue of one BDP adds one RTT of delay


def settings(cc: str) -> Settings:
    return Settings(congestion=cc, snd_buf=4 << 20, rcv_buf=4 << 20)


def test_bbr_fills_the_bottleneck_without_a_standing_queue() -> None:
    net = BottleneckNet(rate=RATE, delay=DELAY, queue=100, mss=MSS)
    flow = net.add_flow(settings("bbr"), 50 << 20)
    net.run(12.0)
    goodput = net.goodput(flow, 2.0, 12.0)
    assert goodput >= 0.9 * PAYLOAD_RATE
    assert net.queue_delay_median(2.0, 12.0) < BDP_TIME
    assert flow.a.cc.describe()["mode"] in ("probe_bw", "probe_rtt")
    # The model: bw near the bottleneck's payload rate, min_rtt the path's.
    info = flow.a.cc.describe()
    assert abs(info["bw"] - PAYLOAD_RATE) < 0.1 * PAYLOAD_RATE  # type: ignore[operator]
    assert 2 * DELAY <= info["mrtt"] < 2 * DELAY + 0.005  # type: ignore[operator]


def test_cubic_on_the_same_path_keeps_the_buffer_full() -> None:
    net = BottleneckNet(rate=RATE, delay=DELAY, queue=100, mss=MSS)
    net.add_flow(settings("cubic"), 50 << 20)
    net.run(12.0)
    assert net.queue_delay_median(2.0, 12.0) > BDP_TIME


def test_two_bbr_flows_converge_to_fair_shares() -> None:
    net = BottleneckNet(rate=RATE, delay=DELAY, queue=100, mss=MSS)
    a = net.add_flow(settings("bbr"), 100 << 20)
    b = net.add_flow(settings("bbr"), 100 << 20)
    net.run(25.0)
    ga, gb = net.goodput(a, 10.0, 25.0), net.goodput(b, 10.0, 25.0)
    assert ga + gb >= 0.9 * PAYLOAD_RATE
    assert min(ga, gb) / max(ga, gb) > 0.8


def test_bbr_keeps_the_queue_small_when_the_sender_host_stalls() -> None:
    """The issue's bottleneck (20 Mbit/s, 40 ms RTT) with a sender host
    that stalls for up to 8 ms about every 10 ms, as a busy machine makes
    the event loop wake late: late pacing bursts repay the time lost
    (pacing.py's catch-up) and keep their scheduled send times for the rate
    samples (EDT), so BBR still fills the link with an accurate estimate.
    The queue depends on the gain cycle's random start phase and on where
    the stalls fall (about one run in four leaves ~25 ms): over five fixed
    phases, each with its own stall pattern, the median queue stays under
    half the base RTT (RTT within 1.5x of the path's) and no run keeps a
    whole BDP."""
    rate = 20e6 / 8
    payload_rate = rate * MSS / (MSS + HEADER)
    queues = []
    for seed in range(5):
        seed_phase_rng(seed)
        net = BottleneckNet(rate=rate, delay=DELAY, queue=500, mss=MSS,
                            stalls=(0.01, 0.008, seed + 1))
        flow = net.add_flow(settings("bbr"), 200 << 20)
        net.run(10.0)
        assert net.goodput(flow, 2.0, 10.0) >= 0.9 * payload_rate
        bw = flow.a.cc.describe()["bw"]
        assert abs(bw - payload_rate) < 0.05 * payload_rate  # type: ignore[operator]
        queues.append(net.queue_delay_median(2.0, 10.0))
    assert max(queues) < BDP_TIME
    assert statistics.median(queues) < 0.5 * BDP_TIME


def _stalled_runs(stamped: bool) -> tuple[list[float], list[float]]:
    """The issue's bottleneck with a sender host stalling for up to 4 ms
    about every 5 ms (the bench's 2-core machine, shared with the path
    process and the kernel's receiver): ACKs that reach it meanwhile are
    read in one batch when the stall ends. Per gain-cycle phase: the median
    queue (s) and the bandwidth estimate over the link's payload rate."""
    rate = 20e6 / 8
    payload_rate = rate * MSS / (MSS + HEADER)
    queues, estimates = [], []
    for seed in range(5):
        seed_phase_rng(seed)
        net = BottleneckNet(rate=rate, delay=DELAY, queue=500, mss=MSS,
                            stalls=(0.005, 0.004, 1), stamped=stamped)
        flow = net.add_flow(settings("bbr"), 200 << 20)
        net.run(10.0)
        assert net.goodput(flow, 2.0, 10.0) >= 0.9 * payload_rate
        bw = flow.a.cc.describe()["bw"]
        estimates.append(bw / payload_rate)  # type: ignore[operator]
        queues.append(net.queue_delay_median(2.0, 10.0))
    return queues, estimates


def test_acks_read_late_in_a_batch_inflate_the_estimate_and_the_queue() -> None:
    """With only the stack's own clock, an ACK read after a stall gets the
    stall's end as its time; a later sample whose interval starts there is
    short by the stall (a 2 ms error over a ~45 ms interval is 4%), and the
    10-round max filter keeps the fastest. Pacing above the link's rate
    then leaves a standing queue the 0.75 phase cannot drain: the failure
    the bench showed (docs/benchmarks.md, issue 14). The estimate is high
    by about 1% (at least twice the stamped runs' 0.5% below)."""
    queues, estimates = _stalled_runs(stamped=False)
    assert min(estimates) > 1.005
    assert statistics.median(queues) > 0.4 * BDP_TIME


def test_acks_at_their_arrival_time_keep_the_estimate_and_the_queue() -> None:
    """The same stalls with each ACK at the time it arrived (what
    Stack._input_stamped gives TCBs from the path process's socket stamps,
    as Linux takes tcp_mstamp in the softirq): the estimate is the link's
    rate and the queue a few ms, as without stalls."""
    queues, estimates = _stalled_runs(stamped=True)
    assert all(abs(e - 1) < 0.005 for e in estimates)
    assert max(queues) < 0.15 * BDP_TIME
