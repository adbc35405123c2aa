"""IPv4 output of whole datagrams, fragmented to fit an MTU (RFC 791 3.2).

TCP never comes here (it sets DF and sizes segments by the MSS). UDP and
ICMP use it: a datagram that fits goes whole with DF set (Linux's default
IP_PMTUDISC_WANT, so path MTU discovery can learn from it); a larger one is
cut into fragments without DF, each payload but the last a multiple of 8.
"""

from __future__ import annotations

import struct

from ustack.wire.checksum import checksum

_HDR = struct.Struct("!BBHHHBBH4s4s")
_DF = 0x4000
_MF = 0x2000
HEADER_LEN = 20


def _header(
    src: bytes, dst: bytes, proto: int, length: int, ident: int, frag: int, ttl: int
) -> bytes:
    total = HEADER_LEN + length
    raw = _HDR.pack(0x45, 0, total, ident, frag, ttl, proto, 0, src, dst)
    return _HDR.pack(0x45, 0, total, ident, frag, ttl, proto, checksum(raw), src, dst)


def ipv4_packets(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ident: int,
    mtu: int,
    ttl: int = 64,
) -> list[bytes]:
    """The packets carrying `payload` over a path of `mtu` bytes."""
    ident &= 0xFFFF
    if HEADER_LEN + len(payload) <= mtu:
        return [_header(src, dst, proto, len(payload), ident, _DF, ttl) + payload]
    step = (mtu - HEADER_LEN) // 8 * 8
    if step <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment")
    packets = []
    view = memoryview(payload)
    for offset in range(0, len(payload), step):
        piece = view[offset : offset + step]
        more = _MF if offset + step < len(payload) else 0
        header = _header(src, dst, proto, len(piece), ident, more | offset // 8, ttl)
        packets.append(header + piece)
    return packets
