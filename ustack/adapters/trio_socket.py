"""Unmodified trio networking code on ustack: a trio custom socket factory.

    trio.socket.set_custom_socket_factory(ustack.trio_socket_factory(stack))
    stream = await trio.open_tcp_stream("10.203.0.1", 8000)   # over ustack
    await trio.serve_tcp(handler, 8080)                       # listens on ustack

trio's high-level helpers (open_tcp_stream, open_tcp_listeners, serve_tcp,
SocketStream, SocketListener) call only `trio.socket.socket(...)` and the
`SocketType` methods below, so they run on ustack's TCP unchanged. IPv6
sockets raise EAFNOSUPPORT, which open_tcp_listeners skips (it then listens
on IPv4 only). Name resolution stays trio's (getaddrinfo).
"""

from __future__ import annotations

import errno
import socket as _socket
from typing import TYPE_CHECKING, Any

import trio

from ustack.errors import os_error

if TYPE_CHECKING:
    from ustack import Socket, Stack

NO_FD = -2  # fileno() while open: not a descriptor (-1 means closed, as trio checks)


class UstackTrioSocket(trio.socket.SocketType):
    """A ustack `Socket` behind trio's `SocketType` interface."""

    def __init__(self, sock: Socket) -> None:
        super().__init__()
        self._sock = sock
        self._closed = False
        self._shut_wr = False

    # -- identity ------------------------------------------------------------------
    @property
    def family(self) -> _socket.AddressFamily:
        return _socket.AF_INET

    @property
    def type(self) -> _socket.SocketKind:
        return _socket.SOCK_STREAM

    @property
    def proto(self) -> int:
        return 0

    @property
    def did_shutdown_SHUT_WR(self) -> bool:  # noqa: N802 (trio's name)
        return self._shut_wr

    def fileno(self) -> int:
        return -1 if self._closed else NO_FD

    def getsockname(self) -> tuple[str, int]:
        return self._sock.getsockname()

    def getpeername(self) -> tuple[str, int]:
        return self._sock.getpeername()

    def setsockopt(
        self, level: int, optname: int, value: Any, optlen: Any = None
    ) -> None:
        self._sock.setsockopt(level, optname, value)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
            return int(self._sock.state == "LISTEN")
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_TYPE):
            return _socket.SOCK_STREAM
        return self._sock.getsockopt(level, optname)

    def get_inheritable(self) -> bool:
        return False

    def set_inheritable(self, inheritable: bool) -> None:
        if inheritable:
            raise os_error(errno.EOPNOTSUPP, "ustack sockets have no descriptor")

    def __repr__(self) -> str:
        return f"<ustack trio socket {self._sock!r}>"

    # -- set-up --------------------------------------------------------------------
    async def bind(self, address: Any) -> None:
        await trio.lowlevel.checkpoint()
        self._sock.bind(tuple(address[:2]))

    def listen(self, backlog: int = 128) -> None:
        self._sock.listen(backlog)

    async def accept(self) -> tuple[UstackTrioSocket, tuple[str, int]]:
        sock, peer = await self._sock.accept()
        return UstackTrioSocket(sock), peer

    async def connect(self, address: Any) -> None:
        await self._sock.connect(tuple(address[:2]))

    # -- data ----------------------------------------------------------------------
    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        _no_flags(flags)
        return await self._sock.recv(buflen)

    async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = await self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    async def send(self, data: Any, flags: int = 0, /) -> int:
        _no_flags(flags)
        return await self._sock.send(data)

    def is_readable(self) -> bool:
        return self._sock.readable()

    async def wait_writable(self) -> None:
        await self._sock.wait_writable()

    # -- closing -------------------------------------------------------------------
    def shutdown(self, flag: int) -> None:
        self._sock.shutdown(flag)
        if flag in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            self._shut_wr = True

    def close(self) -> None:
        self._closed = True
        self._sock.close_nowait()

    def __enter__(self) -> UstackTrioSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class UstackSocketFactory(trio.abc.SocketFactory):
    """Makes every `trio.socket.socket()` a ustack socket on `stack`."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack

    def socket(
        self,
        family: int | None = None,
        type: int | None = None,
        proto: int | None = None,
    ) -> trio.socket.SocketType:
        if family not in (None, _socket.AF_INET):
            raise os_error(errno.EAFNOSUPPORT, "ustack is IPv4 only")
        if type not in (None, _socket.SOCK_STREAM):
            raise os_error(errno.EPROTONOSUPPORT, "ustack sockets are TCP only")
        return UstackTrioSocket(self._stack.socket())


def trio_socket_factory(stack: Stack) -> UstackSocketFactory:
    """For `trio.socket.set_custom_socket_factory`: trio sockets become ustack's."""
    return UstackSocketFactory(stack)


def _no_flags(flags: int) -> None:
    if flags:
        raise os_error(errno.EOPNOTSUPP, "flags (MSG_PEEK, ...) are not supported")
