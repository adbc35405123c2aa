"""`socketserver` servers on ustack: unmodified request handlers, ustack sockets.

`socketserver.BaseServer.serve_forever` waits on the listening socket with a
selector, which needs a file descriptor; here the loop waits in `accept()`
with `poll_interval` as the socket timeout instead, so `shutdown()` from
another thread is noticed within one interval, as with the stdlib's loop.
"""

from __future__ import annotations

import socketserver
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ustack.sync.runner import SyncStack


class ThreadingTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """`socketserver.ThreadingTCPServer` listening on a ustack stack.

    server = ThreadingTCPServer(stack, ("", 7), MyStreamRequestHandler)
    threading.Thread(target=server.serve_forever).start()
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        stack: SyncStack,
        server_address: tuple[str, int],
        RequestHandlerClass: Any,  # noqa: N803 (the stdlib's name)
        bind_and_activate: bool = True,
    ) -> None:
        socketserver.BaseServer.__init__(self, server_address, RequestHandlerClass)
        self.socket = stack.socket()  # type: ignore[assignment]
        self._stop_requested = False
        self._stopped = threading.Event()
        self._stopped.set()
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            while not self._stop_requested:
                self._serve_one(poll_interval)
                self.service_actions()
        finally:
            self._stop_requested = False
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop_requested = True
        self._stopped.wait()

    def handle_request(self) -> None:
        self._serve_one(self.timeout)

    def _serve_one(self, timeout: float | None) -> None:
        # socketserver's _handle_request_noblock, after an accept that waits.
        self.socket.settimeout(timeout)
        try:
            request, client_address = self.get_request()
        except TimeoutError:
            self.handle_timeout()
            return
        except OSError:
            return
        request.settimeout(None)
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
            except BaseException:
                self.shutdown_request(request)
                raise
        else:
            self.shutdown_request(request)
