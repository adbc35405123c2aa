"""ECN through a CE-marking bottleneck queue (two stacks, virtual time):
with ECN the sender backs off on marks and the queue never overflows; the
same path without ECN tail-drops."""

from __future__ import annotations

import random

from trio.testing import MockClock

from tests.sim.lifecycle_net import impaired_net, send_b_to_a

SIZE = 2_000_000
RATE = 10e6 / 8  # in.rate=10mbit, bytes/s
# B sends to A; the bottleneck is A's inbound side (B -> A), 40 ms RTT.
PATH = "in.rate=10mbit,in.queue=60,in.ecn_threshold=15,delay=20ms"


Counts = dict[str, int]


async def transfer(ecn_setting: int, seed: int) -> tuple[float, Counts, Counts]:
    data = random.Random(seed).randbytes(SIZE)
    async with impaired_net(PATH, seed=seed, ecn=ecn_setting) as net:
        got, took = await send_b_to_a(net, data)
        assert got == data
        return took, dict(net.link.counters), dict(net.b.counters)


async def test_ce_marking_queue_keeps_the_flow_drop_free(
    autojump_clock: MockClock,
) -> None:
    # The path has no random impairment: one seed is as good as any.
    seed = 1
    took, link, sender = await transfer(1, seed)
    assert link.get("in.ce_mark", 0) > 0
    assert sender["TCPDeliveredCE"] > 0  # the sender saw the echoes
    assert link.get("in.rate_drop", 0) == 0, link  # never overflowed
    assert sender.get("RetransSegs", 0) == 0 and sender.get("TCPTimeouts", 0) == 0
    # Converged near the bottleneck: at least 85% of 10 Mbit/s overall.
    assert SIZE / took > 0.85 * RATE, (SIZE / took, link)
    took_plain, link_plain, _ = await transfer(0, seed)
    assert link_plain.get("in.ce_mark", 0) == 0
    assert link_plain.get("in.rate_drop", 0) > 0  # without ECN: tail drops
