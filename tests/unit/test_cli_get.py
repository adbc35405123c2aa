"""`ustack get`'s HTTP client against the HTTP service on trio's loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import pytest
import trio

from ustack.cli.httpclient import http_get
from ustack.services import pattern_bytes, serve_http


@asynccontextmanager
async def service_port() -> AsyncIterator[int]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_http, listener)
        yield listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_http_get_streams_body_to_sink() -> None:
    chunks: list[bytes] = []
    async with service_port() as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            result = await http_get(stream, "t", "/bytes/1000000", chunks.append)
    assert result.ok and result.status == 200 and result.reason == "OK"
    assert result.body_bytes == 1_000_000
    assert b"".join(chunks) == pattern_bytes(1_000_000)
    assert ("server", "ustack") in result.headers


async def test_http_get_non_2xx_drops_body_unless_asked() -> None:
    async with service_port() as port:
        for body_on_error, expect in [(False, b""), (True, b"not found\n")]:
            chunks: list[bytes] = []
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                result = await http_get(
                    stream, "t", "/nope", chunks.append, body_on_error=body_on_error
                )
            assert result.status == 404 and not result.ok
            assert b"".join(chunks) == expect


async def test_http_get_truncated_response_raises() -> None:
    async def liar(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await stream.aclose()

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, liar, [listener])
        port = listener.socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            with pytest.raises(h11.RemoteProtocolError):
                await http_get(stream, "t", "/", lambda b: None)
        nursery.cancel_scope.cancel()
