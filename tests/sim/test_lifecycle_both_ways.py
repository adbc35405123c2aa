"""Data in both directions at once under loss (regression test; fixed).

The bug it caught: both directions under loss deadlocked in an ACK storm.
After an RTO, the TCB rewinds SND.NXT to SND.UNA (go-back-N) and then sends
its pure ACKs with SEQ = SND.NXT, which is below the peer's RCV.NXT. When both
sides are in that state, each side's ACK is "not acceptable" at the other
(RFC 9293 3.10.7.4: a zero-length segment needs RCV.NXT =< SEG.SEQ <
RCV.NXT+RCV.WND), so its ACK field is never processed and the receiver answers
with its own equally unacceptable ACK: the two ping-pong every RTT, SND.UNA
never advances, and the connection dies with ETIMEDOUT after retries2. BSD
sends pure ACKs with SEQ = SND.MAX (tcp_output), Linux with snd_nxt (which it
never rewinds) and rate-limits out-of-window dup ACKs (tcp_invalid_ratelimit,
RFC 5961 10).
"""

from __future__ import annotations

import hashlib
import random

import pytest
import trio
from trio.testing import MockClock

from tests.sim.lifecycle_net import B_IP, impaired_net
from tests.sim.test_lifecycle_transfer import SPEC, read_all

SIZE = 5_000_000


@pytest.mark.parametrize("seed", range(20))
async def test_both_ways_at_once_intact_under_impairment(
    seed: int, autojump_clock: MockClock
) -> None:
    up = random.Random(seed).randbytes(SIZE)
    down = random.Random(seed + 1000).randbytes(SIZE)
    async with impaired_net(SPEC, seed=seed) as net:
        listener = await net.b.listen(7)
        got: dict[str, bytes] = {}

        async def server() -> None:
            stream = await listener.accept()

            async def reader() -> None:
                got["up"] = await read_all(stream)

            async with trio.open_nursery() as inner:
                inner.start_soon(reader)
                await stream.send_all(down)
                await stream.send_eof()
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            client = await net.a.connect((B_IP, 7))

            async def reader() -> None:
                got["down"] = await read_all(client)

            async with trio.open_nursery() as inner:
                inner.start_soon(reader)
                await client.send_all(up)
                await client.send_eof()
            await client.aclose()
    assert hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(got["down"]).digest() == hashlib.sha256(down).digest()
