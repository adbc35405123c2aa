"""Two stacks over the in-memory link: the public API end to end."""

from __future__ import annotations

import errno
import hashlib
import random
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net
from ustack import State, TcpStream
from ustack.link.memory import MemoryLink
from ustack.wire.icmp import (
    ECHO_REPLY,
    ECHO_REQUEST,
    build_icmp_packet,
    echo_message,
    parse_icmp,
)
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, parse_tcp


async def echo_once(stream: TcpStream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_eof()


async def test_transfer_both_ways_intact(net: Net, autojump_clock: MockClock) -> None:
    listener = await net.b.listen(7)
    payload = random.Random(1).randbytes(3_000_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo_once, [listener])
        client = await net.a.connect((B_IP, 7))
        received = bytearray()

        async def reader() -> None:
            while chunk := await client.receive_some():
                received.extend(chunk)

        async with trio.open_nursery() as inner:
            inner.start_soon(reader)
            await client.send_all(payload)
            await client.send_eof()
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_connect_to_closed_port_is_refused(
    net: Net, autojump_clock: MockClock
) -> None:
    with pytest.raises(ConnectionRefusedError) as info:
        await net.a.connect((B_IP, 4242))
    assert info.value.errno == errno.ECONNREFUSED


async def test_connect_times_out_after_syn_retries(
    net: Net, autojump_clock: MockClock
) -> None:
    net.link_a.filter = lambda packet: []  # the network eats everything
    net.a.settings.syn_retries = 3
    start = trio.current_time()
    with pytest.raises(TimeoutError) as info:
        await net.a.connect((B_IP, 80))
    # SYN at 0, retransmissions at 1, 3, 7; give up at 15 s (RTO 1 s doubling).
    assert trio.current_time() - start == pytest.approx(15.0, abs=1e-6)
    assert info.value.errno == errno.ETIMEDOUT
    assert list(net.a.connections()) == []


async def test_four_way_close_states(net: Net, autojump_clock: MockClock) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    a_tcb, b_tcb = client.socket.tcb, server.socket.tcb
    assert a_tcb is not None and b_tcb is not None
    await client.send_eof()
    assert await server.receive_some() == b""  # EOF at the passive side
    assert b_tcb.state is State.CLOSE_WAIT
    await trio.sleep(0.1)  # B delays its ACK briefly, hoping to merge its FIN
    assert a_tcb.state is State.FIN_WAIT_2
    await server.aclose()
    closed_at = trio.current_time()
    await trio.sleep(0.01)
    assert b_tcb.state is State.CLOSED
    # A's TCB became a compact TIME_WAIT record lasting 2 * MSL = 1 s.
    assert list(net.a.connections()) == []
    [record] = net.a.time_wait()
    assert record.key[1:] == (9, client.socket.getsockname()[1])
    assert record.deadline == pytest.approx(closed_at + 1.0, abs=1e-6)
    await trio.sleep(1.0)
    assert list(net.a.time_wait()) == []
    assert list(net.b.connections()) == []


async def test_passive_close_merges_ack_and_fin(
    net: Net, autojump_clock: MockClock
) -> None:
    """B closes as soon as it reads EOF: its ACK rides on its FIN (3 segments)."""
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    net.link_b.sent = []
    net.link_a.sent = []
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()
    await trio.sleep(0.5)
    b_segments = [
        parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
        for p in net.link_b.sent
    ]
    assert [s.flags & (FIN | RST | SYN) for s in b_segments] == [FIN]


async def test_simultaneous_close_both_time_wait(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    a_states: list[State] = []
    b_states: list[State] = []
    net.a.state_observers.append(lambda tcb, old, new, now: a_states.append(new))
    net.b.state_observers.append(lambda tcb, old, new, now: b_states.append(new))
    held: list[tuple[MemoryLink, bytes]] = []

    def hold_for(destination: MemoryLink) -> Callable[[bytes], list[bytes]]:
        def hold(packet: bytes) -> list[bytes]:
            held.append((destination, packet))
            return []

        return hold

    net.link_a.filter = hold_for(net.link_b)
    net.link_b.filter = hold_for(net.link_a)
    await client.send_eof()
    await server.send_eof()
    net.link_a.filter = net.link_b.filter = None
    for destination, packet in held:  # both FINs are in flight at once
        destination.inject(packet)
    await trio.sleep(0.01)
    # Each FIN left before the other arrived: neither acknowledges the other.
    fins = [parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False) for _, p in held]
    assert [f.flags & FIN for f in fins] == [FIN, FIN]
    assert fins[0].ack == (fins[1].seq) and fins[1].ack == fins[0].seq
    # Both ends went FIN_WAIT_1 -> CLOSING -> TIME_WAIT, never FIN_WAIT_2. (The
    # stack reports states once per batch, so CLOSING may be folded away.)
    for states in (a_states, b_states):
        assert states[0] is State.FIN_WAIT_1 and states[-1] is State.TIME_WAIT
        assert State.FIN_WAIT_2 not in states
    assert len(list(net.a.time_wait())) == 1
    assert len(list(net.b.time_wait())) == 1


async def test_reset_reaches_the_peer_as_connection_reset(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    linger = struct.pack("ii", 1, 0)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    await server.aclose()  # linger 0: abort with RST
    with pytest.raises(ConnectionResetError):
        await client.socket.recv(10)
    assert client.socket.state == "CLOSED"


async def test_close_with_unread_data_sends_rst(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    await client.send_all(b"unread")
    await trio.sleep(0.01)
    await server.aclose()
    with pytest.raises(ConnectionResetError):
        await client.socket.recv(10)


async def test_send_after_shutdown_is_broken_pipe(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    await listener.accept()
    client.socket.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        await client.socket.send(b"x")


async def test_shutdown_read_makes_recv_return_eof(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(9)
    client = await net.a.connect((B_IP, 9))
    server = await listener.accept()
    client.socket.shutdown(socket.SHUT_RD)
    await server.send_all(b"ignored")
    assert await client.socket.recv(10) == b""


async def test_bind_conflicts_and_reuseaddr(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(8080, reuse_addr=False)
    sock = net.b.socket()
    with pytest.raises(OSError) as info:
        sock.bind(("", 8080))
    assert info.value.errno == errno.EADDRINUSE
    assert "already has a listening or bound socket" in str(info.value)
    # A connection that B closes first leaves B in TIME_WAIT on port 8080.
    client = await net.a.connect((B_IP, 8080))
    server = await listener.accept()
    await listener.aclose()
    await server.aclose()
    assert await client.receive_some() == b""
    await client.aclose()
    await trio.sleep(0.01)
    assert list(net.b.connections()) == []
    assert len(list(net.b.time_wait())) == 1
    plain = net.b.socket()
    with pytest.raises(OSError) as info:
        plain.bind(("", 8080))
    assert info.value.errno == errno.EADDRINUSE
    assert "held by connections (TIME_WAIT counts" in str(info.value)
    reuse = net.b.socket()
    reuse.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reuse.bind(("", 8080))
    reuse.listen(5)
    assert reuse.state == "LISTEN"


async def test_socket_api_names_and_addresses(
    net: Net, autojump_clock: MockClock
) -> None:
    server_sock = net.b.socket()
    server_sock.bind(("", 2000))
    server_sock.listen(4)
    client_sock = net.a.socket()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_sock.connect, (B_IP, 2000))
        conn, peer = await server_sock.accept()
    assert peer == client_sock.getsockname()
    assert conn.getpeername() == client_sock.getsockname()
    assert client_sock.getpeername() == (B_IP, 2000)
    assert conn.state == client_sock.state == "ESTABLISHED"
    await client_sock.sendall(b"ping")
    assert await conn.recv(100) == b"ping"
    client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert client_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
    assert client_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    await client_sock.close()
    await conn.close()
    await server_sock.close()
    assert server_sock.state == "CLOSED"


async def test_stream_turns_nodelay_on_socket_keeps_nagle(
    net: Net, autojump_clock: MockClock
) -> None:
    # trio's SocketStream sets TCP_NODELAY; the stdlib-shaped Socket does not.
    listener = await net.b.listen(2100)
    sock = net.a.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sock.connect, (B_IP, 2100))
        server = await listener.accept()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert server.socket.tcb is not None and server.socket.tcb.nodelay
    client = await net.a.connect((B_IP, 2100))
    assert client.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    for s in (server, client):
        await s.aclose()
    await sock.close()
    await listener.aclose()


async def test_accept_queue_is_bounded(net: Net, autojump_clock: MockClock) -> None:
    listener = await net.b.listen(3000, backlog=2)
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(net.a.connect, (B_IP, 3000))
            await trio.sleep(0.5)
            # Two wait in the accept queue; the third SYN is dropped and retried.
            assert len(listener.socket._listening.ready) == 2  # type: ignore[union-attr]
            streams = [await listener.accept() for _ in range(3)]
            assert len(streams) == 3
    assert net.b.counters["ListenOverflows"] >= 1


async def test_lossy_link_still_delivers(net: Net, autojump_clock: MockClock) -> None:
    rng = random.Random(7)

    def lossy(packet: bytes) -> list[bytes]:
        roll = rng.random()
        if roll < 0.05:
            return []
        if roll < 0.07:
            return [packet, packet]
        return [packet]

    net.link_a.filter = lossy
    net.link_b.filter = lossy
    listener = await net.b.listen(9)
    payload = random.Random(2).randbytes(500_000)
    async with trio.open_nursery() as nursery:

        async def sink() -> None:
            stream = await listener.accept()
            got = bytearray()
            while chunk := await stream.receive_some():
                got.extend(chunk)
            assert bytes(got) == payload
            await stream.aclose()

        nursery.start_soon(sink)
        client = await net.a.connect((B_IP, 9))
        await client.send_all(payload)
        await client.aclose()


async def test_ping_answered(net: Net, autojump_clock: MockClock) -> None:
    net.link_b.sent = []
    request = echo_message(ECHO_REQUEST, 77, 1, b"hello")
    packet = build_icmp_packet(
        IPv4Address(A_IP).packed, IPv4Address(B_IP).packed, request, 1
    )
    net.link_b.inject(packet)
    await trio.sleep(0.01)
    replies = [parse_icmp(parse_ipv4(p).payload) for p in net.link_b.sent]
    assert [(r.type, r.ident, r.seq, r.data) for r in replies] == [
        (ECHO_REPLY, 77, 1, b"hello")
    ]


async def test_syn_cookies_let_a_client_in_during_a_syn_flood(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.settings.max_syn_backlog = 4
    listener = await net.b.listen(80)
    for i in range(50):  # spoofed SYNs that will never complete
        syn = TcpSegment(10000 + i, 80, 1000 * i, 0, SYN, 65535, mss=1460)
        spoofed = bytes([10, 0, 1, i + 1])
        net.link_b.inject(build_tcp_packet(spoofed, IPv4Address(B_IP).packed, syn, i))
    await trio.sleep(0.01)
    assert net.b.counters["SyncookiesSent"] == 46
    client = await net.a.connect((B_IP, 80))
    server = await listener.accept()
    await client.send_all(b"through the flood")
    assert await server.receive_some() == b"through the flood"
    assert net.b.counters["SyncookiesRecv"] == 1
    assert server.socket.state == "ESTABLISHED"


async def test_forged_ack_to_listener_is_reset(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.settings.max_syn_backlog = 0  # every SYN gets a cookie
    await net.b.listen(80)
    a_ip, b_ip = IPv4Address(A_IP).packed, IPv4Address(B_IP).packed
    syn = TcpSegment(4444, 80, 76, 0, SYN, 1000, mss=1460)
    net.link_b.inject(build_tcp_packet(a_ip, b_ip, syn, 1))
    await trio.sleep(0.01)
    net.link_b.sent = []
    forged = TcpSegment(4444, 80, 77, 12345, ACK, 1000)  # not our cookie
    net.link_b.inject(build_tcp_packet(a_ip, b_ip, forged, 2))
    await trio.sleep(0.01)
    replies = [
        parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
        for p in net.link_b.sent
    ]
    assert [(r.flags, r.seq) for r in replies] == [(RST, 12345)]
    assert net.b.counters["SyncookiesSent"] == 1
    assert net.b.counters["SyncookiesFailed"] == 1
    assert list(net.b.connections()) == []


async def test_limits_on_connections_and_time_wait(
    net: Net, autojump_clock: MockClock
) -> None:
    net.a.settings.max_connections = 2
    net.a.settings.max_tw_buckets = 1
    listener = await net.b.listen(80)
    first = await net.a.connect((B_IP, 80))
    second = await net.a.connect((B_IP, 80))
    with pytest.raises(OSError) as info:
        await net.a.connect((B_IP, 80))
    assert info.value.errno == errno.ENOBUFS
    # Both close first from A: only one TIME_WAIT record fits.
    for stream in (first, second):
        server = await listener.accept()
        await stream.aclose()
        assert await server.receive_some() == b""
        await server.aclose()
    await trio.sleep(0.1)
    assert len(list(net.a.time_wait())) == 1
    assert net.a.counters["TCPTimeWaitOverflow"] == 1
    assert list(net.a.connections()) == []
