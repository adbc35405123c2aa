"""IPv4 header codec (RFC 791 3.1) and the IPv4+TCP send path."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ustack.wire.checksum import checksum, pseudo_header_sum
from ustack.wire.tcp import (
    TcpSegment,
    WireError,
    _encode,
    _options,
)

PROTO_ICMP = 1
PROTO_TCP = 6

_HDR = struct.Struct("!BBHHHBBH4s4s")
_HDR_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")  # IPv4 + fixed TCP header
# ... + NOP NOP TIMESTAMP: the usual data segment and ACK, in one pack.
_HDR_TCP_TS = struct.Struct("!BBHHHBBH4s4sHHIIBBHHHIII")
_TS_LEAD = 0x0101080A  # NOP, NOP, kind 8, length 10 (RFC 7323 Appendix A)
_DF = 0x4000
_MF_OFFSET = 0x3FFF  # MF flag | fragment offset


@dataclass(slots=True)
class Ipv4Packet:
    src: bytes
    dst: bytes
    proto: int
    ttl: int
    ident: int
    payload: memoryview | bytes  # buf[header_len:total_len], no copy
    header_len: int
    total_len: int
    frag: int = 0  # MF flag | fragment offset in 8-byte units (RFC 791 3.1)
    ecn: int = 0  # the two ECN bits of the TOS byte (RFC 3168 5)


def parse_ipv4(
    buf: bytes | bytearray | memoryview, fragments: bool = False
) -> Ipv4Packet:
    """Validate and split an IPv4 packet; options are skipped.

    Raises WireError: short, not_ipv4, bad_ihl, bad_len, bad_ip_csum, and
    fragment unless `fragments` (then `frag` tells MF and the offset).
    Bytes past total_len (link padding) are dropped.
    """
    n = len(buf)
    if n < 20:
        raise WireError("short")
    vihl, tos, total, ident, frag, ttl, proto, _, src, dst = _HDR.unpack_from(buf)
    if vihl >> 4 != 4:
        raise WireError("not_ipv4")
    hlen = (vihl & 0xF) << 2
    if hlen < 20 or hlen > n:
        raise WireError("bad_ihl")
    if total < hlen or total > n:
        raise WireError("bad_len")
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    # checksum.verify by one reduction: the version nibble makes the header
    # nonzero, so a residue of 0 means the sum 0xFFFF (RFC 1071).
    if int.from_bytes(mv[:hlen], "big") % 0xFFFF:
        raise WireError("bad_ip_csum")
    frag &= _MF_OFFSET
    if frag and not fragments:
        raise WireError("fragment")
    return Ipv4Packet(
        src, dst, proto, ttl, ident, mv[hlen:total], hlen, total, frag, tos & 3
    )


def parse_tcp_packet(
    buf: bytes | bytearray | memoryview, verify: bool = True
) -> tuple[bytes, bytes, TcpSegment] | None:
    """(src, dst, segment) of the usual TCP packet, in one unpack: a 20-byte
    IPv4 header, not a fragment, and NOP NOP TIMESTAMP as the only TCP
    option (RFC 7323 Appendix A), checksums good (the TCP one only with
    `verify`). None for anything else, which parse_ipv4 and parse_tcp then
    take apart (and name what is wrong). The result equals theirs: the
    segment's `ecn` is the IP header's ECN field."""
    if len(buf) < 52:
        return None
    (vihl, tos, total, _, frag, _, proto, _, src, dst, sport, dport, seq, ack,
     doff, flags, win, _, urg, lead, tsval, tsecr) = _HDR_TCP_TS.unpack_from(buf)
    if (
        vihl != 0x45
        or proto != PROTO_TCP
        or doff >> 4 != 8
        or lead != _TS_LEAD
        or frag & _MF_OFFSET
        or total < 52
        or total > len(buf)
    ):
        return None
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if int.from_bytes(mv[:20], "big") % 0xFFFF:
        return None  # bad IP checksum (parse_ipv4 counts it)
    if verify:
        # parse_tcp's check: RFC 1071 by one reduction, pseudo-header added.
        n = total - 20
        c = int.from_bytes(mv[20:total], "big") % 0xFFFF
        if n & 1:
            c <<= 8
        c += int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTO_TCP + n
        if c % 0xFFFF:
            return None
    return src, dst, TcpSegment(
        sport, dport, seq, ack, flags, win, bytes(mv[52:total]),
        None, None, False, (), (tsval, tsecr), urg, tos & 3,
    )


def _ip_csum(
    total: int, ident: int, ttl_proto: int, addr_sum: int, tos: int = 0
) -> int:
    s = (0x4500 + tos + total + ident + _DF + ttl_proto + addr_sum) % 0xFFFF
    return 0xFFFF - s if s else 0


def build_ipv4_header(
    src: bytes, dst: bytes, proto: int, payload_len: int, ident: int, ttl: int = 64
) -> bytes:
    """20-byte header, DF set, no options. `ident` is taken mod 2**16."""
    total = 20 + payload_len
    ident &= 0xFFFF
    addr_sum = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    csum = _ip_csum(total, ident, ttl << 8 | proto, addr_sum)
    return _HDR.pack(0x45, 0, total, ident, _DF, ttl, proto, csum, src, dst)


def build_tcp_packet(
    src: bytes,
    dst: bytes,
    seg: TcpSegment,
    ident: int,
    ttl: int = 64,
    partial_csum: bool = False,
) -> bytes:
    """Complete IPv4+TCP packet: both headers in one pack, both checksums
    summed from field values (no re-read of packed bytes).

    `seg.window` is the raw 16-bit field (already scaled and clamped);
    `ident` is taken mod 2**16; other fields as for `build_tcp`; `seg.ecn`
    goes into the TOS byte's ECN bits (RFC 3168 5).
    With `partial_csum` the TCP checksum field holds only the pseudo-header
    sum, for a device that completes it (virtio NEEDS_CSUM, CHECKSUM_PARTIAL).
    """
    addr_sum = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    payload = seg.payload
    plen = len(payload)
    ts = seg.timestamp
    tail: tuple[int, ...]
    if (
        ts is not None
        and seg.mss is None
        and seg.wscale is None
        and not seg.sack_permitted
        and not seg.sack_blocks
    ):
        # The usual data segment or ACK: timestamps alone go into the same
        # pack as the headers; no option bytes are built.
        opts, tcp_hlen, packer, tail = b"", 32, _HDR_TCP_TS, (_TS_LEAD, *ts)
        if not partial_csum:
            tcp_csum = _ts_only_csum(seg, ts, addr_sum + PROTO_TCP + 32 + plen)
    else:
        packer, tail = _HDR_TCP, ()
        if partial_csum:
            opts, tcp_hlen = _options(seg)
        else:
            opts, tcp_hlen, tcp_csum = _encode(seg, addr_sum)
    if partial_csum:
        tcp_csum = (addr_sum + PROTO_TCP + tcp_hlen + plen) % 0xFFFF or 0xFFFF
    total = 20 + tcp_hlen + plen
    ident &= 0xFFFF
    tos = seg.ecn
    # _ip_csum, inlined (per packet).
    ip_s = (
        0x4500 + tos + total + ident + _DF + (ttl << 8 | PROTO_TCP) + addr_sum
    ) % 0xFFFF
    hdr = packer.pack(
        0x45,
        tos,
        total,
        ident,
        _DF,
        ttl,
        PROTO_TCP,
        0xFFFF - ip_s if ip_s else 0,
        src,
        dst,
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        tcp_hlen << 2,
        seg.flags,
        seg.window,
        tcp_csum,
        seg.urg_ptr,
        *tail,
    )
    if opts:
        return b"".join((hdr, opts, payload))
    return hdr + payload if plen else hdr


def _ts_only_csum(seg: TcpSegment, ts: tuple[int, int], pseudo: int) -> int:
    """The TCP checksum of a segment whose only option is NOP NOP TS,
    summed from the field values: every field starts on a 16-bit boundary
    and 2**16 == 1 (mod 0xFFFF), so a 32-bit field counts as its value
    (RFC 1071). `pseudo` is the pseudo-header's sum."""
    payload = seg.payload
    p = int.from_bytes(payload, "big") % 0xFFFF if payload else 0
    if len(payload) & 1:
        p <<= 8  # RFC 9293 3.1: pad with a zero byte
    s = (
        p
        + pseudo
        + seg.src_port
        + seg.dst_port
        + seg.seq
        + seg.ack
        + (8 << 12)  # data offset: 8 words
        + seg.flags
        + seg.window
        + seg.urg_ptr
        + _TS_LEAD
        + ts[0]
        + ts[1]
    ) % 0xFFFF  # > 0: the pseudo-header's protocol term is nonzero
    return 0xFFFF - s if s else 0


class TcpPacketBuilder:
    """`build_tcp_packet` for one source address, TTL and IP ID, with a
    fixed `prefix` in front (e.g. a virtio-net header), as a stack sends
    every TCP segment: `prefix + build_tcp_packet(src, dst, seg, ident,
    ttl, partial_csum)`, byte for byte.

    The usual data segment and ACK (NOP NOP TIMESTAMP as the only option,
    RFC 7323 Appendix A) skips the generic builder: the source's share of
    both checksums is summed once here, the destination's once per peer
    address (bytes cache their hash), and prefix, IPv4 header, TCP header
    and timestamp option go into one pack. Anything else (SYN, SACK, no
    timestamps) takes the generic path.
    """

    __slots__ = ("src", "ttl", "ident", "prefix", "partial_csum", "_pack",
                 "_ip_base", "_src_int", "_peers")

    def __init__(
        self,
        src: bytes,
        ttl: int = 64,
        ident: int = 0,
        prefix: bytes = b"",
        partial_csum: bool = False,
    ) -> None:
        self.src = src
        self.ttl = ttl
        self.ident = ident & 0xFFFF
        self.prefix = prefix
        self.partial_csum = partial_csum
        self._pack = struct.Struct(
            f"!{len(prefix)}sBBHHHBBH4s4sHHIIBBHHHIII"
        ).pack
        # IPv4 checksum terms that never change: version/IHL, ID, DF and
        # TTL/protocol (RFC 791 3.1, RFC 1071).
        self._ip_base = 0x4500 + self.ident + _DF + (ttl << 8 | PROTO_TCP)
        self._src_int = int.from_bytes(src, "big")
        self._peers: dict[bytes, int] = {}  # dst -> int(src) + int(dst)

    def _addr_sum(self, dst: bytes) -> int:
        peers = self._peers
        if len(peers) >= 4096:
            peers.clear()  # bounded: many peers only cost a recomputation
        s = peers[dst] = self._src_int + int.from_bytes(dst, "big")
        return s

    def build(self, dst: bytes, seg: TcpSegment) -> bytes:
        ts = seg.timestamp
        if (
            ts is None
            or seg.sack_blocks
            or seg.mss is not None
            or seg.wscale is not None
            or seg.sack_permitted
        ):
            return self.prefix + build_tcp_packet(
                self.src, dst, seg, self.ident, self.ttl, self.partial_csum
            )
        addr_sum = self._peers.get(dst)
        if addr_sum is None:
            addr_sum = self._addr_sum(dst)
        payload = seg.payload
        plen = len(payload)
        tsval, tsecr = ts
        sport = seg.src_port
        dport = seg.dst_port
        seq = seg.seq
        ack = seg.ack
        flags = seg.flags
        window = seg.window
        urg = seg.urg_ptr
        pseudo = addr_sum + PROTO_TCP + 32 + plen
        if self.partial_csum:  # offload: the device completes the checksum
            tcp_csum = pseudo % 0xFFFF or 0xFFFF
        else:
            tcp_csum = _ts_only_csum(seg, ts, pseudo)
        total = 52 + plen
        tos = seg.ecn
        ip_s = (self._ip_base + addr_sum + tos + total) % 0xFFFF
        hdr = self._pack(
            self.prefix, 0x45, tos, total, self.ident, _DF, self.ttl, PROTO_TCP,
            0xFFFF - ip_s if ip_s else 0, self.src, dst, sport, dport, seq, ack,
            0x80, flags, window, tcp_csum, urg, _TS_LEAD, tsval, tsecr,
        )
        return hdr + payload if plen else hdr


def with_full_tcp_checksum(packet: bytes | memoryview) -> bytes:
    """A copy of an IPv4+TCP packet whose TCP checksum is computed in full.

    For captures of offloaded traffic, whose checksums are partial (only the
    pseudo-header sum) until a device completes them.
    """
    out = bytearray(packet)
    ihl = (out[0] & 0x0F) * 4
    total = int.from_bytes(out[2:4], "big")
    if out[9] != PROTO_TCP or total > len(out) or total < ihl + 20:
        return bytes(out)
    out[ihl + 16 : ihl + 18] = b"\0\0"
    initial = pseudo_header_sum(
        bytes(out[12:16]), bytes(out[16:20]), PROTO_TCP, total - ihl
    )
    csum = checksum(memoryview(out)[ihl:total], initial)
    out[ihl + 16 : ihl + 18] = csum.to_bytes(2, "big")
    return bytes(out)
