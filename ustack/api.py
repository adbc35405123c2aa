"""Socket-like API on top of the stack: `Socket`, `TcpStream`, `TcpListener`.

`Socket` follows the stdlib's method names (async where they block) and
raises the builtin OSError subclasses. `TcpStream` and `TcpListener` adapt it
to trio's `HalfCloseableStream` and `Listener`, raising trio's
`BrokenResourceError`/`ClosedResourceError` as trio's own sockets do.
"""

from __future__ import annotations

import errno
import ipaddress
import socket as _socket
import struct
from typing import TYPE_CHECKING

import trio

from ustack.errors import os_error
from ustack.sockopts import SocketOptions
from ustack.tcp.state import SENDING, State
from ustack.tcp.tcb import Tcb

if TYPE_CHECKING:
    from ustack.stack import Conn, Listening, Stack

DEFAULT_RECEIVE_SIZE = 65536

_SOL_SOCKET = _socket.SOL_SOCKET
_IPPROTO_TCP = _socket.IPPROTO_TCP
_OPTION_NAMES = {
    (_SOL_SOCKET, _socket.SO_REUSEADDR): "reuseaddr",
    (_SOL_SOCKET, _socket.SO_KEEPALIVE): "keepalive",
    (_SOL_SOCKET, _socket.SO_LINGER): "linger",
    (_IPPROTO_TCP, _socket.TCP_NODELAY): "nodelay",
    (_IPPROTO_TCP, _socket.TCP_KEEPIDLE): "keepidle",
    (_IPPROTO_TCP, _socket.TCP_KEEPINTVL): "keepintvl",
    (_IPPROTO_TCP, _socket.TCP_KEEPCNT): "keepcnt",
}
_LINGER = struct.Struct("ii")


class Socket:
    """A TCP socket on a ustack `Stack`, shaped like the stdlib's `socket`."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._port: int | None = None  # bound local port
        self._reserved = False
        self._tcb: Tcb | None = None
        self._listening: Listening | None = None
        self._closed = False
        self._options = SocketOptions()

    # -- addresses and state ---------------------------------------------

    @property
    def state(self) -> str:
        """The TCP state name, e.g. "ESTABLISHED", "LISTEN", "CLOSED"."""
        if self._tcb is not None:
            return self._tcb.state.value
        if self._listening is not None and not self._listening.closed:
            return State.LISTEN.value
        return State.CLOSED.value

    @property
    def tcb(self) -> Tcb | None:
        """The underlying TCB (for diagnostics and tests)."""
        return self._tcb

    def getsockname(self) -> tuple[str, int]:
        return (self._stack.ip, self._port or 0)

    def getpeername(self) -> tuple[str, int]:
        if self._tcb is None:
            raise os_error(errno.ENOTCONN, "socket is not connected")
        tcb = self._tcb
        return (str(ipaddress.IPv4Address(tcb.remote_ip)), tcb.remote_port)

    # -- options -----------------------------------------------------------

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        name = self._option_name(level, option)
        opts = self._options
        if name == "linger":
            if isinstance(value, bytes | bytearray):
                onoff, seconds = _LINGER.unpack(value)
            else:
                onoff, seconds = 1, int(value)
            opts.linger = (bool(onoff), max(0, seconds))
        elif name in ("keepidle", "keepintvl", "keepcnt"):
            if not isinstance(value, int) or value < 1:
                raise os_error(errno.EINVAL, f"{name} must be a positive integer")
            setattr(opts, name, value)
        else:
            setattr(opts, name, bool(value))
        tcb = self._tcb
        if tcb is not None and name != "linger":
            self._stack.apply_options(tcb, opts)
            self._stack.kick(tcb)

    def getsockopt(self, level: int, option: int) -> int | bytes:
        name = self._option_name(level, option)
        opts = self._options
        if name == "linger":
            return _LINGER.pack(int(opts.linger[0]), opts.linger[1])
        settings = self._stack.settings
        if name == "keepidle":
            return opts.keepidle or int(settings.keepalive_time)
        if name == "keepintvl":
            return opts.keepintvl or int(settings.keepalive_intvl)
        if name == "keepcnt":
            return opts.keepcnt or settings.keepalive_probes
        return int(bool(getattr(opts, name)))

    @staticmethod
    def _option_name(level: int, option: int) -> str:
        name = _OPTION_NAMES.get((level, option))
        if name is None:
            raise os_error(errno.ENOPROTOOPT, f"option {level}/{option} not supported")
        return name

    # -- server side ------------------------------------------------------------

    def bind(self, address: tuple[str, int]) -> None:
        host, port = address
        self._check_open()
        if self._port is not None:
            raise os_error(errno.EINVAL, "socket is already bound")
        if host not in ("", "0.0.0.0", self._stack.ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{host} is not this stack's address")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("port must be 0-65535")
        reuse = self._options.reuseaddr
        if port == 0:
            port = self._stack.ephemeral_port((b"\0\0\0\0", 0))
        elif self._stack.port_in_use(port, reuse):
            # Say which: another socket owns the port (SO_REUSEADDR cannot
            # help, as on Linux), or only connections hold it.
            held_by_socket = self._stack.port_in_use(port, True)
            raise os_error(
                errno.EADDRINUSE,
                f"port {port} already has a listening or bound socket"
                if held_by_socket
                else f"port {port} is held by connections (TIME_WAIT counts "
                "unless SO_REUSEADDR is set)",
            )
        self._stack.reserve_port(port)
        self._reserved = True
        self._port = port

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._listening is not None:
            self._listening.backlog = max(1, min(backlog, self._stack.settings.backlog))
            return
        if self._port is None:
            self.bind(("", 0))
        assert self._port is not None
        self._release_reservation()
        self._listening = self._stack.add_listener(
            self._port, backlog, self._options.copy()
        )

    async def accept(self) -> tuple[Socket, tuple[str, int]]:
        self._check_open()
        listening = self._listening
        if listening is None:
            raise os_error(errno.EINVAL, "accept() needs listen() first")
        while True:
            if listening.closed:
                raise os_error(errno.EBADF, "the listening socket was closed")
            tcb = self._stack.take_accepted(listening)
            if tcb is not None:
                sock = Socket(self._stack)
                sock._tcb = tcb
                sock._port = tcb.local_port
                sock._options = listening.options.copy()
                await trio.lowlevel.checkpoint()
                return sock, sock.getpeername()
            await listening.lot.park()

    # -- client side ------------------------------------------------------------

    async def connect(self, address: tuple[str, int]) -> None:
        self._check_open()
        if self._tcb is not None:
            raise os_error(errno.EISCONN, "socket is already connected")
        host, port = address
        try:
            remote_ip = ipaddress.IPv4Address(host).packed
        except ValueError:
            raise os_error(errno.EINVAL, f"{host!r} is not an IPv4 address") from None
        remote = (remote_ip, port)
        if self._port is None:
            self._port = self._stack.ephemeral_port(remote)
        self._release_reservation()
        tcb = self._stack.open_connection(self._port, remote, self._options)
        self._tcb = tcb
        conn: Conn = tcb.owner
        while tcb.state in (State.SYN_SENT, State.SYN_RECEIVED):
            await conn.lot.park()
        if tcb.state is State.CLOSED and tcb.error is not None:
            raise _fresh(tcb.error)
        await trio.lowlevel.checkpoint()

    # -- data -------------------------------------------------------------------

    async def send(self, data: bytes | bytearray | memoryview) -> int:
        tcb = self._connected()
        conn: Conn = tcb.owner
        while True:
            self._check_can_send(tcb)
            n = tcb.send(data)
            if n:
                self._stack.kick(tcb)
                await trio.lowlevel.checkpoint()
                return n
            if not data:
                await trio.lowlevel.checkpoint()
                return 0
            await conn.lot.park()

    async def sendall(self, data: bytes | bytearray | memoryview) -> None:
        tcb = self._connected()
        conn: Conn = tcb.owner
        view = memoryview(data).cast("B")
        while True:
            self._check_can_send(tcb)
            if view:
                n = tcb.send(view)
                if n:
                    view = view[n:]
                    self._stack.kick(tcb)
            if not view:
                break
            await conn.lot.park()
        await trio.lowlevel.checkpoint()

    async def recv(self, bufsize: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        tcb = self._connected()
        conn: Conn = tcb.owner
        if bufsize < 1:
            raise ValueError("bufsize must be at least 1")
        while True:
            if tcb.read_closed and not tcb.app_closed:
                await trio.lowlevel.checkpoint()
                return b""
            if tcb.rcvbuf:
                data = tcb.read(bufsize)
                if tcb.ack_now:
                    self._stack.kick(tcb)
                await trio.lowlevel.checkpoint()
                return data
            if tcb.error is not None:
                raise _fresh(tcb.error)
            if tcb.fin_received or tcb.state is State.CLOSED:
                await trio.lowlevel.checkpoint()
                return b""
            await conn.lot.park()

    async def wait_writable(self) -> None:
        tcb = self._connected()
        conn: Conn = tcb.owner
        while tcb.send_space() == 0 and tcb.error is None and tcb.state in SENDING:
            await conn.lot.park()
        await trio.lowlevel.checkpoint()

    # -- closing ----------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        tcb = self._connected()
        if how in (_socket.SHUT_RD, _socket.SHUT_RDWR):
            tcb.read_closed = True
            tcb.rcvbuf.clear()
            tcb.owner.lot.unpark_all()
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            tcb.shutdown_write(self._stack.now())
            self._stack.kick(tcb)
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise os_error(errno.EINVAL, "how must be SHUT_RD, SHUT_WR or SHUT_RDWR")

    async def close(self) -> None:
        """Close the socket. With SO_LINGER (on, 0) this aborts with RST; with
        (on, N) it waits up to N seconds for the peer to acknowledge our FIN."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._release_reservation()
        if self._listening is not None:
            self._stack.close_listener(self._listening)
        tcb = self._tcb
        if tcb is not None and tcb.state is not State.CLOSED:
            linger_on, linger_s = self._options.linger
            now = self._stack.now()
            if linger_on and linger_s == 0:
                tcb.abort(now)
                self._stack.kick(tcb)
            else:
                tcb.close(now)
                self._stack.note_app_close(tcb)
                self._stack.kick(tcb)
                if linger_on:
                    await self._linger(tcb, float(linger_s))
        await trio.lowlevel.checkpoint()

    async def _linger(self, tcb: Tcb, seconds: float) -> None:
        conn: Conn = tcb.owner
        with trio.move_on_after(seconds):
            while tcb.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK):
                await conn.lot.park()

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        peer = ""
        if self._tcb is not None:
            host, port = self.getpeername()
            peer = f" peer={host}:{port}"
        return f"<ustack.Socket {self._stack.ip}:{self._port or 0}{peer} {self.state}>"

    # -- helpers ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF, "socket is closed")

    def _connected(self) -> Tcb:
        self._check_open()
        if self._tcb is None:
            raise os_error(errno.ENOTCONN, "socket is not connected")
        return self._tcb

    def _check_can_send(self, tcb: Tcb) -> None:
        if tcb.error is not None:
            raise _fresh(tcb.error)
        if tcb.fin_seq is not None or tcb.fin_pending:
            raise os_error(errno.EPIPE, "cannot send after shutdown(SHUT_WR)")
        if tcb.state not in SENDING and tcb.state not in (
            State.SYN_SENT,
            State.SYN_RECEIVED,
        ):
            raise os_error(errno.EPIPE, f"cannot send in state {tcb.state.value}")

    def _release_reservation(self) -> None:
        if self._reserved and self._port is not None:
            self._stack.release_port(self._port)
            self._reserved = False


def _fresh(error: OSError) -> OSError:
    """A new exception like `error`, so each raise gets its own traceback."""
    return os_error(
        error.errno or 0, error.strerror.split(": ", 1)[-1] if error.strerror else ""
    )


class TcpStream(trio.abc.HalfCloseableStream):
    """A connected ustack socket as a trio `HalfCloseableStream`."""

    def __init__(self, sock: Socket) -> None:
        self.socket = sock
        self._send_busy = False
        self._receive_busy = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError(
                "another task is already sending on this stream"
            )
        self._send_busy = True
        try:
            await self.socket.sendall(data)
        except OSError as exc:
            raise self._translate(exc) from exc
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        try:
            await self.socket.wait_writable()
        except OSError as exc:
            raise self._translate(exc) from exc

    async def send_eof(self) -> None:
        try:
            self.socket.shutdown(_socket.SHUT_WR)
        except OSError as exc:
            raise self._translate(exc) from exc
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receive_busy:
            raise trio.BusyResourceError(
                "another task is already receiving on this stream"
            )
        self._receive_busy = True
        try:
            return await self.socket.recv(max_bytes or DEFAULT_RECEIVE_SIZE)
        except OSError as exc:
            raise self._translate(exc) from exc
        finally:
            self._receive_busy = False

    async def aclose(self) -> None:
        await self.socket.close()

    def _translate(self, exc: OSError) -> Exception:
        if exc.errno == errno.EBADF:
            return trio.ClosedResourceError("this stream was closed")
        return trio.BrokenResourceError(str(exc))


class TcpListener(trio.abc.Listener[TcpStream]):
    """A listening ustack socket as a trio `Listener`."""

    def __init__(self, sock: Socket) -> None:
        self.socket = sock

    async def accept(self) -> TcpStream:
        try:
            sock, _ = await self.socket.accept()
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("this listener was closed") from exc
            raise
        return TcpStream(sock)

    async def aclose(self) -> None:
        await self.socket.close()


__all__ = ["Socket", "TcpStream", "TcpListener"]
