"""UDP header codec (RFC 768) over IPv4, checksum per RFC 1122 4.1.3.4."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ustack.wire.checksum import checksum, pseudo_header_sum, verify
from ustack.wire.tcp import WireError

PROTO_UDP = 17
HEADER_LEN = 8
# The largest payload one IPv4 datagram can carry (65535 - 20 - 8).
MAX_PAYLOAD = 65535 - 20 - HEADER_LEN

_HDR = struct.Struct("!HHHH")  # source port, destination port, length, checksum


@dataclass(slots=True)
class UdpDatagram:
    src_port: int
    dst_port: int
    payload: bytes


def parse_udp(
    buf: bytes | bytearray | memoryview,
    src_ip: bytes,
    dst_ip: bytes,
    verify_csum: bool = True,
) -> UdpDatagram:
    """Parse the IP payload of a UDP datagram.

    Raises WireError: short, bad_udp_len, bad_udp_csum. A zero checksum
    field means the sender computed none (RFC 768); bytes past the UDP length
    (IP padding) are ignored.
    """
    n = len(buf)
    if n < HEADER_LEN:
        raise WireError("short")
    sport, dport, length, csum = _HDR.unpack_from(buf)
    if length < HEADER_LEN or length > n:
        raise WireError("bad_udp_len")
    mv = memoryview(buf)[:length]
    initial = pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length)
    if csum and verify_csum and not verify(mv, initial):
        raise WireError("bad_udp_csum")
    return UdpDatagram(sport, dport, bytes(mv[HEADER_LEN:]))


def build_udp(
    src_port: int, dst_port: int, payload: bytes, src_ip: bytes, dst_ip: bytes
) -> bytes:
    """UDP header + payload with its checksum (always computed, RFC 1122
    4.1.3.4; a computed 0 is sent as 0xFFFF, RFC 768)."""
    length = HEADER_LEN + len(payload)
    header = _HDR.pack(src_port, dst_port, length, 0)
    csum = checksum(
        header + payload, pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length)
    )
    return _HDR.pack(src_port, dst_port, length, csum or 0xFFFF) + payload
