"""The loss-recovery issue's paths, two stacks through the impairment layer in
virtual time: each transfer is intact and needs fewer RTOs than the recovery
before RACK/PRR/TLP did (its counts for the same seeds, 1 MB from B to A, were
measured at commit d98263b and are kept here as the bar to beat)."""

from __future__ import annotations

import random

import pytest
from trio.testing import MockClock

from tests.sim.lifecycle_net import impaired_net, send_b_to_a

SIZE = 1_000_000
# path -> RTOs per seed (1, 2) with the previous loss recovery.
BEFORE = {
    "loss=1%,delay=10ms": (1, 3),
    "loss=5%,dup=2%,reorder=5%,delay=5ms": (30, 30),
    "loss=0.1%,delay=50ms": (1, 0),
    "rate=20mbit,queue=200,delay=20ms": (0, 0),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("spec", list(BEFORE))
async def test_transfer_intact_with_fewer_rtos(
    spec: str, seed: int, autojump_clock: MockClock
) -> None:
    data = random.Random(seed).randbytes(SIZE)
    async with impaired_net(spec, seed=seed) as net:
        got, _ = await send_b_to_a(net, data)
        rtos = net.b.counters["TCPTimeouts"]
        sender = net.b.counters
    assert bytes(got) == data
    before = BEFORE[spec][seed - 1]
    if before:
        assert rtos < before and rtos <= 3, dict(sender)
    else:
        assert rtos == 0, dict(sender)
