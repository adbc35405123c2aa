"""What a blocking socket needs from the stack's thread (a `SyncStack`).

A protocol, so `socket.py` does not import `runner.py` (which makes sockets).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class StackThread(Protocol):
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `await fn(*args)` in the stack's trio thread."""
        ...

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the stack's trio thread."""
        ...

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start a background task (called from the trio thread)."""
        ...
