"""Bulk transfers over a lossy, duplicating, reordering, delaying link.

Each way (one direction after the other on one connection) for 20 seeds, in
virtual time. One 50 MB seed takes 12 s of wall time on an idle machine of
this kind (35 s on a busy one), so the per-commit suite sends 5 MB each way
per seed (about 1.5 s each) and USTACK_LONG=1 runs the issue's 50 MB.
USTACK_SIM_MB overrides the size. Both directions at once: see
test_lifecycle_both_ways.py.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest
import trio
from trio.testing import MockClock

from tests.sim.lifecycle_net import B_IP, impaired_net
from ustack import TcpStream

SPEC = "loss=5%,dup=2%,reorder=5%,delay=5ms"
_DEFAULT_MB = "50" if os.environ.get("USTACK_LONG") == "1" else "5"
SIZE = int(float(os.environ.get("USTACK_SIM_MB", _DEFAULT_MB)) * 1_000_000)


async def read_all(stream: TcpStream) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some():
        got.extend(chunk)
    return bytes(got)


@pytest.mark.parametrize("seed", range(20))
async def test_each_way_intact_under_impairment(
    seed: int, autojump_clock: MockClock
) -> None:
    up = random.Random(seed).randbytes(SIZE)
    down = random.Random(seed + 1000).randbytes(SIZE)
    async with impaired_net(SPEC, seed=seed) as net:
        listener = await net.b.listen(7)
        server_got: list[bytes] = []

        async def server() -> None:
            stream = await listener.accept()
            server_got.append(await read_all(stream))
            await stream.send_all(down)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            client = await net.a.connect((B_IP, 7))
            await client.send_all(up)
            await client.send_eof()
            client_got = await read_all(client)
            await client.aclose()
        counters = net.link.counters
    assert hashlib.sha256(server_got[0]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(client_got).digest() == hashlib.sha256(down).digest()
    # The link really did impair both directions.
    for d in ("in", "out"):
        assert counters[f"{d}.loss"] > 0
        assert counters[f"{d}.dup"] > 0
        assert counters[f"{d}.reorder"] > 0
