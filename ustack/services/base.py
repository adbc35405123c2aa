"""Shared plumbing for the services: the per-connection guard and logging."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable

import trio

from ustack.protocol import log  # one service log line format for both drivers

Handler = Callable[[trio.abc.Stream], Awaitable[None]]

# The peer went away (FIN+RST, reset, timeout) or we closed under ourselves:
# ordinary endings of a connection, never worth a log line.
PEER_GONE: tuple[type[BaseException], ...] = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionError,
    TimeoutError,
)


def guarded(handler: Handler, name: str, *, keepalive: bool = False) -> Handler:
    """Wrap `handler` so its failure ends only its own connection.

    Peer-gone errors end the connection quietly; anything else is logged in
    one line and the connection is reset (RST). Either way the stream is
    closed (aclose is idempotent).
    """

    async def run(stream: trio.abc.Stream) -> None:
        try:
            if keepalive:
                _set_keepalive(stream)
            await handler(stream)
        except PEER_GONE:
            pass
        except Exception as exc:  # isolate one connection
            log(f"{name}: {type(exc).__name__}: {exc}")
            # The exchange is broken: tell the peer with RST, not a clean FIN.
            set_linger_zero(stream)
        finally:
            # Shielded so a cancelled service still releases the connection.
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(5),
                contextlib.suppress(Exception),
            ):
                await stream.aclose()

    return run


def _set_keepalive(stream: trio.abc.Stream) -> None:
    # Both ustack.TcpStream and trio.SocketStream expose `.socket.setsockopt`.
    sock = getattr(stream, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def set_linger_zero(stream: trio.abc.Stream) -> None:
    """SO_LINGER (on, 0): the close that follows aborts with RST."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
