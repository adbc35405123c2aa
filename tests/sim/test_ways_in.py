"""The ways in over two in-memory stacks, in virtual time: trio's socket
factory (unmodified trio code) and the Socket readiness calls under it."""

from __future__ import annotations

import errno

import pytest
import trio
from trio.testing import MockClock

import ustack
from tests.sim.conftest import A_IP, B_IP, Net


async def upper(stream: trio.abc.Stream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data.upper())


async def test_trio_serve_tcp_and_open_tcp_stream_run_on_ustack(
    net: Net, autojump_clock: MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        trio.socket.set_custom_socket_factory(ustack.trio_socket_factory(net.b))
        listeners = await nursery.start(trio.serve_tcp, upper, 7000)
        assert [type(ln.socket).__name__ for ln in listeners] == ["UstackTrioSocket"]
        trio.socket.set_custom_socket_factory(ustack.trio_socket_factory(net.a))
        stream = await trio.open_tcp_stream(B_IP, 7000)
        assert isinstance(stream, trio.SocketStream)
        assert stream.socket.getsockname()[0] == A_IP
        await stream.send_all(b"through ustack")
        await stream.send_eof()
        got = b""
        while data := await stream.receive_some():
            got += data
        assert got == b"THROUGH USTACK"
        await stream.aclose()
        assert stream.socket.fileno() == -1
        nursery.cancel_scope.cancel()
    assert net.b.counters["PassiveOpens"] == 1 and net.a.counters["ActiveOpens"] == 1


async def test_factory_refuses_ipv6_and_udp(
    net: Net, autojump_clock: MockClock
) -> None:
    factory = ustack.trio_socket_factory(net.a)
    with pytest.raises(OSError) as info:
        factory.socket(trio.socket.AF_INET6, trio.socket.SOCK_STREAM, 0)
    assert info.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(OSError):
        factory.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM, 0)
    await trio.lowlevel.checkpoint()


async def test_readable_and_wait_readable_do_not_consume(
    net: Net, autojump_clock: MockClock
) -> None:
    server = net.b.socket()
    server.bind(("", 7001))
    server.listen()
    assert not server.readable()
    client = net.a.socket()
    await client.connect((B_IP, 7001))
    await server.wait_readable()
    assert server.readable()  # a connection waits in the accept queue
    conn, _ = await server.accept()
    assert not server.readable() and not conn.readable() and client.writable()
    await client.sendall(b"abc")
    with trio.fail_after(5):
        await conn.wait_readable()
        await conn.wait_readable()  # still readable: nothing was taken
    assert await conn.recv(10) == b"abc"
    assert not conn.readable()
    client.close_nowait()  # FIN without awaiting
    await conn.wait_readable()
    assert await conn.recv(10) == b""
    await conn.close()
    await server.close()
    assert server.readable()  # a closed listener: accept() would not block
