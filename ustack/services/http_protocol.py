"""The HTTP service as protocol callbacks (ustack.protocol): no task per
connection. A request is parsed and answered inside the callback that
delivered its last byte; a long body is written as the transport makes room
(pause_writing / resume_writing). Same routes as HttpService (http_app)."""

from __future__ import annotations

from collections.abc import Iterator

import h11

from ustack.protocol import Protocol, Transport

from .http_app import MAX_IGNORED_BODY, HttpApp, Sha256Sink, error_reply, reply_bytes


class HttpProtocol(Protocol):
    """One connection; HTTP/1.1 keep-alive and pipelining as h11 allows."""

    __slots__ = (
        "app",
        "transport",
        "h11",
        "_writes",
        "_paused",
        "_sink",
        "_drained",
    )

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.transport: Transport | None = None
        self.h11 = h11.Connection(h11.SERVER)
        self._writes: Iterator[bytes | memoryview] | None = None  # reply in flight
        self._paused = False
        self._sink: Sha256Sink | None = None
        self._drained = 0  # bytes of an ignored request body

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._advance()
        return True  # _advance closes once h11 says so

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pump():
            self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writes = None

    # -- the exchange ----------------------------------------------------------

    def _advance(self) -> None:
        """Handle every event h11 has ready, unless a reply is still going out."""
        conn = self.h11
        transport = self.transport
        assert transport is not None
        while self._writes is None and not transport.is_closing():
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    self._start(reply_bytes(conn, error_reply(exc), False))
                else:
                    transport.close()
                return
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    data = conn.send(
                        h11.InformationalResponse(status_code=100, headers=[])
                    )
                    transport.write(data or b"")
                return
            if isinstance(event, h11.ConnectionClosed):
                transport.close()
                return
            if isinstance(event, h11.Request):
                self._drained = 0
                reply = self.app.route(event)
                if isinstance(reply, Sha256Sink):
                    self._sink = reply
                else:
                    self._start(reply_bytes(conn, reply, event.method == b"HEAD"))
            elif isinstance(event, h11.Data):
                if self._sink is not None:
                    self._sink.feed(event.data)
                else:
                    self._drained += len(event.data)
                    if self._drained > MAX_IGNORED_BODY:
                        transport.close()
                        return
            elif isinstance(event, h11.EndOfMessage):
                if self._sink is not None:
                    reply, self._sink = self._sink.finish(), None
                    self._start(reply_bytes(conn, reply, False))
                else:
                    self._next_cycle()

    def _start(self, writes: Iterator[bytes | memoryview]) -> None:
        self._writes = writes
        self._pump()

    def _pump(self) -> bool:
        """Write the reply until the transport asks us to pause; True once
        it is all written (then the connection's next step is taken)."""
        writes = self._writes
        transport = self.transport
        if writes is None or transport is None:
            return False
        for part in writes:
            transport.write(part)
            if self._paused:
                return False
        self._writes = None
        if self.h11.our_state is not h11.DONE:
            transport.close()  # MUST_CLOSE: Connection: close, HTTP/1.0, 413
        else:
            self._next_cycle()  # or, body still coming: _advance drains it
        return True

    def _next_cycle(self) -> None:
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
