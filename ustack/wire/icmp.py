"""ICMP (RFC 792) codec: echo replies, error messages and their quoted headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ustack.wire.checksum import checksum, verify
from ustack.wire.ipv4 import PROTO_ICMP, build_ipv4_header
from ustack.wire.tcp import WireError

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
ERROR_TYPES = frozenset(
    {DEST_UNREACHABLE, SOURCE_QUENCH, TIME_EXCEEDED, PARAMETER_PROBLEM}
)

# Destination unreachable codes used here (RFC 792, RFC 1122 3.2.2.1, RFC 1812).
NET_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTOCOL_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAGMENTATION_NEEDED = 4
# Time exceeded code 1 (RFC 792): fragment reassembly time exceeded.
REASSEMBLY_TIME_EXCEEDED = 1
# RFC 1812 4.3.2.3: an error quotes at most this much of an IPv4 packet in
# total (576 bytes, the minimum reassembly size), as Linux does.
ERROR_MAX_LEN = 576

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


def echo_message(
    typ: int, ident: int, seq: int, data: bytes = b"", code: int = 0
) -> bytes:
    """An echo request (8) or reply (0) message with its checksum."""
    csum = checksum(data, int.from_bytes(_HDR.pack(typ, code, 0, ident, seq), "big"))
    return _HDR.pack(typ, code, csum, ident, seq) + data


def echo_reply(request_payload: bytes | bytearray | memoryview) -> bytes:
    """Echo reply for an echo request message (RFC 792: same ident, seq, data).

    `request_payload` is the whole ICMP message; it is not re-verified
    (call parse_icmp first). Raises WireError("not_echo") if it is not a
    type-8 message.
    """
    if len(request_payload) < 8 or request_payload[0] != ECHO_REQUEST:
        raise WireError("not_echo")
    _, code, _, ident, seq = _HDR.unpack_from(request_payload)
    # Linux mirrors the request's code as well as its ident, seq and data.
    return echo_message(ECHO_REPLY, ident, seq, bytes(request_payload[8:]), code)


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


def error_message(
    typ: int, code: int, rest: int, original: bytes | memoryview
) -> bytes:
    """An ICMP error quoting `original` (its IP header and as much of its
    payload as fits in ERROR_MAX_LEN with our 28 bytes of headers; RFC 1122
    3.2.2 requires the header plus at least 8 bytes). `rest` is the 32-bit
    field after the checksum (e.g. the next-hop MTU of RFC 1191)."""
    quoted = bytes(original[: ERROR_MAX_LEN - 28])
    head = _HDR.pack(typ, code, 0, rest >> 16, rest & 0xFFFF)
    csum = checksum(head + quoted)
    return _HDR.pack(typ, code, csum, rest >> 16, rest & 0xFFFF) + quoted


@dataclass(slots=True)
class QuotedPacket:
    """The start of our own packet, quoted by an ICMP error (RFC 792)."""

    src: bytes
    dst: bytes
    proto: int
    total_len: int  # the quoted header's total length (RFC 1191 plateau guess)
    transport: bytes  # at least the first 8 bytes of its payload


def parse_quoted(data: bytes) -> QuotedPacket:
    """Split an error message's data (after its 8-byte header) into the quoted
    IPv4 header and transport bytes. Raises WireError("bad_quote")."""
    if len(data) < 20 or data[0] >> 4 != 4:
        raise WireError("bad_quote")
    hlen = (data[0] & 0xF) * 4
    if hlen < 20 or len(data) < hlen + 8:
        raise WireError("bad_quote")
    total = int.from_bytes(data[2:4], "big")
    return QuotedPacket(data[12:16], data[16:20], data[9], total, data[hlen:])
