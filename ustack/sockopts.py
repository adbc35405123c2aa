"""Per-socket options (SOL_SOCKET / IPPROTO_TCP), inherited by accepted sockets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class SocketOptions:
    reuseaddr: bool = False  # SO_REUSEADDR
    keepalive: bool = False  # SO_KEEPALIVE
    linger: tuple[bool, int] = (False, 0)  # SO_LINGER (on, seconds)
    nodelay: bool = False  # TCP_NODELAY
    keepidle: int | None = None  # TCP_KEEPIDLE; None = stack default
    keepintvl: int | None = None  # TCP_KEEPINTVL
    keepcnt: int | None = None  # TCP_KEEPCNT
    congestion: str | None = None  # TCP_CONGESTION; None = stack default

    def copy(self) -> SocketOptions:
        return dataclasses.replace(self)
