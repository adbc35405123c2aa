"""echo (RFC 862), discard (RFC 863) and chargen (RFC 864) over any trio Stream."""

from __future__ import annotations

import trio

from .base import PEER_GONE, guarded

RECV_SIZE = 256 * 1024


async def handle_echo(stream: trio.abc.Stream) -> None:
    """Echo until EOF, then half-close (if possible) so the peer sees all data."""
    async with stream:
        while data := await stream.receive_some(RECV_SIZE):
            await stream.send_all(data)
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()


async def handle_discard(stream: trio.abc.Stream) -> None:
    async with stream:
        while await stream.receive_some(RECV_SIZE):
            pass


def _chargen_cycle() -> bytes:
    # Line k is 72 chars of the 95 printable ASCII chars starting at offset k;
    # 95 lines make one full cycle.
    chars = bytes(range(32, 127))
    ring = chars * 2
    return b"".join(ring[k : k + 72] + b"\r\n" for k in range(len(chars)))


CHARGEN_CYCLE = _chargen_cycle()
# Whole cycles per send so every chunk continues the pattern seamlessly.
CHARGEN_CHUNK = CHARGEN_CYCLE * 9


async def handle_chargen(stream: trio.abc.Stream) -> None:
    """Send the pattern until the peer goes away; input is read and ignored."""

    async def drain(cancel: trio.CancelScope) -> None:
        try:
            while await stream.receive_some(RECV_SIZE):
                pass
            # EOF (peer half-closed): keep sending, just stop reading.
        except PEER_GONE:
            cancel.cancel()

    async with stream:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, nursery.cancel_scope)
                while True:
                    await stream.send_all(CHARGEN_CHUNK)
        except* PEER_GONE:
            pass


async def serve_echo(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    await trio.serve_listeners(guarded(handle_echo, "echo"), [listener])


async def serve_discard(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    await trio.serve_listeners(guarded(handle_discard, "discard"), [listener])


async def serve_chargen(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    await trio.serve_listeners(guarded(handle_chargen, "chargen"), [listener])
