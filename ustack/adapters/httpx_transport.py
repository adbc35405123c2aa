"""httpx over ustack: httpcore network backends, sync and trio.

    client = httpx.Client(transport=sync_stack.httpx_transport())
    async with httpx.AsyncClient(transport=stack.async_httpx_transport()) as c:
        ...                                  # inside trio, `stack` a ustack.Stack

httpcore asks its backend for a TCP stream; these backends dial through
ustack. TLS (https://): the trio backend wraps the stream in `trio.SSLStream`;
the sync one goes through `SyncSocket.bridge()` and the stdlib's `ssl`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import httpcore
import httpx
import trio

if TYPE_CHECKING:
    import socket

    from ustack import Stack, TcpStream
    from ustack.adapters.dialer import Dialer, UstackSocket


_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def _pool_options(
    verify: ssl.SSLContext | str | bool = True,
    cert: Any = None,
    trust_env: bool = True,
    http1: bool = True,
    http2: bool = False,
    limits: httpx.Limits = _DEFAULT_LIMITS,
    retries: int = 0,
) -> dict[str, Any]:
    """httpx.HTTPTransport's pool arguments (the subset that applies here)."""
    return {
        "ssl_context": httpx.create_ssl_context(
            verify=verify, cert=cert, trust_env=trust_env
        ),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
        "retries": retries,
    }


def sync_transport(stack: Dialer, **options: Any) -> httpx.HTTPTransport:
    """An `httpx.HTTPTransport` dialing through a `ustack.sync` stack."""
    transport = httpx.HTTPTransport.__new__(httpx.HTTPTransport)
    transport._pool = httpcore.ConnectionPool(
        network_backend=SyncBackend(stack), **_pool_options(**options)
    )
    return transport


def async_transport(stack: Stack, **options: Any) -> httpx.AsyncHTTPTransport:
    """An `httpx.AsyncHTTPTransport` dialing through a trio-side ustack `Stack`."""
    transport = httpx.AsyncHTTPTransport.__new__(httpx.AsyncHTTPTransport)
    transport._pool = httpcore.AsyncConnectionPool(
        network_backend=TrioBackend(stack), **_pool_options(**options)
    )
    return transport


# -- sync ------------------------------------------------------------------------


class _BlockingStream(httpcore.NetworkStream):
    """A blocking socket (SyncSocket, or a bridged ssl socket) for httpcore."""

    def __init__(
        self, sock: UstackSocket | socket.socket, origin: UstackSocket
    ) -> None:
        self._sock = sock
        self._origin = origin  # the ustack socket underneath (for is_readable)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _map_errors(httpcore.ReadTimeout, httpcore.ReadError):
            self._sock.settimeout(timeout)
            return bytes(self._sock.recv(max_bytes))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _map_errors(httpcore.WriteTimeout, httpcore.WriteError):
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _map_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            raw = self._origin.bridge()
            raw.settimeout(timeout)
            tls = ssl_context.wrap_socket(raw, server_hostname=server_hostname)
        return _BlockingStream(tls, self._origin)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._sock, ssl.SSLSocket):
            return self._sock._sslobj  # type: ignore[attr-defined]
        if info == "is_readable":
            if isinstance(self._sock, ssl.SSLSocket):
                return _fd_readable(self._sock)
            return self._origin.readable()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "client_addr":
            return self._sock.getsockname()
        return None


def _fd_readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


class SyncBackend(httpcore.NetworkBackend):
    """httpcore's blocking network backend, on ustack."""

    def __init__(self, stack: Dialer) -> None:
        self._stack = stack

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        with _map_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            sock = self._stack.create_connection((host, port), timeout)
        return _BlockingStream(sock, sock)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("ustack has no Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# -- trio --------------------------------------------------------------------------


class _TrioStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: trio.abc.Stream, tcp: TcpStream) -> None:
        self._stream = stream
        self._tcp = tcp

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _map_errors(httpcore.ReadTimeout, httpcore.ReadError), _deadline(timeout):
            return bytes(await self._stream.receive_some(max_bytes))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with (
            _map_errors(httpcore.WriteTimeout, httpcore.WriteError),
            _deadline(timeout),
        ):
            await self._stream.send_all(buffer)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = trio.SSLStream(
            self._stream,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            https_compatible=True,
        )
        with (
            _map_errors(httpcore.ConnectTimeout, httpcore.ConnectError),
            _deadline(timeout),
        ):
            await tls.do_handshake()
        return _TrioStream(tls, self._tcp)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._stream, trio.SSLStream):
            return self._stream  # forwards selected_alpn_protocol() and friends
        if info == "is_readable":
            return self._tcp.socket.readable()
        if info == "server_addr":
            return self._tcp.socket.getpeername()
        if info == "client_addr":
            return self._tcp.socket.getsockname()
        return None


class TrioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's async network backend, on a ustack `Stack` (trio)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with (
            _map_errors(httpcore.ConnectTimeout, httpcore.ConnectError),
            _deadline(timeout),
        ):
            tcp = await self._stack.connect((host, port))
        return _TrioStream(tcp, tcp)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("ustack has no Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


# -- errors --------------------------------------------------------------------------


class _map_errors:  # noqa: N801 (used like a function)
    """Turn timeouts and socket/stream errors into httpcore's exceptions."""

    def __init__(self, on_timeout: type[Exception], on_error: type[Exception]):
        self._on_timeout = on_timeout
        self._on_error = on_error

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        if isinstance(exc, TimeoutError | trio.TooSlowError):
            raise self._on_timeout(str(exc) or "timed out") from exc
        if isinstance(
            exc, OSError | trio.BrokenResourceError | trio.ClosedResourceError
        ):
            raise self._on_error(str(exc)) from exc


def _deadline(timeout: float | None) -> AbstractContextManager[object]:
    return trio.fail_after(timeout) if timeout is not None else nullcontext()
