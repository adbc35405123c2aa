"""A per-second budget, e.g. for challenge ACKs (RFC 5961 7)."""

from __future__ import annotations


class RateLimiter:
    __slots__ = ("limit", "_window", "_used")

    def __init__(self, limit_per_second: int) -> None:
        self.limit = limit_per_second
        self._window = -1
        self._used = 0

    def allow(self, now: float) -> bool:
        window = int(now)
        if window != self._window:
            self._window = window
            self._used = 0
        if self._used >= self.limit:
            return False
        self._used += 1
        return True
