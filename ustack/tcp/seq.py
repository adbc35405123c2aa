"""Modular sequence-number arithmetic (RFC 9293 3.4, RFC 1982).

Sequence numbers live in 0 .. 2**32-1 and wrap; every comparison goes
through these helpers so wrap-around is handled in one place.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b, in -2**31 .. 2**31-1."""
    d = (a - b) & MASK
    return d - (1 << 32) if d & HALF else d


def seq_lt(a: int, b: int) -> bool:
    return a != b and (a - b) & MASK >= HALF


def seq_le(a: int, b: int) -> bool:
    return (a - b) & MASK >= HALF or a == b


def seq_gt(a: int, b: int) -> bool:
    return a != b and (b - a) & MASK >= HALF  # seq_lt(b, a), one call fewer


def seq_ge(a: int, b: int) -> bool:
    return (b - a) & MASK >= HALF or a == b  # seq_le(b, a)


def seq_in(x: int, low: int, high: int) -> bool:
    """low <= x < high, modulo 2**32 (the window test of RFC 9293 3.10.7.4)."""
    return (x - low) & MASK < (high - low) & MASK
