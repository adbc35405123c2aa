"""ICMP (RFC 792) parsing and echo replies, enough to answer ping."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ustack.wire.checksum import checksum, verify
from ustack.wire.ipv4 import PROTO_ICMP, build_ipv4_header
from ustack.wire.tcp import WireError

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8

_HDR = struct.Struct("!BBHHH")  # type, code, checksum, ident, seq


@dataclass(slots=True)
class IcmpMessage:
    type: int
    code: int
    ident: int  # echo identifier (RFC 792 p.14); first half of "rest" otherwise
    seq: int  # echo sequence number; second half of "rest" otherwise
    data: bytes


def parse_icmp(buf: bytes | bytearray | memoryview) -> IcmpMessage:
    """Parse an ICMP message (the IP payload). Raises WireError: short,
    bad_icmp_csum."""
    if len(buf) < 8:
        raise WireError("short")
    if not verify(buf):
        raise WireError("bad_icmp_csum")
    typ, code, _, ident, seq = _HDR.unpack_from(buf)
    return IcmpMessage(typ, code, ident, seq, bytes(buf[8:]))


def echo_message(typ: int, ident: int, seq: int, data: bytes = b"") -> bytes:
    """An echo request (8) or reply (0) message with its checksum."""
    csum = checksum(data, int.from_bytes(_HDR.pack(typ, 0, 0, ident, seq), "big"))
    return _HDR.pack(typ, 0, csum, ident, seq) + data


def echo_reply(request_payload: bytes | bytearray | memoryview) -> bytes:
    """Echo reply for an echo request message (RFC 792: same ident, seq, data).

    `request_payload` is the whole ICMP message; it is not re-verified
    (call parse_icmp first). Raises WireError("not_echo") if it is not a
    type-8 message.
    """
    if len(request_payload) < 8 or request_payload[0] != ECHO_REQUEST:
        raise WireError("not_echo")
    _, _, _, ident, seq = _HDR.unpack_from(request_payload)
    return echo_message(ECHO_REPLY, ident, seq, bytes(request_payload[8:]))


def build_icmp_packet(
    src: bytes, dst: bytes, message: bytes, ident: int, ttl: int = 64
) -> bytes:
    """IPv4 packet carrying an already-built ICMP `message`."""
    return build_ipv4_header(src, dst, PROTO_ICMP, len(message), ident, ttl) + message


def echo_reply_packet(
    src: bytes, dst: bytes, request_payload: bytes | memoryview, ident: int
) -> bytes:
    """IPv4 echo reply from `src` (us) to `dst` (the pinger)."""
    return build_icmp_packet(src, dst, echo_reply(request_payload), ident)
