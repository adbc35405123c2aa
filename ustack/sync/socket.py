"""`SyncSocket`: a blocking, stdlib-shaped TCP socket on a `SyncStack`.

Every call runs in the stack's trio thread (`SyncStack.call`). Blocking calls
wait there under a cancel scope that carries the socket's timeout (stdlib
semantics: None blocks, 0.0 raises BlockingIOError, t > 0 raises TimeoutError)
and that `close()` from another thread cancels (the waiting call then raises
OSError(EBADF), as trio's sockets do; Linux would leave it blocked).
Waiting and consuming are separate steps, so a timeout never loses data.

There is no file descriptor: `fileno()` is -2 while open (-1 once closed, as
the stdlib's), so `select` and `ssl.SSLContext.wrap_socket` cannot take this
socket; `bridge()` turns it into a real kernel socket for those.
"""

from __future__ import annotations

import errno
import io
import socket as _socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ustack.errors import os_error

if TYPE_CHECKING:
    from ustack import Socket
    from ustack.sync.calls import StackThread

NO_FD = -2  # fileno() of an open SyncSocket: not a descriptor


class SyncSocket:
    """A blocking TCP socket on ustack, usable from any thread."""

    family = _socket.AF_INET
    type = _socket.SOCK_STREAM
    proto = 0

    def __init__(self, sync: StackThread, sock: Socket) -> None:
        self._sync = sync
        self._sock = sock
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._waiting: set[trio.CancelScope] = set()  # touched in the trio thread
        self._closed = False
        self._io_refs = 0  # open makefile() objects (close waits for them)
        self._closed_pending = False
        self._bridged = False

    @property
    def api_socket(self) -> Socket:
        """The trio-side `ustack.Socket` (use only from the stack's thread)."""
        return self._sock

    # -- timeouts -----------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def settimeout(self, timeout: float | None) -> None:
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # -- set-up -------------------------------------------------------------------

    def bind(self, address: tuple[str, int]) -> None:
        self._sync.call_sync(self._sock.bind, address)

    def listen(self, backlog: int = 128) -> None:
        self._sync.call_sync(self._sock.listen, backlog)

    def connect(self, address: tuple[str, int]) -> None:
        self._sync.call(self._waiting_for, None, self._sock.connect, address)

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def accept(self) -> tuple[SyncSocket, tuple[str, int]]:
        sock, peer = self._sync.call(self._ready_then, self._sock.accept)
        return SyncSocket(self._sync, sock), peer

    # -- data ---------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _no_flags(flags)
        data: bytes = self._sync.call(self._ready_then, self._sock.recv, bufsize)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        _no_flags(flags)
        n: int = self._sync.call(self._writable_then, self._sock.send, data)
        return n

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        _no_flags(flags)
        # One deadline for the whole call, as CPython's sendall (3.5+).
        self._sync.call(self._waiting_for, None, self._sock.sendall, data)

    def readable(self) -> bool:
        """recv() would not block now (data, EOF or an error is pending)."""
        return self._sync.call_sync(self._sock.readable)

    # -- in the trio thread ---------------------------------------------------------

    async def _waiting_for(
        self,
        ready: Callable[[], bool] | None,
        wait: Callable[..., Awaitable[Any]],
        *args: Any,
    ) -> Any:
        """`await wait(*args)` under this socket's timeout; close() cancels it.
        With `ready`, a timeout is not an error when ready() holds after it."""
        if self._closed:
            raise os_error(errno.EBADF, "socket is closed")
        with trio.CancelScope() as scope:
            if self._timeout is not None:
                scope.deadline = trio.current_time() + self._timeout
            self._waiting.add(scope)
            try:
                return await wait(*args)
            finally:
                self._waiting.discard(scope)
        if self._closed:
            raise os_error(errno.EBADF, "socket was closed while waiting")
        if ready is not None and ready():
            return None
        if self._timeout == 0.0:
            raise os_error(errno.EAGAIN, "operation would block")
        raise TimeoutError(errno.ETIMEDOUT, "timed out")

    async def _ready_then(self, take: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        # Wait for readiness, then take: recv/accept find data or a connection
        # synchronously, before their first checkpoint, so nothing is lost.
        await self._waiting_for(self._sock.readable, self._sock.wait_readable)
        return await take(*args)

    async def _writable_then(
        self, put: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        await self._waiting_for(self._sock.writable, self._sock.wait_writable)
        return await put(*args)

    # -- closing ------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        self._sync.call_sync(self._sock.shutdown, how)

    def close(self) -> None:
        """Close (once every makefile() object is closed, as the stdlib does);
        calls waiting in other threads raise OSError(EBADF)."""
        if self._closed:
            return
        if self._io_refs > 0:
            self._closed_pending = True
            return
        self._real_close()

    def _real_close(self) -> None:
        if self._closed:
            return
        if self._bridged:  # the bridge owns the ustack socket now
            self._closed = True
            return
        self._sync.call(self._close_in_trio)

    async def _close_in_trio(self) -> None:
        self._closed = True
        for scope in list(self._waiting):
            scope.cancel()
        await self._sock.close()

    def _decref_socketios(self) -> None:  # called by socket.SocketIO.close
        self._io_refs -= 1
        if self._io_refs <= 0 and self._closed_pending:
            self._real_close()

    def detach(self) -> int:
        raise io.UnsupportedOperation("ustack sockets have no file descriptor")

    def __enter__(self) -> SyncSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- files ----------------------------------------------------------------------

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """A file object over the socket, as `socket.socket.makefile` builds it."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing, reading = "w" in mode, "r" in mode or "w" not in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)  # type: ignore[type-var]
        text.mode = mode  # type: ignore[misc]
        return text

    # -- bridging to a real descriptor ----------------------------------------------

    def bridge(self) -> _socket.socket:
        """A kernel socket (one end of a socketpair) carrying this connection's
        bytes both ways, for `select`, `ssl.SSLContext.wrap_socket` and other
        code that needs a descriptor. The bridge owns the connection from now
        on: closing the returned socket closes it. Costs two extra copies
        through the kernel per byte (see `tools/bench_sync.py`)."""
        from ustack.sync.bridge import pump_pair

        if self._closed:
            raise os_error(errno.EBADF, "socket is closed")
        user_end, stack_end = _socket.socketpair()
        self._bridged = True
        try:
            self._sync.call_sync(
                self._sync.start_soon, pump_pair, self._sock, stack_end
            )
        except BaseException:
            user_end.close()
            stack_end.close()
            raise
        user_end.settimeout(self._timeout)
        return user_end

    # -- addresses and options --------------------------------------------------------

    def fileno(self) -> int:
        return -1 if self._closed else NO_FD

    def getsockname(self) -> tuple[str, int]:
        return self._sync.call_sync(self._sock.getsockname)

    def getpeername(self) -> tuple[str, int]:
        return self._sync.call_sync(self._sock.getpeername)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sync.call_sync(self._sock.setsockopt, level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        value = self._sync.call_sync(self._sock.getsockopt, level, option)
        if buflen and isinstance(value, int):
            return value.to_bytes(4, "little")[:buflen]
        return value

    @property
    def state(self) -> str:
        """The TCP state name, e.g. "ESTABLISHED"."""
        return self._sync.call_sync(lambda: self._sock.state)

    def __repr__(self) -> str:
        closed = " [closed]" if self._closed else ""
        return f"<ustack.sync.SyncSocket{closed} {self._sock!r}>"


def _no_flags(flags: int) -> None:
    if flags:
        raise os_error(errno.EOPNOTSUPP, "flags (MSG_PEEK, ...) are not supported")
