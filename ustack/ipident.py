"""IPv4 Identification values that tell an observer nothing (RFC 6864, 7739).

Datagrams with DF set are atomic (RFC 6864 4.1): their ID may be anything,
and ustack sends 0, as Linux does ("IP ID sequence class: All zeros" to
nmap). One global incrementing counter would let anyone who can elicit a
packet count everything else we send: that is what `nmap -sI` (idle scan)
uses a host as a "zombie" for.

Datagrams that may be fragmented need IDs that are unique per (source,
destination) for the reassembly timeout: they come from one of many
counters picked by a keyed hash of the destination, each advanced by a
small random step (Linux ip_idents_reserve does the same), so watching the
IDs of one destination says nothing about traffic to another.
"""

from __future__ import annotations

import hashlib
import os
import random

ATOMIC_ID = 0  # the ID of every DF datagram (RFC 6864 4.1)
_BUCKETS = 2048
_MAX_STEP = 8


class IpIdents:
    __slots__ = ("_key", "_counters", "_rng")

    def __init__(self, key: bytes | None = None, seed: int | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self._counters = [self._rng.randrange(1 << 16) for _ in range(_BUCKETS)]

    def __call__(self, dst: bytes) -> int:
        """The ID for the next fragmentable datagram to `dst`."""
        i = self.bucket(dst)
        ident = (self._counters[i] + self._rng.randint(1, _MAX_STEP)) & 0xFFFF
        self._counters[i] = ident
        return ident

    def bucket(self, dst: bytes) -> int:
        """Which counter `dst` uses (destinations that share one, 1 in 2048,
        see each other's traffic, as with Linux's ip_idents)."""
        digest = hashlib.blake2s(dst, key=self._key, digest_size=4).digest()
        return int.from_bytes(digest, "big") % _BUCKETS
