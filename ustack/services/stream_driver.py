"""Run a ustack.protocol Protocol over any trio Stream, one task per
connection: how the kernel baseline (tools/bench_kserver.py) serves the very
protocol objects `ustack up` runs from its packet loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ustack.protocol import (
    HIGH_WATER,
    LOW_WATER,
    RECEIVE_SIZE,
    Protocol,
    ProtocolFactory,
)

from .base import PEER_GONE, log, set_linger_zero


class StreamTransport:
    """Buffers the protocol's writes; the driver task sends them."""

    __slots__ = (
        "stream",
        "protocol",
        "buffer",
        "size",
        "closing",
        "eof",
        "aborted",
        "paused",
        "reading",
        "wake",
    )

    def __init__(self, stream: trio.abc.Stream, protocol: Protocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self.buffer: list[bytes | bytearray | memoryview] = []
        self.size = 0
        self.closing = False
        self.eof = False
        self.aborted = False
        self.paused = False
        self.reading = True
        self.wake = trio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.eof or not data:
            return
        self.buffer.append(data)
        self.size += len(data)
        if not self.paused and self.size > HIGH_WATER:
            self.paused = True
            self.protocol.pause_writing()

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closing = True
        self.wake.set()

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.buffer.clear()
        self.size = 0
        self.wake.set()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        self.wake.set()

    def get_write_buffer_size(self) -> int:
        return self.size

    def get_extra_info(self, name: str) -> object:
        sock = getattr(self.stream, "socket", None)
        if sock is None:
            return None
        if name == "peername":
            return sock.getpeername()
        if name == "sockname":
            return sock.getsockname()
        return None

    def take(self) -> bytes | bytearray | memoryview:
        data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
        self.buffer = []
        self.size = 0
        return data


async def drive(stream: trio.abc.Stream, protocol: Protocol) -> None:
    """Feed `protocol` from `stream` until either side is done. Writes go
    first; reading waits while the protocol has paused it."""
    t = StreamTransport(stream, protocol)
    protocol.connection_made(t)
    exc: Exception | None = None
    try:
        at_eof = eof_sent = False
        while not t.aborted:
            if t.buffer:
                await stream.send_all(t.take())
                if t.paused and t.size <= LOW_WATER:
                    t.paused = False
                    protocol.resume_writing()
                continue
            if t.eof and not eof_sent:
                eof_sent = True
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                continue
            if t.closing or at_eof:
                break  # nothing left to send, nothing more to read
            if not t.reading:
                t.wake = trio.Event()
                await t.wake.wait()
                continue
            data = await stream.receive_some(RECEIVE_SIZE)
            if data:
                protocol.data_received(bytes(data))
            else:
                at_eof = True
                if not protocol.eof_received():
                    t.close()
    except PEER_GONE as e:
        exc = e if isinstance(e, Exception) else None
    finally:
        if t.aborted:
            set_linger_zero(stream)
        with trio.CancelScope(shield=True), contextlib.suppress(Exception):
            await stream.aclose()
        protocol.connection_lost(exc)


def protocol_handler(
    factory: ProtocolFactory, name: str, *, keepalive: bool = False
) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """A trio.serve_listeners handler running factory()'s protocol on each
    stream; a protocol bug is logged and costs its connection only."""

    async def run(stream: trio.abc.Stream) -> None:
        sock: Any = getattr(stream, "socket", None)
        if keepalive and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            await drive(stream, factory())
        except Exception as exc:
            log(f"{name}: {type(exc).__name__}: {exc}")

    return run
