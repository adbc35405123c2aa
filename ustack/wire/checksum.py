"""Internet checksum (RFC 1071) via one big-int reduction.

Since 2**16 == 1 (mod 0xFFFF), the big-endian integer value of a buffer is
congruent to the sum of its 16-bit words mod 0xFFFF, so one
`int.from_bytes(...) % 0xFFFF` replaces the word loop (RFC 1071 2(B): any
order/grouping works). Odd lengths are padded with a zero byte (a `<< 8`).
A ones-complement sum is 0 only when every word is 0; otherwise it is in
1..0xFFFF, so a residue of 0 means 0xFFFF ("negative zero").
"""

from __future__ import annotations

Buf = bytes | bytearray | memoryview


def ones_sum(data: Buf, initial: int = 0) -> int:
    """16-bit ones-complement sum (0..0xFFFF) of `data` plus `initial`.

    `initial` is any non-negative int congruent to a partial sum, e.g. the
    result of `pseudo_header_sum`.
    """
    s = int.from_bytes(data, "big") % 0xFFFF  # the one big-int operation
    if len(data) & 1:
        s <<= 8
    s = (s + initial) % 0xFFFF
    if s:
        return s
    return 0xFFFF if initial or any(data) else 0  # rare: -0 vs all-zero


def checksum(data: Buf, initial: int = 0) -> int:
    """Value for a checksum field: ones-complement of the sum (RFC 1071)."""
    return 0xFFFF - ones_sum(data, initial)


def verify(data: Buf, initial: int = 0) -> bool:
    """True if `data` (checksum field included) sums to 0xFFFF."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum(src_ip: bytes, dst_ip: bytes, proto: int, length: int) -> int:
    """Partial sum of the TCP/UDP IPv4 pseudo-header (RFC 9293 3.1).

    src, dst, zero, proto, length; unreduced, pass it as `initial`.
    """
    return (
        int.from_bytes(src_ip, "big") + int.from_bytes(dst_ip, "big") + proto + length
    )
