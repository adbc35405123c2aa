"""Socket-like API on top of the stack: `Socket`, `TcpStream`, `TcpListener`,
and `Stack` (the engine of ustack.stack with `socket`/`connect`/`listen`).

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ustack import stack as _engine
from ustack.config import Settings
from ustack.errors import os_error
from ustack.protocol import ProtocolFactory
from ustack.sockopts import SocketOptions
from ustack.stack import Conn, Listening
from ustack.tcp.state import SENDING, State
from ustack.tcp.tcb import Tcb

if TYPE_CHECKING:
    from ustack.udp.socket import UdpConnection, UdpEndpoint, UdpSocket

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
    (_IPPROTO_TCP, _socket.TCP_CONGESTION): "congestion",
}
_LINGER = struct.Struct("ii")


def _congestion_name(value: int | bytes) -> str:
    """TCP_CONGESTION takes a name, as on Linux (b"cubic", b"reno")."""
    from ustack.tcp.cc import ALGORITHMS

    if not isinstance(value, bytes | bytearray):
        raise os_error(errno.EINVAL, "TCP_CONGESTION takes a name, e.g. b'cubic'")
    name = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
    if name not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS))
        raise os_error(errno.ENOENT, f"no congestion control {name!r} (known: {known})")
    return name


class Socket:
    """A TCP socket on a ustack `Stack`, shaped like the stdlib's `socket`."""

    __slots__ = (
        "_stack",
        "_port",
        "_reserved",
        "_tcb",
        "_listening",
        "_closed",
        "_options",
    )

    def __init__(self, stack: _engine.Stack) -> None:
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
        elif name == "congestion":
            opts.congestion = _congestion_name(value)
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
        if name == "congestion":
            tcb = self._tcb
            current = tcb.congestion_name if tcb is not None else None
            return (current or opts.congestion or settings.congestion).encode()
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
        parked = False
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
            parked = True
        if not parked:  # a park is already a checkpoint: no second task switch
            await trio.lowlevel.checkpoint()

    async def recv(self, bufsize: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        tcb = self._connected()
        conn: Conn = tcb.owner
        if bufsize < 1:
            raise ValueError("bufsize must be at least 1")
        parked = False
        while True:
            if tcb.read_closed and not tcb.app_closed:
                data = b""
                break
            if tcb.rcvbuf:
                data = tcb.read(bufsize)
                if tcb.ack_now:
                    self._stack.kick(tcb)
                break
            if tcb.error is not None:
                raise _fresh(tcb.error)
            if tcb.fin_received or tcb.state is State.CLOSED:
                data = b""
                break
            await conn.lot.park()
            parked = True
        # Woken with data, return at once: the park was this call's checkpoint
        # (as trio's own socket methods after a wait), so a request costs one
        # task switch on the way in, not two.
        if not parked:
            await trio.lowlevel.checkpoint()
        return data

    def readable(self) -> bool:
        """True when recv() (or, listening, accept()) would not block: data,
        EOF or an error is pending. For the blocking socket and trio adapters."""
        if self._listening is not None:
            return bool(self._listening.ready) or self._listening.closed
        tcb = self._connected()
        return bool(
            tcb.rcvbuf
            or tcb.read_closed
            or tcb.fin_received
            or tcb.error is not None
            or tcb.state is State.CLOSED
        )

    async def wait_readable(self) -> None:
        """Wait until readable() (no data is consumed)."""
        while not self.readable():
            if self._listening is not None:
                await self._listening.lot.park()
            else:
                await self._connected().owner.lot.park()
        await trio.lowlevel.checkpoint()

    def writable(self) -> bool:
        """True when send() would not block (space, or an error to raise)."""
        tcb = self._connected()
        return tcb.send_space() > 0 or tcb.error is not None or tcb.state not in SENDING

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
            tcb.owner.wake()
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            tcb.shutdown_write(self._stack.now())
            self._stack.kick(tcb)
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise os_error(errno.EINVAL, "how must be SHUT_RD, SHUT_WR or SHUT_RDWR")

    async def close(self) -> None:
        """Close the socket. With SO_LINGER (on, 0) this aborts with RST; with
        (on, N) it waits up to N seconds for the peer to acknowledge our FIN."""
        tcb = None if self._closed else self._tcb
        self.close_nowait()
        if tcb is not None and self._options.linger[0] and self._options.linger[1]:
            await self._linger(tcb, float(self._options.linger[1]))
        await trio.lowlevel.checkpoint()

    def close_nowait(self) -> None:
        """close() without waiting for SO_LINGER (trio's SocketType.close is
        synchronous); the FIN or RST is sent all the same."""
        if self._closed:
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
    """A connected ustack socket as a trio `HalfCloseableStream`.

    Like trio's `SocketStream`, it turns TCP_NODELAY on: a stream writer
    hands over whole messages, so Nagle's algorithm (RFC 896, which `Socket`
    keeps on by default as the stdlib and Linux do) would only hold a
    message's tail until the peer's delayed ACK.
    """

    __slots__ = ("socket", "_send_busy", "_receive_busy")

    def __init__(self, sock: Socket) -> None:
        self.socket = sock
        if sock.tcb is not None:
            sock.setsockopt(_IPPROTO_TCP, _socket.TCP_NODELAY, 1)
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

    __slots__ = ("socket",)

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


class Stack(_engine.Stack):
    """A user-space TCP/IP stack answering as `ip` on `link`, with the socket
    API on top. Use as `async with Stack(link, ip="10.0.0.2") as stack:`; the
    packet loop runs while the block does, and leaving it closes every
    connection (FIN, then RST for whatever has not finished within
    `settings.shutdown_grace`)."""

    def socket(self) -> Socket:
        return Socket(self)

    async def connect(self, address: tuple[str, int]) -> TcpStream:
        sock = self.socket()
        try:
            await sock.connect(address)
        except BaseException:
            await sock.close()
            raise
        return TcpStream(sock)

    async def listen(
        self, port: int, backlog: int = 128, reuse_addr: bool = True
    ) -> TcpListener:
        sock = self.socket()
        if reuse_addr:
            sock.setsockopt(_SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        sock.listen(backlog)
        return TcpListener(sock)

    def serve_protocol(
        self,
        port: int,
        factory: ProtocolFactory,
        backlog: int = 128,
        *,
        keepalive: bool = False,
    ) -> Socket:
        """Listen on `port` and serve each connection with `factory()`, a
        `ustack.protocol.Protocol` whose callbacks the packet loop runs (no
        task per connection). Close the returned socket to stop listening;
        connections already made carry on, as after close() of a listening
        socket with accepted children on Linux."""
        sock = self.socket()
        sock.setsockopt(_SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        # As TcpStream: protocols write whole messages (see its docstring).
        sock.setsockopt(_IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if keepalive:
            sock.setsockopt(_SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
        sock.bind(("", port))
        sock.listen(backlog)
        assert sock._listening is not None
        sock._listening.factory = factory
        return sock

    def udp_socket(self) -> UdpSocket:
        """A UDP socket (stdlib names: bind, sendto, recvfrom, connect, ...)."""
        from ustack.udp.socket import UdpSocket

        return UdpSocket(self)

    async def udp_bind(self, port: int = 0) -> UdpEndpoint:
        """A UDP port as a trio Channel of (data, (host, port)) datagrams."""
        from ustack.udp.socket import UdpEndpoint

        return await UdpEndpoint.open(self, port)

    async def udp_connect(self, address: tuple[str, int]) -> UdpConnection:
        """A connected UDP socket as a trio Channel of bytes."""
        from ustack.udp.socket import UdpConnection

        return await UdpConnection.open(self, address)

    def async_httpx_transport(self, **options: Any) -> Any:
        """An `httpx.AsyncHTTPTransport` over this stack (`ustack[httpx]`)."""
        from ustack.adapters.httpx_transport import async_transport

        return async_transport(self, **options)


@asynccontextmanager
async def open_tun_stack(
    ifname: str = "ustack0",
    host_ip: str = "10.203.0.1/24",
    ip: str = "10.203.0.2",
    mtu: int = 1500,
    settings: Settings | None = None,
    offload: bool = True,
) -> AsyncIterator[Stack]:
    """Create a TUN device (kernel side `host_ip`) and run a stack on it as `ip`.

    `offload` turns on checksum/segmentation offload (see TunLink.open)."""
    from ustack.link.tun import TunLink

    link = TunLink.open(ifname=ifname, host_ip=host_ip, mtu=mtu, offload=offload)
    try:
        async with Stack(link, ip=ip, settings=settings, network=host_ip) as stack:
            yield stack
    finally:
        link.close()


__all__ = ["Socket", "Stack", "TcpListener", "TcpStream", "open_tun_stack"]
