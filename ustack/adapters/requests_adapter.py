"""requests / urllib3 over ustack's blocking sockets.

    session = requests.Session()
    session.mount("http://", stack.requests_adapter())
    session.mount("https://", stack.requests_adapter())

http:// runs on `SyncSocket` directly. https:// needs the stdlib's `ssl`,
which wraps only real descriptors, so its connections go through
`SyncSocket.bridge()` (a socketpair relay) and urllib3 does TLS as usual.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

if TYPE_CHECKING:
    from ustack.adapters.dialer import Dialer


class _OnUstack:
    """urllib3 connection mix-in: `_new_conn` dials through ustack."""

    ustack: Dialer
    bridged: bool = False
    _dns_host: str
    port: int
    timeout: Any
    host: str
    sock: Any

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        try:
            sock = self.ustack.create_connection((self._dns_host, self.port), timeout)
        except TimeoutError as exc:
            message = f"Connection to {self.host} timed out (timeout={timeout})"
            raise ConnectTimeoutError(self, message) from exc
        except OSError as exc:
            message = f"Failed to establish a new connection over ustack: {exc}"
            raise NewConnectionError(self, message) from exc  # type: ignore[arg-type]
        return sock.bridge() if self.bridged else sock  # type: ignore[return-value]

    @property
    def is_connected(self) -> bool:
        # urllib3 polls the descriptor (wait_for_read); ours has none: a socket
        # readable while idle has seen EOF or an error, so it is dropped.
        sock = self.sock
        if sock is None or isinstance(sock, socket.socket):  # none, or bridged
            return super().is_connected  # type: ignore[misc]
        return not sock.readable()


class UstackAdapter(HTTPAdapter):
    """A requests transport adapter whose connections are ustack's."""

    def __init__(self, stack: Dialer, **kwargs: Any) -> None:
        conn_http = type(
            "UstackHTTPConnection", (_OnUstack, HTTPConnection), {"ustack": stack}
        )
        conn_https = type(
            "UstackHTTPSConnection",
            (_OnUstack, HTTPSConnection),
            {"ustack": stack, "bridged": True},
        )
        self._pool_classes = {
            "http": type(
                "UstackHTTPConnectionPool",
                (HTTPConnectionPool,),
                {"ConnectionCls": conn_http},
            ),
            "https": type(
                "UstackHTTPSConnectionPool",
                (HTTPSConnectionPool,),
                {"ConnectionCls": conn_https},
            ),
        }
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pool_classes)
