"""Busy polling of the link (Settings.busy_poll, as Linux's net.core.busy_read):
after a batch the packet loop keeps reading instead of waiting on the link,
unless the batch woke a task. A scripted link tells which reads and waits
the loop made; the spin's budget is real time, so it is set far longer than
the few reads a test needs."""

from __future__ import annotations

import ipaddress

import trio
import trio.testing

from ustack import Settings, Stack
from ustack.wire.ipv4 import PROTO_TCP, build_ipv4_header, build_tcp_packet, parse_ipv4
from ustack.wire.tcp import RST, SYN, TcpSegment, parse_tcp
from ustack.wire.udp import PROTO_UDP, build_udp

US = "10.0.0.2"
US_B = ipaddress.IPv4Address(US).packed
PEER_B = ipaddress.IPv4Address("10.0.0.1").packed


class ScriptedLink:
    """Each read_batch returns the next entry of `reads` ([] once it runs
    out); wait_readable returns at once while entries remain, else blocks.
    `log` records "wait", "read" and "write" in order."""

    def __init__(self, reads: list[list[bytes]]) -> None:
        self.mtu = 1500
        self.reads = reads
        self.log: list[str] = []
        self.written: list[bytes] = []
        self.all_read = trio.Event()

    async def wait_readable(self) -> None:
        self.log.append("wait")
        if self.reads:
            await trio.lowlevel.checkpoint()
        else:
            self.all_read.set()
            await trio.sleep_forever()

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        self.log.append("read")
        return self.reads.pop(0) if self.reads else []

    def write(self, packet: bytes) -> None:
        self.log.append("write")
        self.written.append(packet)

    def close(self) -> None:
        pass


def syn_to_closed_port(sport: int) -> bytes:
    seg = TcpSegment(sport, 4444, 1000, 0, SYN, 65535)
    return build_tcp_packet(PEER_B, US_B, seg, 1)


def udp_to(port: int) -> bytes:
    udp = build_udp(5000, port, b"hello", PEER_B, US_B)
    return build_ipv4_header(PEER_B, US_B, PROTO_UDP, len(udp), 2) + udp


def rst_ports(link: ScriptedLink) -> list[int]:
    ports = []
    for packet in link.written:
        ip = parse_ipv4(packet)
        if ip.proto == PROTO_TCP:
            seg = parse_tcp(ip.payload, ip.src, ip.dst)
            if seg.flags & RST:
                ports.append(seg.dst_port)
    return ports


async def run(link: ScriptedLink, busy_poll: int) -> None:
    settings = Settings(shutdown_grace=0.1, busy_poll=busy_poll)
    async with Stack(link, US, settings):
        with trio.fail_after(10):
            await link.all_read.wait()


async def test_busy_poll_serves_a_packet_that_arrives_while_spinning() -> None:
    # The first packet, then two empty reads, then a second packet.
    reads = [[syn_to_closed_port(1001)], [], [], [syn_to_closed_port(1002)]]
    link = ScriptedLink(reads)
    await run(link, busy_poll=50_000)  # 50 ms: far more than four reads
    assert rst_ports(link) == [1001, 1002]  # RFC 9293 3.10.7.1: RST each
    first_wait, second = link.log.index("wait"), link.log.index("wait", 1)
    writes = [i for i, what in enumerate(link.log) if what == "write"]
    # Both answers leave after the first wait and before the second one:
    # the second packet was read by the spin, with no wait in between.
    assert first_wait < writes[0] < writes[1] < second


async def test_without_busy_poll_the_loop_waits_after_each_batch() -> None:
    reads = [[syn_to_closed_port(1001)], [], [], [syn_to_closed_port(1002)]]
    link = ScriptedLink(reads)
    await run(link, busy_poll=0)
    assert rst_ports(link) == [1001, 1002]
    # One read per wake-up: the short batch ends it.
    assert link.log[:4] == ["wait", "read", "write", "wait"]


async def test_no_busy_poll_after_a_batch_that_woke_a_task() -> None:
    reads = [[udp_to(5353)], [], [syn_to_closed_port(1002)]]
    link = ScriptedLink(reads)
    got: list[bytes] = []
    settings = Settings(shutdown_grace=0.1, busy_poll=50_000)
    async with Stack(link, US, settings) as stack:
        sock = stack.udp_socket()
        sock.bind((US, 5353))

        async def reader() -> None:
            data, _ = await sock.recvfrom(100)
            got.append(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(10):
                await link.all_read.wait()
    assert got == [b"hello"]
    # The datagram's reader must run first: straight back to the wait.
    assert link.log[:3] == ["wait", "read", "wait"]


async def test_busy_poll_yields_to_other_tasks_under_steady_traffic() -> None:
    # A packet on every read: the spin never runs dry, so only its time
    # slice (a millisecond) lets another task run before the script ends.
    total = 3000
    link = ScriptedLink([[syn_to_closed_port(1024 + i % 60000)] for i in range(total)])
    seen: list[int] = []
    settings = Settings(shutdown_grace=0.1, busy_poll=50_000)
    async with Stack(link, US, settings), trio.open_nursery() as nursery:

        async def other() -> None:
            while True:
                seen.append(len(link.reads))
                await trio.lowlevel.checkpoint()

        nursery.start_soon(other)
        with trio.fail_after(30):
            await link.all_read.wait()
        nursery.cancel_scope.cancel()
    assert len(rst_ports(link)) == total
    assert any(0 < left < total - 1 for left in seen)  # ran amid the traffic
