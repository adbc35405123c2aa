"""echo, discard, chargen and the handler guard, over trio's loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from ustack.services import (
    CHARGEN_CYCLE,
    SERVICES,
    guarded,
    make_handler,
    run_services,
    serve_chargen,
    serve_discard,
    serve_echo,
    serve_service,
)


@asynccontextmanager
async def running(
    serve: Callable[..., Awaitable[None]], *args: Any
) -> AsyncIterator[int]:
    """Run `serve(listener, *args)` on 127.0.0.1:0 and yield the port."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, listener, *args)
        yield port
        nursery.cancel_scope.cancel()


async def recv_until_eof(stream: trio.abc.Stream) -> bytes:
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


async def test_echo_half_close_gets_everything_back() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with running(serve_echo) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as nursery:

            async def send() -> None:
                await stream.send_all(payload)
                await stream.send_eof()

            nursery.start_soon(send)
            assert await recv_until_eof(stream) == payload


async def test_echo_serves_concurrent_clients() -> None:
    async with running(serve_echo) as port:

        async def client(i: int) -> None:
            async with await trio.open_tcp_stream("127.0.0.1", port) as s:
                msg = f"hello {i}".encode()
                await s.send_all(msg)
                await s.send_eof()
                assert await recv_until_eof(s) == msg

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(client, i)


async def test_discard_reads_until_eof_then_closes() -> None:
    async with (
        running(serve_discard) as port,
        await trio.open_tcp_stream("127.0.0.1", port) as stream,
    ):
        await stream.send_all(b"x" * 500_000)
        await stream.send_eof()
        with trio.fail_after(5):
            assert await recv_until_eof(stream) == b""


def test_chargen_cycle_is_rfc864() -> None:
    lines = CHARGEN_CYCLE.split(b"\r\n")[:-1]
    assert len(lines) == 95
    assert all(len(line) == 72 for line in lines)
    assert lines[0] == bytes(range(32, 104))
    assert lines[1] == bytes(range(33, 105))
    assert lines[94][:1] == b"~" and lines[94][1:2] == b" "


async def read_exactly(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        assert data, "unexpected EOF"
        buf += data
    return bytes(buf)


async def test_chargen_keeps_sending_after_client_half_close() -> None:
    n = 3 * len(CHARGEN_CYCLE) * 20
    async with running(serve_chargen) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"ignored input\r\n")
            await stream.send_eof()
            with trio.fail_after(5):
                data = await read_exactly(stream, n)
        assert data == (CHARGEN_CYCLE * 60)[:n]
        # The service survives the client going away; a new client is served.
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            with trio.fail_after(5):
                assert await read_exactly(stream, 74) == CHARGEN_CYCLE[:74]


async def test_guard_isolates_a_failing_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = 0

    async def flaky(stream: trio.abc.Stream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await stream.send_all(b"ok")

    async def serve(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
        await trio.serve_listeners(guarded(flaky, "flaky"), [listener])

    async with running(serve) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
                await recv_until_eof(s)  # the failed exchange is reset
            assert isinstance(info.value.__cause__, ConnectionResetError)
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            with trio.fail_after(5):
                assert await recv_until_eof(s) == b"ok"
    assert "flaky: RuntimeError: boom" in capsys.readouterr().err


async def test_keepalive_sets_so_keepalive() -> None:
    import socket

    seen: list[int] = []

    async def probe(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        seen.append(stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    async def serve(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
        await trio.serve_listeners(guarded(probe, "p", keepalive=True), [listener])

    async with (
        running(serve) as port,
        await trio.open_tcp_stream("127.0.0.1", port) as s,
    ):
        with trio.fail_after(5):
            await recv_until_eof(s)
    assert seen == [1]


def test_make_handler_rejects_unknown_service() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        make_handler("gopher")


async def test_serve_service_by_name() -> None:
    async with (
        running(partial(serve_service, "echo")) as port,
        await trio.open_tcp_stream("127.0.0.1", port) as s,
    ):
        await s.send_all(b"abc")
        await s.send_eof()
        assert await recv_until_eof(s) == b"abc"


class LoopbackStack:
    """Stands in for ustack's Stack: `listen(port)` on a random loopback port."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}

    async def listen(self, port: int, backlog: int = 128) -> trio.SocketListener:
        (listener,) = await trio.open_tcp_listeners(
            0, host="127.0.0.1", backlog=backlog
        )
        self.ports[port] = listener.socket.getsockname()[1]
        return listener


async def test_run_services_listens_on_each_then_reports_started() -> None:
    stack = LoopbackStack()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_services, stack, list(SERVICES), None)
        assert set(stack.ports) == {7, 9, 19, 80}
        async with await trio.open_tcp_stream("127.0.0.1", stack.ports[7]) as s:
            await s.send_all(b"ping")
            await s.send_eof()
            assert await recv_until_eof(s) == b"ping"
        nursery.cancel_scope.cancel()
