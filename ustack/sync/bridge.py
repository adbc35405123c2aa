"""A ustack connection relayed through a kernel socketpair (`SyncSocket.bridge`).

Two trio tasks in the stack's thread copy bytes between the ustack socket and
one end of the pair; the user holds the other end, a real descriptor that
`select` and `ssl` accept. EOF is carried both ways as a half-close (SHUT_WR);
a reset or error on either side closes both.
"""

from __future__ import annotations

import socket as _socket
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ustack import Socket

CHUNK = 256 * 1024


async def pump_pair(sock: Socket, stack_end: _socket.socket) -> None:
    """Relay until both directions have seen EOF, then close both sockets."""
    stack_end.setblocking(False)
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(stack_end))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_to_ustack, peer, sock, nursery.cancel_scope)
            nursery.start_soon(_from_ustack, sock, peer, nursery.cancel_scope)
    finally:
        with trio.CancelScope(shield=True):
            await peer.aclose()
            await sock.close()


async def _to_ustack(
    peer: trio.SocketStream, sock: Socket, scope: trio.CancelScope
) -> None:
    try:
        while data := await peer.receive_some(CHUNK):
            await sock.sendall(data)
        sock.shutdown(_socket.SHUT_WR)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        scope.cancel()


async def _from_ustack(
    sock: Socket, peer: trio.SocketStream, scope: trio.CancelScope
) -> None:
    try:
        while data := await sock.recv(CHUNK):
            await peer.send_all(data)
        await peer.send_eof()
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        scope.cancel()
