"""HTTP/1.1 service on h11, one task per connection over any trio Stream.

The routes live in http_app (shared with the callback-driven HttpProtocol);
this module reads requests from a stream and writes the replies back.
Bodies are streamed both ways in large chunks; nothing is buffered whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h11
import trio

from .base import guarded
from .http_app import (
    CHUNK,
    MAX_IGNORED_BODY,
    HttpApp,
    Reply,
    Sha256Sink,
    error_reply,
    pattern_bytes,
    reply_bytes,
)


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    """The next h11 event, reading from the stream as needed (b"" = EOF)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if conn.they_are_waiting_for_100_continue:
            data = conn.send(h11.InformationalResponse(status_code=100, headers=[]))
            await stream.send_all(data or b"")
        conn.receive_data(await stream.receive_some(CHUNK))  # type: ignore[arg-type]


async def _send(
    conn: h11.Connection, stream: trio.abc.Stream, reply: Reply, head: bool
) -> None:
    for part in reply_bytes(conn, reply, head):
        await stream.send_all(part)


class HttpService:
    """Connection handler; `services` feeds the index page when there is no root."""

    def __init__(
        self, root: Path | None = None, services: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = HttpApp(root, services)

    @property
    def root(self) -> Path | None:
        return self.app.root

    async def __call__(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                try:
                    event = await _next_event(conn, stream)
                    if isinstance(event, h11.ConnectionClosed):
                        return
                    assert isinstance(event, h11.Request)
                    await self._exchange(conn, stream, event)
                    if conn.our_state is not h11.DONE:
                        return  # MUST_CLOSE: Connection: close, HTTP/1.0, 413
                    if not await self._drain_body(conn, stream):
                        return
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await _send(conn, stream, error_reply(exc), False)
                    return
                if conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async def _exchange(
        self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request
    ) -> None:
        reply = self.app.route(req)
        if isinstance(reply, Sha256Sink):
            sink = reply
            while True:
                event = await _next_event(conn, stream)
                if isinstance(event, h11.Data):
                    sink.feed(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
            reply = sink.finish()
        await _send(conn, stream, reply, req.method == b"HEAD")

    async def _drain_body(self, conn: h11.Connection, stream: trio.abc.Stream) -> bool:
        """Skip an unread request body (bounded); False if we should close."""
        seen = 0
        while conn.their_state is h11.SEND_BODY:
            event = await _next_event(conn, stream)
            if isinstance(event, h11.Data):
                seen += len(event.data)
                if seen > MAX_IGNORED_BODY:
                    return False
        return True


async def serve_http(
    listener: trio.abc.Listener[trio.abc.Stream],
    root: Path | None = None,
    services: Sequence[tuple[str, int]] = (),
) -> None:
    await trio.serve_listeners(guarded(HttpService(root, services), "http"), [listener])


__all__ = ["HttpService", "pattern_bytes", "serve_http"]
