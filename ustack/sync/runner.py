"""A ustack `Stack` run by trio in a background thread, driven from any thread.

`open_tun_stack(...)` takes the same arguments as `ustack.open_tun_stack`;
the object it yields makes blocking, stdlib-shaped sockets (`socket()`,
`create_connection()`) whose calls are carried into the stack's trio thread
with `trio.from_thread` (one cross-thread round trip per call).
"""

from __future__ import annotations

import errno
import ipaddress
import queue
import socket as _socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

from ustack.errors import os_error
from ustack.sync.socket import SyncSocket

if TYPE_CHECKING:
    from ustack import Stack

T = TypeVar("T")
_DEFAULT = object()  # create_connection's "use socket.getdefaulttimeout()"


class SyncStack:
    """A running stack, usable from any thread but its own."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[Stack]]):
        self._opener = opener
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self.stack: Stack | None = None
        self._thread = threading.Thread(
            target=self._thread_main, name="ustack-stack", daemon=True
        )

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> SyncStack:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def close(self) -> None:
        """Close every connection (FIN, then RST after shutdown_grace) and stop."""
        if self._stop is not None and self._thread.is_alive():
            self.call_sync(self._stop.set)
        self._thread.join()
        self._token = None

    def __enter__(self) -> SyncStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _thread_main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:  # reported by start() or close()
            self._error = exc
        finally:
            self._ready.set()

    async def _trio_main(self) -> None:
        async with self._opener() as stack, trio.open_nursery() as nursery:
            self.stack, self._nursery = stack, nursery
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    # -- calling into the stack's thread --------------------------------------

    @property
    def ip(self) -> str:
        return self._running().ip

    # Both go through TrioToken.run_sync_soon and a SimpleQueue: about half
    # of trio.from_thread's CPU per call (64 vs 125 us, measured on an idle
    # trio loop), and every blocking-socket call is one such round trip.

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `await fn(*args)` in the stack's trio thread; return its result."""
        reply: queue.SimpleQueue[outcome.Outcome[T]] = queue.SimpleQueue()

        async def task() -> None:
            reply.put(await outcome.acapture(fn, *args))

        self._soon(trio.lowlevel.spawn_system_task, task)
        return reply.get().unwrap()

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` (not async) in the stack's trio thread."""
        reply: queue.SimpleQueue[outcome.Outcome[T]] = queue.SimpleQueue()
        self._soon(lambda: reply.put(outcome.capture(fn, *args)))
        return reply.get().unwrap()

    def _soon(self, fn: Callable[..., object], *args: Any) -> None:
        if self._token is None:
            raise RuntimeError("the stack is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking ustack calls cannot run in the stack's thread")
        self._token.run_sync_soon(fn, *args)

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start a background task in the stack's thread (from the trio thread)."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def _running(self) -> Stack:
        if self.stack is None or self._token is None or self._error is not None:
            raise RuntimeError("the stack is not running (closed, or it failed)")
        return self.stack

    # -- sockets ----------------------------------------------------------------

    def socket(
        self,
        family: int = _socket.AF_INET,
        type: int = _socket.SOCK_STREAM,
        proto: int = 0,
    ) -> SyncSocket:
        """A new blocking TCP socket (only AF_INET/SOCK_STREAM exist here)."""
        if family != _socket.AF_INET or type != _socket.SOCK_STREAM:
            raise os_error(errno.EAFNOSUPPORT, "ustack sockets are TCP over IPv4 only")
        stack = self._running()
        return SyncSocket(self, self.call_sync(stack.socket))

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | None | object = _DEFAULT,
        source_address: tuple[str, int] | None = None,
    ) -> SyncSocket:
        """Like `socket.create_connection`: connect, honouring `timeout`
        (default `socket.getdefaulttimeout()`), close the socket on failure."""
        host, port = address
        sock = self.socket()
        try:
            sock.settimeout(
                _socket.getdefaulttimeout() if timeout is _DEFAULT else timeout  # type: ignore[arg-type]
            )
            if source_address is not None:
                sock.bind(source_address)
            sock.connect((_ipv4(host, port), port))
        except BaseException:
            sock.close()
            raise
        return sock

    # -- adapters (optional extras) ----------------------------------------------

    def requests_adapter(self, **kwargs: Any) -> Any:
        """A requests `HTTPAdapter` for `session.mount("http://", ...)`
        (needs `pip install 'ustack[requests]'`)."""
        from ustack.adapters.requests_adapter import UstackAdapter

        return UstackAdapter(self, **kwargs)

    def httpx_transport(self, **kwargs: Any) -> Any:
        """An `httpx.HTTPTransport` for `httpx.Client(transport=...)`
        (needs `pip install 'ustack[httpx]'`)."""
        from ustack.adapters.httpx_transport import sync_transport

        return sync_transport(self, **kwargs)


def _ipv4(host: str, port: int) -> str:
    """An IPv4 literal as is; a name through the resolver (AF_INET only)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        infos = _socket.getaddrinfo(host, port, _socket.AF_INET, _socket.SOCK_STREAM)
        return str(infos[0][4][0])


@contextmanager
def open_tun_stack(*args: Any, **kwargs: Any) -> Iterator[SyncStack]:
    """`ustack.open_tun_stack(...)` in a background thread (same arguments)."""
    import ustack

    sync = SyncStack(lambda: ustack.open_tun_stack(*args, **kwargs)).start()
    try:
        yield sync
    finally:
        sync.close()


@contextmanager
def run_stack(
    opener: Callable[[], AbstractAsyncContextManager[Stack]],
) -> Iterator[SyncStack]:
    """Any stack (e.g. `lambda: Stack(link, ip=...)`) in a background thread."""
    sync = SyncStack(opener).start()
    try:
        yield sync
    finally:
        sync.close()
