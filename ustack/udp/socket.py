"""UDP sockets on a ustack `Stack`: `UdpSocket` with the stdlib's names
(async where trio's own sockets are), and trio Channels on top of it:
`UdpEndpoint` (datagrams with addresses) and `UdpConnection` (one peer).

Errors are the builtin OSError subclasses, as with the stdlib: EMSGSIZE for
a datagram over 65507 bytes, EDESTADDRREQ for send() before connect(),
ECONNREFUSED on the call after a port unreachable came back for a
connected socket (Linux reports it once, then clears it).
"""

from __future__ import annotations

import errno
import ipaddress
import socket as _socket
from typing import TYPE_CHECKING, NamedTuple

import trio

from ustack.errors import os_error
from ustack.udp.table import UdpBinding
from ustack.wire.udp import MAX_PAYLOAD

if TYPE_CHECKING:
    from ustack.stack import Stack

DEFAULT_RECEIVE_SIZE = 65536


class Datagram(NamedTuple):
    data: bytes
    address: tuple[str, int]


def _packed(host: str) -> bytes:
    try:
        return ipaddress.IPv4Address(host).packed
    except ValueError:
        raise os_error(errno.EINVAL, f"{host!r} is not an IPv4 address") from None


def _text(address: tuple[bytes, int]) -> tuple[str, int]:
    return (str(ipaddress.IPv4Address(address[0])), address[1])


class UdpSocket:
    """A UDP socket, shaped like the stdlib's `socket(AF_INET, SOCK_DGRAM)`."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._binding: UdpBinding | None = None
        self._closed = False
        self._rcvbuf = stack.settings.udp_rcvbuf

    # -- addresses ----------------------------------------------------------

    @property
    def binding(self) -> UdpBinding | None:
        """The stack's record of this socket (for diagnostics and tests)."""
        return self._binding

    def bind(self, address: tuple[str, int]) -> None:
        host, port = address
        self._check_open()
        if self._binding is not None:
            raise os_error(errno.EINVAL, "socket is already bound")
        if host not in ("", "0.0.0.0", self._stack.ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{host} is not this stack's address")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("port must be 0-65535")
        self._stack.check_running()
        self._binding = self._stack.udp.bind(port)
        self._binding.rcvbuf = self._rcvbuf

    def getsockname(self) -> tuple[str, int]:
        return (self._stack.ip, self._binding.port if self._binding else 0)

    def getpeername(self) -> tuple[str, int]:
        if self._binding is None or self._binding.peer is None:
            raise os_error(errno.ENOTCONN, "socket is not connected")
        return _text(self._binding.peer)

    async def connect(self, address: tuple[str, int]) -> None:
        """Fix the peer: send() goes there, only its datagrams are received."""
        binding = self._bound()
        host, port = address
        binding.peer = (_packed(host), port)
        binding.error = 0
        await trio.lowlevel.checkpoint()

    # -- options ------------------------------------------------------------

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if (level, option) != (_socket.SOL_SOCKET, _socket.SO_RCVBUF):
            raise os_error(errno.ENOPROTOOPT, f"option {level}/{option} not supported")
        self._rcvbuf = max(256, int(value)) * 2  # Linux doubles it, as here
        if self._binding is not None:
            self._binding.rcvbuf = self._rcvbuf

    def getsockopt(self, level: int, option: int) -> int:
        if (level, option) != (_socket.SOL_SOCKET, _socket.SO_RCVBUF):
            raise os_error(errno.ENOPROTOOPT, f"option {level}/{option} not supported")
        return self._rcvbuf

    # -- data ---------------------------------------------------------------

    async def sendto(
        self, data: bytes | bytearray | memoryview, address: tuple[str, int]
    ) -> int:
        host, port = address
        dst = (_packed(host), port)
        if not 0 < port <= 0xFFFF:
            raise os_error(errno.EINVAL, f"cannot send to port {port}")
        return await self._send(bytes(data), dst)

    async def send(self, data: bytes | bytearray | memoryview) -> int:
        self._check_open()
        binding = self._binding
        if binding is None or binding.peer is None:
            raise os_error(errno.EDESTADDRREQ, "send() needs connect() first")
        return await self._send(bytes(data), binding.peer)

    async def _send(self, data: bytes, dst: tuple[bytes, int]) -> int:
        binding = self._bound()
        self._raise_pending(binding)
        if len(data) > MAX_PAYLOAD:
            raise os_error(errno.EMSGSIZE, f"{len(data)} bytes do not fit a datagram")
        self._stack.udp.send(binding, data, dst)
        await trio.lowlevel.checkpoint()
        return len(data)

    async def recvfrom(
        self, bufsize: int = DEFAULT_RECEIVE_SIZE
    ) -> tuple[bytes, tuple[str, int]]:
        """The next datagram (cut to `bufsize`, the rest discarded) and its
        source."""
        if bufsize < 1:
            raise ValueError("bufsize must be at least 1")
        binding = self._bound()
        while True:
            self._check_open()
            item = binding.take()
            if item is not None:
                await trio.lowlevel.checkpoint()
                return item[0][:bufsize], _text(item[1])
            self._raise_pending(binding)
            await binding.lot.park()

    async def recv(self, bufsize: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        data, _ = await self.recvfrom(bufsize)
        return data

    # -- closing ------------------------------------------------------------

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._binding is not None:
                self._stack.udp.unbind(self._binding)
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> UdpSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        host, port = self.getsockname()
        peer = ""
        if self._binding is not None and self._binding.peer is not None:
            peer_host, peer_port = self.getpeername()
            peer = f" peer={peer_host}:{peer_port}"
        name = f"{host}:{port}"
        return f"<ustack.UdpSocket {name}{peer}>"

    # -- helpers ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF, "socket is closed")

    def _bound(self) -> UdpBinding:
        """The binding, binding to an ephemeral port first if need be (as
        sendto/connect on an unbound stdlib socket do)."""
        self._check_open()
        if self._binding is None:
            self.bind(("", 0))
        assert self._binding is not None
        return self._binding

    @staticmethod
    def _raise_pending(binding: UdpBinding) -> None:
        if binding.error:
            code, binding.error = binding.error, 0
            raise os_error(code, "an ICMP error came back for this socket")


class UdpEndpoint(trio.abc.Channel[Datagram]):
    """A bound UDP socket as a trio Channel: `send(Datagram(data, addr))`,
    `receive() -> Datagram`, `async for datagram in endpoint`."""

    def __init__(self, sock: UdpSocket) -> None:
        self.socket = sock

    @classmethod
    async def open(cls, stack: Stack, port: int = 0) -> UdpEndpoint:
        sock = UdpSocket(stack)
        sock.bind(("", port))
        await trio.lowlevel.checkpoint()
        return cls(sock)

    async def send(self, value: Datagram | tuple[bytes, tuple[str, int]]) -> None:
        data, address = value
        try:
            await self.socket.sendto(data, address)
        except OSError as exc:
            raise _translate(exc) from exc

    async def receive(self) -> Datagram:
        try:
            data, address = await self.socket.recvfrom()
        except OSError as exc:
            raise _translate(exc) from exc
        return Datagram(data, address)

    async def aclose(self) -> None:
        await self.socket.close()


class UdpConnection(trio.abc.Channel[bytes]):
    """A connected UDP socket as a trio Channel of datagram payloads."""

    def __init__(self, sock: UdpSocket) -> None:
        self.socket = sock

    @classmethod
    async def open(cls, stack: Stack, address: tuple[str, int]) -> UdpConnection:
        sock = UdpSocket(stack)
        await sock.connect(address)
        return cls(sock)

    async def send(self, value: bytes) -> None:
        try:
            await self.socket.send(value)
        except OSError as exc:
            raise _translate(exc) from exc

    async def receive(self) -> bytes:
        try:
            return await self.socket.recv()
        except OSError as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        await self.socket.close()


def _translate(exc: OSError) -> Exception:
    """trio's conventions: a closed channel is ClosedResourceError; an error
    from the network (e.g. ECONNREFUSED) stays the OSError it is."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("this channel was closed")
    return exc


__all__ = ["Datagram", "UdpConnection", "UdpEndpoint", "UdpSocket"]
