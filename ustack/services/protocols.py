"""echo (RFC 862), discard (RFC 863) and chargen (RFC 864) as protocol
callbacks (ustack.protocol): what `ustack up` runs, with no task per
connection. The stream handlers in simple.py do the same over trio Streams."""

from __future__ import annotations

from ustack.protocol import Protocol, Transport

from .simple import CHARGEN_CHUNK


class EchoProtocol(Protocol):
    """Echo every byte; on the peer's FIN, FIN after the last echoed byte."""

    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_writing(self) -> None:
        # The peer reads slower than it writes: stop reading, so our receive
        # window closes and the backlog stays bounded (RFC 9293 3.8.6).
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write_eof()
        return True  # the peer closes its side; we are done once it does


class DiscardProtocol(Protocol):
    """Read and drop everything; close when the peer does."""

    __slots__ = ()


class ChargenProtocol(Protocol):
    """Send the pattern until the peer goes away; input is read and ignored
    (after the peer's FIN we keep sending, as the stream handler does)."""

    __slots__ = ("transport", "_paused")

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self._paused = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._fill()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._fill()

    def eof_received(self) -> bool:
        return True

    def _fill(self) -> None:
        transport = self.transport
        assert transport is not None
        while not self._paused and not transport.is_closing():
            transport.write(CHARGEN_CHUNK)
