"""Initial sequence numbers (RFC 6528): ISN = M + F(4-tuple, secret).

M is a clock ticking every 4 microseconds; F is a keyed hash, so the ISN of
one connection tells nothing about another's.
"""

from __future__ import annotations

import hashlib
import os


class IsnGenerator:
    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def __call__(
        self,
        now: float,
        local_ip: bytes,
        local_port: int,
        remote_ip: bytes,
        remote_port: int,
    ) -> int:
        material = (
            local_ip
            + remote_ip
            + local_port.to_bytes(2, "big")
            + remote_port.to_bytes(2, "big")
        )
        digest = hashlib.blake2s(material, key=self._key, digest_size=4).digest()
        ticks = int(now * 250_000)  # RFC 6528 3: a 4-microsecond timer
        return (ticks + int.from_bytes(digest, "big")) & 0xFFFFFFFF
