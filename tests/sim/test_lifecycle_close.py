"""Closing paths at the stack level: TIME_WAIT records, linger, shutdown."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from socket import SO_LINGER, SOL_SOCKET

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net
from ustack import Settings, Stack
from ustack.link.memory import memory_link_pair
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, parse_tcp

A = IPv4Address(A_IP).packed
B = IPv4Address(B_IP).packed


async def time_wait_on_b(net: Net) -> tuple[int, int, int]:
    """B closes first and sits in TIME_WAIT: (client port, B's RCV.NXT, SND.NXT)."""
    listener = await net.b.listen(80)
    client = await net.a.connect((B_IP, 80))
    server = await listener.accept()
    port = client.socket.getsockname()[1]
    await server.aclose()
    assert await client.receive_some() == b""
    await client.aclose()
    await trio.sleep(0.1)
    [record] = net.b.time_wait()
    return port, record.rcv_nxt, record.snd_nxt


def segments_from_b(net: Net) -> list[TcpSegment]:
    sent = net.link_b.sent or []
    return [parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False) for p in sent]


async def test_syn_with_higher_sequence_reopens_a_time_wait_tuple(
    net: Net, autojump_clock: MockClock
) -> None:
    """RFC 9293 3.10.7.4 MAY-2 / RFC 6191: a new SYN above RCV.NXT may start
    a new incarnation of the 4-tuple; an old one only gets an ACK."""
    port, rcv_nxt, snd_nxt = await time_wait_on_b(net)
    net.link_b.sent = []
    old = TcpSegment(port, 80, (rcv_nxt - 100) & 0xFFFFFFFF, 0, SYN, 65535, mss=1460)
    net.link_b.inject(build_tcp_packet(A, B, old, 1))
    await trio.sleep(0.01)
    [reply] = segments_from_b(net)
    assert (reply.flags, reply.seq, reply.ack) == (ACK, snd_nxt, rcv_nxt)
    assert len(list(net.b.time_wait())) == 1
    net.link_b.sent = []
    new = TcpSegment(
        port, 80, (rcv_nxt + 100_000) & 0xFFFFFFFF, 0, SYN, 65535, mss=1460
    )
    net.link_b.inject(build_tcp_packet(A, B, new, 2))
    await trio.sleep(0.01)
    [synack] = segments_from_b(net)
    assert synack.flags == SYN | ACK and synack.ack == (new.seq + 1) & 0xFFFFFFFF
    assert list(net.b.time_wait()) == []
    assert net.b.counters["TWReused"] == 1


async def test_rst_does_not_cut_a_time_wait_record_short(
    net: Net, autojump_clock: MockClock
) -> None:
    port, rcv_nxt, _ = await time_wait_on_b(net)
    rst = TcpSegment(port, 80, rcv_nxt, 0, RST, 0)
    net.link_b.inject(build_tcp_packet(A, B, rst, 1))
    await trio.sleep(0.01)
    assert len(list(net.b.time_wait())) == 1  # RFC 1337
    await trio.sleep(1.0)  # 2 * MSL
    assert list(net.b.time_wait()) == []


async def test_linger_close_waits_for_the_fin_to_be_acked(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(80)
    client = await net.a.connect((B_IP, 80))
    await listener.accept()
    client.socket.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 5))
    net.link_b.filter = lambda packet: []  # B's ACK of our FIN never arrives
    start = trio.current_time()
    await client.aclose()
    assert trio.current_time() - start == pytest.approx(5.0)  # waited N s
    assert client.socket.state == "FIN_WAIT_1"
    net.link_b.filter = None


async def test_linger_close_returns_once_acked(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(80)
    client = await net.a.connect((B_IP, 80))
    await listener.accept()
    client.socket.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 5))
    start = trio.current_time()
    await client.aclose()
    assert trio.current_time() - start < 0.1
    assert client.socket.state == "FIN_WAIT_2"


async def test_leaving_the_stack_sends_fin_then_resets_stragglers(
    autojump_clock: MockClock,
) -> None:
    """On shutdown (`ustack up` on SIGTERM) every connection gets a FIN; one
    whose peer does not finish within shutdown_grace is reset."""
    link_a, link_b = memory_link_pair()
    link_a.sent = []
    async with Stack(link_b, B_IP, Settings(shutdown_grace=0.5)) as b:
        listener = await b.listen(80)
        async with Stack(link_a, A_IP, Settings(shutdown_grace=0.5)) as a:
            client = await a.connect((B_IP, 80))
            await listener.accept()
            link_b.filter = lambda packet: []  # B goes silent
            del client
        flags = [
            parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False).flags
            for p in link_a.sent
        ]
        assert any(f & FIN for f in flags)
        assert flags[-1] & RST  # the straggler was reset after the grace period
        assert list(a.connections()) == []


async def test_reopened_tuple_gets_an_iss_above_the_old_snd_nxt(
    net: Net, autojump_clock: MockClock
) -> None:
    """Issue 10 item 7: RFC 1122 4.2.2.13 (Linux: old SND.NXT + 65537)."""
    port, rcv_nxt, snd_nxt = await time_wait_on_b(net)
    net.link_b.sent = []
    new = TcpSegment(port, 80, (rcv_nxt + 10) & 0xFFFFFFFF, 0, SYN, 65535, mss=1460)
    net.link_b.inject(build_tcp_packet(A, B, new, 2))
    await trio.sleep(0.01)
    [synack] = segments_from_b(net)
    assert synack.flags == SYN | ACK
    assert synack.seq == (snd_nxt + 65537) & 0xFFFFFFFF


async def test_syn_with_newer_timestamp_reopens_below_rcv_nxt(
    net: Net, autojump_clock: MockClock
) -> None:
    """Issue 10 item 8 / RFC 6191: the record keeps TS.Recent, so a SYN with
    a newer TSval reopens even with a sequence number below RCV.NXT."""
    port, rcv_nxt, _ = await time_wait_on_b(net)
    [record] = net.b.time_wait()
    assert record.ts_recent is not None
    net.link_b.sent = []
    syn = TcpSegment(port, 80, (rcv_nxt - 100) & 0xFFFFFFFF, 0, SYN, 65535, mss=1460)
    syn.timestamp = ((record.ts_recent + 1) & 0xFFFFFFFF, 0)
    net.link_b.inject(build_tcp_packet(A, B, syn, 2))
    await trio.sleep(0.01)
    [synack] = segments_from_b(net)
    assert synack.flags == SYN | ACK and synack.ack == (syn.seq + 1) & 0xFFFFFFFF
    assert list(net.b.time_wait()) == []
