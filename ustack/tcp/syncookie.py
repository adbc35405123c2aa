"""SYN cookies (RFC 4987 3.6): answer a SYN without keeping any state.

When a listener's SYN queue is full, the SYN-ACK's ISN itself encodes what we
need to rebuild the connection from the client's ACK:

    bits 31..27  t: a counter that ticks every 64 s (cookie age)
    bits 26..24  index of the MSS in MSS_TABLE
    bits 23..0   keyed hash of the 4-tuple, the client's ISN and t

A cookie is accepted for two ticks (64-128 s). When the SYN carries
timestamps, the SYN-ACK's TSval keeps the other SYN options in its low 6
bits, and the ACK's TSecr brings them back (Linux cookie_init_timestamp /
cookie_timestamp_decode):

    bits 5      ECN agreed (RFC 3168 6.1.1; Linux TS_OPT_ECN)
    bit 4       SACK-permitted (Linux TS_OPT_SACK)
    bits 3..0   the client's window scale, 15 for none

Without timestamps they are lost: no window scaling, SACK or ECN.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

from ustack.config import Settings
from ustack.tcp import ecn
from ustack.wire.tcp import ECE, TcpSegment

# MSS values a cookie can carry (3 bits), smallest first.
MSS_TABLE = (536, 1220, 1360, 1440, 1460, 4312, 8960, 65495)
_TICK = 64.0
# TSval bits that carry SYN options (Linux TSBITS, TS_OPT_*).
_TS_BITS = 6
_TS_MASK = (1 << _TS_BITS) - 1
_WSCALE_MASK = 0xF
_SACK = 1 << 4
_ECN = 1 << 5


class CookieOptions(NamedTuple):
    """The SYN options an ACK's TSecr brings back."""

    wscale: int | None  # the client's window scale, None if it had none
    sack: bool
    ecn: bool


def options_tsval(tsval_now: int, opts: CookieOptions) -> int:
    """Our TSval with its low bits replaced by `opts`, never later than
    `tsval_now` (Linux cookie_init_timestamp): later TSvals of the
    connection never go back from it."""
    bits = _WSCALE_MASK if opts.wscale is None else opts.wscale
    bits |= (_SACK if opts.sack else 0) | (_ECN if opts.ecn else 0)
    ts = (tsval_now & ~_TS_MASK & 0xFFFFFFFF) | bits
    if ts > tsval_now:
        ts = (ts - (1 << _TS_BITS)) & 0xFFFFFFFF
    return ts


def decode_options(tsecr: int) -> CookieOptions:
    """The options a cookie SYN-ACK's TSval carried (Linux
    cookie_timestamp_decode)."""
    wscale = tsecr & _WSCALE_MASK
    return CookieOptions(
        None if wscale == _WSCALE_MASK else wscale,
        bool(tsecr & _SACK),
        bool(tsecr & _ECN),
    )


def add_synack_options(
    reply: TcpSegment, syn: TcpSegment, settings: Settings, tsval_now: int
) -> None:
    """Give a cookie SYN-ACK what the cookie can bring back: with
    timestamps, window scaling, SACK-permitted and ECE as the TCB's SYN-ACK
    would (Linux tcp_conn_request: ECN on a cookie only with timestamps)."""
    if not settings.timestamps or syn.timestamp is None:
        return
    opts = CookieOptions(
        None if syn.wscale is None else min(syn.wscale, 14),  # RFC 7323 2.3
        settings.sack and syn.sack_permitted,
        ecn.server_accepts(settings.ecn, syn.flags, syn.ecn),
    )
    reply.timestamp = (options_tsval(tsval_now, opts), syn.timestamp[0])
    if opts.wscale is not None:
        reply.wscale = settings.wscale  # validated to at most 14 (RFC 7323 2.3)
    reply.sack_permitted = opts.sack
    if opts.ecn:
        reply.flags |= ECE  # the ECN-setup SYN-ACK (RFC 3168 6.1.1)


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
