"""Protocol callbacks driven by the stack's packet loop (no task per connection).

The shape is asyncio's Protocol/Transport pair: the stack calls
`connection_made`, `data_received`, `eof_received`, `pause_writing` /
`resume_writing` and `connection_lost`; the protocol answers through its
transport's `write`, `write_eof`, `close` and `abort`. The stack runs the
callbacks inside the loop iteration that received the data, before it
flushes the TCB, so a reply leaves in the same batch and its first segment
carries the ACK of the request (RFC 9293 3.10.7.4: an ACK may ride on data;
RFC 1122 4.2.3.2: delayed ACKs exist to be piggybacked).

`TcbTransport` writes into a TCB's send buffer; whatever does not fit waits
here and goes when the peer's ACKs make room. Neither this module nor the
protocols import trio: the same protocol objects also run over any trio
stream (ustack.services.stream_driver), which is how the kernel baseline of
tools/bench.py serves them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol as _Typing

from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb

RECEIVE_SIZE = 256 * 1024  # bytes per data_received call at most
HIGH_WATER = 64 * 1024  # bytes waiting beyond the TCB's buffer: pause_writing
LOW_WATER = 16 * 1024  # ... and resume_writing below this


class Transport(_Typing):
    """What a protocol may call (the TCB transport and the stream driver)."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def get_extra_info(self, name: str) -> object: ...


class TransportHost(_Typing):
    """What a TcbTransport needs from the stack (one shared object, so a
    connection holds no bound methods of its own)."""

    def kick(self, tcb: Tcb) -> None: ...
    def now(self) -> float: ...
    def note_app_close(self, tcb: Tcb) -> None: ...


class Protocol:
    """Base class with do-nothing callbacks (as asyncio.Protocol)."""

    __slots__ = ()

    def connection_made(self, transport: Transport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        """The peer sent FIN. Return True to keep writing (half-close);
        anything else closes our side too, as asyncio does."""
        return None

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


ProtocolFactory = Callable[[], Protocol]
_GONE = Protocol()  # what a transport holds after connection_lost


def log(message: str) -> None:
    print(f"ustack: {message}", file=sys.stderr, flush=True)


class TcbTransport:
    """A TCB as a transport. The stack calls `service` when the TCB may have
    news (data, FIN, room to send) and `lost` once when it is gone."""

    __slots__ = (
        "tcb",
        "protocol",
        "_host",
        "_pending",
        "_pending_len",
        "_closing",
        "_eof_pending",
        "_eof_seen",
        "_paused",
        "_reading",
        "_in_service",
        "_done",
    )

    def __init__(
        self,
        tcb: Tcb,
        protocol: Protocol,
        host: TransportHost,
    ) -> None:
        self.tcb = tcb
        self.protocol = protocol
        # The stack: kick (flush the TCB now, for writes outside a callback),
        # now, note_app_close (orphan accounting, as Socket.close).
        self._host = host
        # Writes that did not fit into the TCB: usually none, so None until
        # one does (an idle connection carries no list; a deque is ~600 B).
        self._pending: list[bytes | bytearray | memoryview] | None = None
        self._pending_len = 0
        self._closing = False
        self._eof_pending = False
        self._eof_seen = False
        self._paused = False
        self._reading = True
        self._in_service = False
        self._done = False

    # -- called by the protocol ------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_pending or not data or self._done:
            return  # as asyncio: writes after close are dropped
        if not self._pending:
            n = self.tcb.send(data)
            if n == len(data):  # the usual case: all of it fitted
                if not self._in_service:  # _flush_soon, inlined
                    self._host.kick(self.tcb)
                return
            data = memoryview(data)[n:]
        if self._pending is None:
            self._pending = []
        self._pending.append(data)
        self._pending_len += len(data)
        if not self._paused and self._pending_len > HIGH_WATER:
            self._paused = True
            self.protocol.pause_writing()
        self._flush_soon()

    def write_eof(self) -> None:
        """Half-close: FIN after everything written (shutdown(SHUT_WR))."""
        if self._closing or self._eof_pending:
            return
        self._eof_pending = True
        self._finish_writes()

    def close(self) -> None:
        """FIN after everything written; incoming data is no longer read."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        self._finish_writes()

    def abort(self) -> None:
        """RST now, dropping whatever is unsent (SO_LINGER 0)."""
        self._closing = True
        self._pending = None
        self._pending_len = 0
        if self.tcb.state is not State.CLOSED:
            self.tcb.abort(self._host.now())
            self._flush_soon()

    def is_closing(self) -> bool:
        return self._closing or self._done

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._closing and not self._reading:
            self._reading = True
            if not self._in_service:
                self.service()
                self._host.kick(self.tcb)

    def get_write_buffer_size(self) -> int:
        return self._pending_len

    def get_extra_info(self, name: str) -> object:
        tcb = self.tcb
        if name == "peername":
            return (".".join(map(str, tcb.remote_ip)), tcb.remote_port)
        if name == "sockname":
            return (".".join(map(str, tcb.local_ip)), tcb.local_port)
        return None

    # -- called by the stack -----------------------------------------------------

    def made(self) -> None:
        """The handshake completed: connection_made (the stack flushes after)."""
        self._in_service = True
        try:
            self.protocol.connection_made(self)
        except Exception as exc:
            log(f"{type(self.protocol).__name__}: {type(exc).__name__}: {exc}")
            self.abort()
        finally:
            self._in_service = False

    def service(self) -> bool:
        """Move pending writes into the TCB, hand over received data and FIN,
        resume a paused writer. True if anything happened (flush the TCB)."""
        if self._done or self._in_service:
            return False
        tcb = self.tcb
        acted = False
        self._in_service = True
        try:
            if self._pending and tcb.send_space():
                self._push()
                acted = True
            if self._reading:
                while tcb.rcvbuf and self._reading:
                    self.protocol.data_received(tcb.read(RECEIVE_SIZE))
                    acted = True
                if (
                    tcb.fin_received
                    and not tcb.rcvbuf
                    and not self._eof_seen
                    and self._reading
                ):
                    self._eof_seen = True
                    acted = True
                    if not self.protocol.eof_received():
                        self.close()
            elif self._closing and tcb.rcvbuf:
                tcb.rcvbuf.clear()  # closed for reading: drop (SHUT_RD)
            if self._paused and self._pending_len <= LOW_WATER:
                self._paused = False
                acted = True
                self.protocol.resume_writing()
                if self._pending and tcb.send_space():
                    self._push()
        except Exception as exc:  # a protocol bug ends its own connection only
            log(f"{type(self.protocol).__name__}: {type(exc).__name__}: {exc}")
            self.abort()
            acted = True
        finally:
            self._in_service = False
        return acted

    def lost(self) -> None:
        """The TCB is closed (or in TIME_WAIT): tell the protocol, once."""
        if self._done:
            return
        self._done = True
        self._pending = None
        self._pending_len = 0
        error = self.tcb.error
        protocol = self.protocol
        # As asyncio's transports: drop the protocol after connection_lost,
        # which breaks the protocol <-> transport cycle (freed at once).
        self.protocol = _GONE
        try:
            protocol.connection_lost(error)
        except Exception as exc:
            log(f"{type(protocol).__name__}: {type(exc).__name__}: {exc}")

    # -- internals ----------------------------------------------------------------

    def _push(self) -> None:
        tcb = self.tcb
        pending = self._pending
        while pending:
            head = pending[0]
            n = tcb.send(head)
            self._pending_len -= n
            if n < len(head):
                pending[0] = memoryview(head)[n:]
                return
            del pending[0]
        self._pending = None
        self._finish_writes()

    def _finish_writes(self) -> None:
        """FIN (or close) once nothing waits here any more."""
        if self._pending:
            return
        tcb = self.tcb
        if self._closing:
            if tcb.state is not State.CLOSED and not tcb.app_closed:
                host = self._host
                tcb.close(host.now())
                host.note_app_close(tcb)
        elif self._eof_pending:
            tcb.shutdown_write(self._host.now())
        self._flush_soon()

    def _flush_soon(self) -> None:
        # Inside a callback the stack flushes right after; outside, now.
        if not self._in_service:
            self._host.kick(self.tcb)
