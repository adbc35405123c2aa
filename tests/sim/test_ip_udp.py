"""Two stacks over the in-memory link: UDP sockets and channels, ICMP errors
in both directions, fragments, reassembly timeouts, all in virtual time."""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net
from ustack.ip.fragment import ipv4_packets
from ustack.wire.icmp import (
    DEST_UNREACHABLE,
    FRAGMENTATION_NEEDED,
    TIME_EXCEEDED,
    build_icmp_packet,
    error_message,
    parse_icmp,
    parse_quoted,
)
from ustack.wire.ipv4 import PROTO_TCP, parse_ipv4
from ustack.wire.udp import PROTO_UDP, build_udp

A = IPv4Address(A_IP).packed
B = IPv4Address(B_IP).packed


def icmp_sent(packets: list[bytes]) -> list[tuple[int, int]]:
    out = []
    for p in packets:
        ip = parse_ipv4(p, fragments=True)
        if ip.proto == 1 and not ip.frag:
            msg = parse_icmp(ip.payload)
            out.append((msg.type, msg.code))
    return out


async def test_udp_socket_sendto_recvfrom(net: Net, autojump_clock: MockClock) -> None:
    server = net.b.udp_socket()
    server.bind(("", 5000))
    client = net.a.udp_socket()
    await client.sendto(b"ping", (B_IP, 5000))
    data, source = await server.recvfrom(100)
    assert data == b"ping"
    assert source == (A_IP, client.getsockname()[1])
    await server.sendto(b"pong", source)
    assert await client.recvfrom() == (b"pong", (B_IP, 5000))
    assert net.b.counters["UdpInDatagrams"] == 1
    assert net.a.counters["UdpOutDatagrams"] == 1
    await client.close()
    await server.close()


async def test_big_datagrams_cross_in_fragments(
    net: Net, autojump_clock: MockClock
) -> None:
    endpoint = await net.b.udp_bind(7)
    conn = await net.a.udp_connect((B_IP, 7))
    payload = bytes(range(256)) * 200  # 51200 bytes: 35 fragments at MTU 1500
    await conn.send(payload)
    datagram = await endpoint.receive()
    assert datagram.data == payload and datagram.address[0] == A_IP
    await endpoint.send(datagram)
    assert await conn.receive() == payload
    assert net.a.counters["FragCreates"] == 35
    assert net.b.counters["ReasmOKs"] == 1
    with pytest.raises(OSError) as info:
        await conn.socket.send(bytes(65508))
    assert info.value.errno == errno.EMSGSIZE
    await conn.aclose()
    await endpoint.aclose()


async def test_closed_port_refuses_a_connected_socket(
    net: Net, autojump_clock: MockClock
) -> None:
    sock = net.a.udp_socket()
    await sock.connect((B_IP, 4444))
    await sock.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):
        await sock.recv()
    assert net.b.counters["UdpNoPorts"] == 1
    assert net.b.counters["IcmpOutDestUnreachs"] == 1
    # Reported once, then cleared (Linux sock_error).
    await sock.send(b"again")
    with pytest.raises(ConnectionRefusedError):
        await sock.recv()
    await sock.close()


async def test_unconnected_socket_ignores_port_unreachable(
    net: Net, autojump_clock: MockClock
) -> None:
    sock = net.a.udp_socket()
    await sock.sendto(b"x", (B_IP, 4444))
    await trio.sleep(0.1)
    assert net.a.counters["IcmpInDestUnreachs"] == 1
    with trio.move_on_after(1.0) as scope:
        await sock.recv()
    assert scope.cancelled_caught  # no error, no data: still waiting
    await sock.close()


async def test_connected_socket_hears_only_its_peer(
    net: Net, autojump_clock: MockClock
) -> None:
    sock = net.b.udp_socket()
    sock.bind(("", 6000))
    await sock.connect((A_IP, 1234))
    stranger = build_udp(999, 6000, b"stranger", A, B)
    friend = build_udp(1234, 6000, b"friend", A, B)
    for i, datagram in enumerate((stranger, friend)):
        net.link_b.inject(ipv4_packets(A, B, PROTO_UDP, datagram, i, 1500)[0])
    assert await sock.recv() == b"friend"
    assert net.b.counters["UdpNoPorts"] == 1
    await sock.close()


async def test_receive_queue_is_bounded(net: Net, autojump_clock: MockClock) -> None:
    sock = net.b.udp_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # 8192 (doubled)
    sock.bind(("", 7000))
    for i in range(20):
        datagram = build_udp(1, 7000, bytes(1000), A, B)
        net.link_b.inject(ipv4_packets(A, B, PROTO_UDP, datagram, i, 1500)[0])
    await trio.sleep(0.1)
    queued = net.b.counters["UdpInDatagrams"]
    assert queued == 8192 // (1000 + 256)
    assert net.b.counters["UdpRcvbufErrors"] == 20 - queued
    for _ in range(queued):
        assert await sock.recv() == bytes(1000)
    await sock.close()


async def test_port_in_use_and_ephemeral_ports(
    net: Net, autojump_clock: MockClock
) -> None:
    one = net.a.udp_socket()
    one.bind(("", 8000))
    two = net.a.udp_socket()
    with pytest.raises(OSError) as info:
        two.bind(("", 8000))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        await two.send(b"x")
    assert info.value.errno == errno.EDESTADDRREQ
    two.bind(("", 0))
    port = two.getsockname()[1]
    s = net.a.settings
    assert s.port_low <= port <= s.port_high
    await one.close()
    three = net.a.udp_socket()
    three.bind(("", 8000))  # free again after close
    await three.close()
    await two.close()


async def test_port_unreachables_are_rate_limited(
    net: Net, autojump_clock: MockClock
) -> None:
    net.link_b.sent = []
    for i in range(20):
        datagram = build_udp(1, 4444, b"x", A, B)
        net.link_b.inject(ipv4_packets(A, B, PROTO_UDP, datagram, i, 1500)[0])
    await trio.sleep(0.1)
    assert icmp_sent(net.link_b.sent) == [(DEST_UNREACHABLE, 3)] * 6  # burst
    assert net.b.counters["IcmpOutRateLimitHost"] == 14
    await trio.sleep(1.0)
    net.link_b.inject(ipv4_packets(A, B, PROTO_UDP, datagram, 99, 1500)[0])
    await trio.sleep(0.1)
    assert len(icmp_sent(net.link_b.sent)) == 7  # one more a second later


async def test_reassembly_timeout_sends_time_exceeded(
    net: Net, autojump_clock: MockClock
) -> None:
    net.link_b.sent = []
    datagram = build_udp(1, 7, bytes(3000), A, B)
    first, *_ = ipv4_packets(A, B, PROTO_UDP, datagram, 5, 1500)
    net.link_b.inject(first)  # the rest never comes
    await trio.sleep(29.0)
    assert icmp_sent(net.link_b.sent) == []
    await trio.sleep(1.5)
    assert icmp_sent(net.link_b.sent) == [(TIME_EXCEEDED, 1)]
    assert net.b.counters["ReasmTimeout"] == 1


async def test_icmp_frag_needed_lowers_a_connections_mss(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(80)
    client = await net.a.connect((B_IP, 80))
    server = await listener.accept()
    tcb = client.socket.tcb
    assert tcb is not None and tcb.mss == 1448
    # A 1280-byte hop on the way silently drops bigger packets.
    net.link_a.filter = lambda packet: [] if len(packet) > 1280 else [packet]
    net.link_a.sent = []
    await client.send_all(bytes(2000))
    await trio.sleep(0.1)
    ours = [p for p in net.link_a.sent if parse_ipv4(p).proto == PROTO_TCP][0]
    forged = bytearray(ours)
    forged[24:28] = ((tcb.snd_max + 10_000) & 0xFFFFFFFF).to_bytes(4, "big")
    # First a quote of a segment we never sent: RFC 5927 says ignore it.
    for quote in (bytes(forged), ours):
        message = error_message(DEST_UNREACHABLE, FRAGMENTATION_NEEDED, 1280, quote)
        net.link_a.inject(build_icmp_packet(bytes([10, 0, 0, 9]), A, message, 1))
        await trio.sleep(0.1)
        if quote is not ours:
            assert tcb.mss == 1448
            assert net.a.counters["OutOfWindowIcmps"] == 1
    assert parse_quoted(ours).dst == B
    assert tcb.mss == 1280 - 52
    got = b""
    while len(got) < 2000:
        got += await server.receive_some()
    assert got == bytes(2000)
    assert net.a.ip_layer.mtu_to(B, trio.current_time()) == 1280
    # A new connection to that destination starts with the learned MTU.
    again = await net.a.connect((B_IP, 80))
    assert again.socket.tcb is not None and again.socket.tcb.mss_local == 1240
    await again.aclose()
    await client.aclose()
    await server.aclose()
    await listener.aclose()


async def test_host_unreachable_fails_connect_at_once(
    net: Net, autojump_clock: MockClock
) -> None:
    net.link_a.sent = []
    net.link_a.filter = lambda packet: []  # nothing reaches B

    async def router() -> None:
        while not net.link_a.sent:
            await trio.sleep(0.01)
        syn = net.link_a.sent[0]
        message = error_message(DEST_UNREACHABLE, 1, 0, syn)
        net.link_a.inject(build_icmp_packet(bytes([10, 0, 0, 254]), A, message, 1))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(router)
        with pytest.raises(OSError) as info:
            await net.a.connect((B_IP, 80))
    assert info.value.errno == errno.EHOSTUNREACH
    assert trio.current_time() - start < 1.0  # virtual time: before any retry


async def test_icmp_error_ends_a_half_open_connection(
    net: Net, autojump_clock: MockClock
) -> None:
    """A passive TCB in SYN_RECEIVED that learns its SYN-ACK cannot reach
    the client is dropped, and leaves the listener's SYN queue."""
    await net.b.listen(80)
    net.link_b.sent = []
    net.link_b.filter = lambda packet: []  # the SYN-ACK goes nowhere
    sock = net.a.socket()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sock.connect, (B_IP, 80))
        await trio.sleep(0.1)
        (listening,) = net.b.listeners()
        assert listening.half_open == 1
        synack = net.link_b.sent[0]
        message = error_message(DEST_UNREACHABLE, 1, 0, synack)
        net.link_b.inject(build_icmp_packet(bytes([10, 0, 0, 254]), B, message, 1))
        await trio.sleep(0.1)
        assert listening.half_open == 0
        assert not list(net.b.connections())
        nursery.cancel_scope.cancel()
    await sock.close()


async def test_udp_echo_service_never_answers_small_service_ports(
    net: Net, autojump_clock: MockClock
) -> None:
    from ustack.services.udp import serve_udp_echo

    endpoint = await net.b.udp_bind(7)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_udp_echo, endpoint)
        looped = net.a.udp_socket()
        looped.bind(("", 19))  # chargen's port: an echo loop in the making
        await looped.sendto(b"loop?", (B_IP, 7))
        fine = net.a.udp_socket()
        await fine.sendto(b"hi", (B_IP, 7))
        assert await fine.recv() == b"hi"
        with trio.move_on_after(1.0) as scope:
            await looped.recv()
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
    await looped.close()
    await fine.close()


async def test_no_icmp_error_about_an_icmp_error(
    net: Net, autojump_clock: MockClock
) -> None:
    """A fragmented ICMP error that never completes times out silently
    (RFC 1122 3.2.2), while a fragmented echo request gets Time Exceeded."""
    net.link_b.sent = []
    error = error_message(DEST_UNREACHABLE, 3, 0, bytes(3000))
    echo = bytes([8, 0, 0, 0]) + bytes(3000)  # an echo request's start
    for ident, message in ((1, error), (2, echo)):
        first, *_ = ipv4_packets(A, B, 1, message + bytes(3000), ident, 1500)
        net.link_b.inject(first)
    await trio.sleep(31.0)
    assert net.b.counters["ReasmTimeout"] == 2
    assert icmp_sent(net.link_b.sent) == [(TIME_EXCEEDED, 1)]
