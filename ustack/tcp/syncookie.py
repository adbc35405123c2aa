"""SYN cookies (RFC 4987 3.6): answer a SYN without keeping any state.

When a listener's SYN queue is full, the SYN-ACK's ISN itself encodes what we
need to rebuild the connection from the client's ACK:

    bits 31..27  t: a counter that ticks every 64 s (cookie age)
    bits 26..24  index of the MSS in MSS_TABLE
    bits 23..0   keyed hash of the 4-tuple, the client's ISN and t

A cookie is accepted for two ticks (64-128 s). Window scaling and other SYN
options are lost, as with any cookie scheme that has no timestamps.
"""

from __future__ import annotations

import hashlib
import os

# MSS values a cookie can carry (3 bits), smallest first.
MSS_TABLE = (536, 1220, 1360, 1440, 1460, 4312, 8960, 65495)
_TICK = 64.0


class SynCookies:
    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def make(
        self, now: float, tuple4: bytes, client_isn: int, mss: int
    ) -> tuple[int, int]:
        """Return (our ISN, the MSS it encodes) for a SYN we will not remember."""
        tick = int(now // _TICK) & 0x1F
        index = 0
        for i, value in enumerate(MSS_TABLE):
            if value <= mss:
                index = i
        cookie = (tick << 27) | (index << 24) | self._hash(tuple4, client_isn, tick)
        return cookie, MSS_TABLE[index]

    def check(
        self, now: float, tuple4: bytes, client_isn: int, cookie: int
    ) -> int | None:
        """The MSS encoded in a returning cookie, or None if it is not ours."""
        tick = cookie >> 27
        age = (int(now // _TICK) - tick) & 0x1F
        if age > 1:
            return None
        if cookie & 0xFFFFFF != self._hash(tuple4, client_isn, tick):
            return None
        return MSS_TABLE[(cookie >> 24) & 0x7]

    def _hash(self, tuple4: bytes, client_isn: int, tick: int) -> int:
        material = tuple4 + client_isn.to_bytes(4, "big") + bytes([tick])
        digest = hashlib.blake2s(material, key=self._key, digest_size=3).digest()
        return int.from_bytes(digest, "big")
