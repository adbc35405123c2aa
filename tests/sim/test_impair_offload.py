"""Two stacks with offload (virtio-net headers, 64 KB segments) over an
impaired memory link: the impairment acts on wire-sized packets, and the
cut pieces are valid for both receivers (partial checksums the far side
trusts one way, full checksums the stack verifies the other way)."""

from __future__ import annotations

import random

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, sim_settings
from ustack import Stack, TcpStream
from ustack.link.impair import ImpairedLink, parse_impair_spec
from ustack.link.memory import memory_link_pair

SIZE = 1_000_000


async def read_all(stream: TcpStream) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some():
        got.extend(chunk)
    return bytes(got)


@pytest.mark.parametrize("seed", [1, 2])
async def test_offloaded_transfer_is_impaired_per_wire_packet(
    seed: int, autojump_clock: MockClock
) -> None:
    link_a, link_b = memory_link_pair()
    link_a.vnet_hdr = link_b.vnet_hdr = True  # type: ignore[attr-defined]
    link = ImpairedLink.from_config(
        link_a, parse_impair_spec("loss=1%,delay=5ms", seed=seed)
    )
    up = random.Random(seed).randbytes(SIZE)
    down = random.Random(seed + 1).randbytes(SIZE)
    settings = sim_settings()
    async with (
        Stack(link, A_IP, settings, network="10.0.0.0/24") as a,
        Stack(link_b, B_IP, settings, network="10.0.0.0/24") as b,
    ):
        assert a.tso_limit and b.tso_limit  # both stacks send super segments
        listener = await b.listen(7)
        got_up: list[bytes] = []

        async def server() -> None:
            stream = await listener.accept()
            got_up.append(await read_all(stream))
            await stream.send_all(down)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            client = await a.connect((B_IP, 7))
            await client.send_all(up)
            await client.send_eof()
            got_down = await read_all(client)
            await client.aclose()
    assert got_up == [up] and got_down == down
    c = link.counters
    # Both directions carried super segments and cut them ...
    assert c["out.gso_split"] > 0 and c["in.gso_split"] > 0
    # ... so the packets impaired are wire-sized: at least one per MSS.
    assert c["out.packets"] >= SIZE // 1460 and c["in.packets"] >= SIZE // 1460
    assert c["out.loss"] > 0 and c["in.loss"] > 0
    assert b.counters["InCsumErrors"] == 0 and a.counters["InCsumErrors"] == 0
