"""Two stacks over an impaired in-memory link (helpers for test_lifecycle_*).

Stack A's link is wrapped in an `ImpairedLink` for both directions, as
`ustack up --impair` wraps the TUN device: A -> B traffic is A's outbound,
B -> A traffic A's inbound. Every packet is recorded with its virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from ustack import Settings, Stack
from ustack.link.impair import ImpairedLink, parse_impair_spec
from ustack.link.memory import MemoryLink, memory_link_pair
from ustack.wire.ipv4 import parse_ipv4
from ustack.wire.tcp import TcpSegment, parse_tcp

A_IP = "10.0.0.1"
B_IP = "10.0.0.2"


@dataclass
class Seen:
    time: float
    outgoing: bool  # from the stack that recorded it
    seg: TcpSegment


@dataclass
class ImpairedNet:
    a: Stack
    b: Stack
    link: ImpairedLink  # A's
    link_b: MemoryLink
    a_log: list[Seen] = field(default_factory=list)  # as A's taps see it
    b_log: list[Seen] = field(default_factory=list)


def _recorder(log: list[Seen]):  # type: ignore[no-untyped-def]
    def tap(outgoing: bool, packet: bytes, now: float) -> None:
        ip = parse_ipv4(packet)
        if ip.proto == 6:
            log.append(
                Seen(now, outgoing, parse_tcp(ip.payload, b"", b"", verify=False))
            )

    return tap


@asynccontextmanager
async def impaired_net(
    spec: str = "", seed: int = 1, **changes: object
) -> AsyncIterator[ImpairedNet]:
    """Needs the test to take `autojump_clock`. `changes` go to both stacks'
    Settings (msl=0.5 and shutdown_grace=0.5 unless given)."""
    settings = Settings(msl=0.5, shutdown_grace=0.5).replace(**changes)
    link_a, link_b = memory_link_pair()
    link = ImpairedLink.from_config(link_a, parse_impair_spec(spec, seed=seed))
    async with (
        Stack(link, A_IP, settings) as a,
        Stack(link_b, B_IP, settings.replace()) as b,
    ):
        net = ImpairedNet(a, b, link, link_b)
        a.taps.append(_recorder(net.a_log))
        b.taps.append(_recorder(net.b_log))
        yield net


async def send_b_to_a(
    net: ImpairedNet, data: bytes, port: int = 7
) -> tuple[bytes, float]:
    """B serves `data` on `port`, A connects and reads to EOF: what A got,
    and the virtual time from connect to EOF."""
    import trio

    listener = await net.b.listen(port)

    async def server() -> None:
        stream = await listener.accept()
        await stream.send_all(data)
        await stream.aclose()

    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = trio.current_time()
        client = await net.a.connect((B_IP, port))
        while chunk := await client.receive_some():
            got += chunk
        took = trio.current_time() - start
        await client.aclose()
    return bytes(got), took
