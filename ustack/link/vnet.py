"""The virtio-net header that a TUN device opened with IFF_VNET_HDR puts in
front of every packet (struct virtio_net_hdr, 10 bytes, host byte order).

With it the kernel and the stack skip work for each other:
- checksum offload: a segment marked NEEDS_CSUM carries only the
  pseudo-header sum; whoever delivers it completes (or trusts) it;
- segmentation offload: one "super segment" of up to 64 KB with GSO_TCPV4
  and gso_size = MSS stands for many MSS-sized segments on the wire.
"""

from __future__ import annotations

import struct

from ustack.wire.checksum import checksum, ones_sum
from ustack.wire.ipv4 import with_full_tcp_checksum

LENGTH = 10
F_NEEDS_CSUM = 1  # checksum to be completed from csum_start (partial)
F_DATA_VALID = 2  # checksum already verified
GSO_NONE = 0
GSO_TCPV4 = 1
TCP_CSUM_OFFSET = 16  # offset of the checksum field in the TCP header

# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_HDR = struct.Struct("=BBHHHH")
PLAIN = bytes(LENGTH)  # no offload: full checksums inside the packet

# ioctl(TUNSETOFFLOAD) flags (linux/if_tun.h).
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02


def tcp_header(ip_hlen: int, tcp_hlen: int, payload_len: int, mss: int) -> bytes:
    """Header for an outgoing TCP packet with a partial checksum; segments
    longer than `mss` go as one GSO super segment."""
    if payload_len > mss:
        return _HDR.pack(
            F_NEEDS_CSUM, GSO_TCPV4, ip_hlen + tcp_hlen, mss, ip_hlen, TCP_CSUM_OFFSET
        )
    return _HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, ip_hlen, TCP_CSUM_OFFSET)


def checksum_trusted(header_flags: int) -> bool:
    """Whether the kernel vouches for the packet's checksum (local origin)."""
    return bool(header_flags & (F_NEEDS_CSUM | F_DATA_VALID))


# ----------------------------------------------------------------------
# Software segmentation: what a NIC (or the kernel's GSO) puts on the wire

_TCP_FIN_PSH = 0x09  # only the last piece of a segment keeps FIN and PSH
_TCP_CWR = 0x80  # only the first piece keeps CWR (RFC 3168 6.1.2)


def split_gso(frame: bytes, *, complete: bool) -> list[bytes]:
    """Cut one GSO_TCPV4 super segment (virtio-net header + IPv4 + TCP) into
    the packets of at most `gso_size` payload bytes a wire would carry, each
    with its own virtio-net header; anything else comes back unchanged.

    Each piece is a packet of its own, as Linux's tcp_gso_segment and
    inet_gso_segment make them: IPv4 total length, ID (one more per piece)
    and header checksum redone; the TCP header and options copied, the
    sequence number advanced, FIN and PSH on the last piece only, CWR on the
    first only. Checksums: `complete` gives each piece a full TCP checksum
    and flags 0 (the receiver verifies it, as for a packet off a wire: for
    packets into the stack); otherwise a partial one (pseudo-header sum) and
    NEEDS_CSUM, for the kernel to complete (packets written to the TUN).
    """
    if len(frame) < LENGTH + 40:
        return [frame]
    _, gso_type, _, gso_size, _, _ = _HDR.unpack_from(frame)
    ip = LENGTH
    ihl = (frame[ip] & 0x0F) * 4
    if (
        gso_type != GSO_TCPV4
        or gso_size == 0
        or frame[ip] >> 4 != 4
        or frame[ip + 9] != 6
        or ihl < 20
    ):
        return [frame]
    total = min(int.from_bytes(frame[ip + 2 : ip + 4], "big"), len(frame) - ip)
    tcp = ip + ihl
    thl = (frame[tcp + 12] >> 4) * 4
    data = tcp + thl
    end = ip + total
    if thl < 20 or data > end or end - data <= gso_size:
        return [_without_gso(frame, complete)]
    ip_hdr = frame[ip:tcp]
    tcp_hdr = frame[tcp:data]
    ident = int.from_bytes(frame[ip + 4 : ip + 6], "big")
    seq = int.from_bytes(frame[tcp + 4 : tcp + 8], "big")
    flags = frame[tcp + 13]
    addr_sum = int.from_bytes(frame[ip + 12 : ip + 20], "big")
    addr_sum = (addr_sum >> 32) + (addr_sum & 0xFFFFFFFF) + 6  # + protocol
    vhdr = PLAIN if complete else _HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, ihl, 16)
    pieces: list[bytes] = []
    offset = data
    first = True
    while offset < end:
        stop = min(offset + gso_size, end)
        last = stop == end
        payload = frame[offset:stop]
        iph = bytearray(ip_hdr)
        iph[2:4] = (ihl + thl + len(payload)).to_bytes(2, "big")
        iph[4:6] = ident.to_bytes(2, "big")
        iph[10:12] = b"\0\0"
        iph[10:12] = checksum(iph).to_bytes(2, "big")
        th = bytearray(tcp_hdr)
        th[4:8] = seq.to_bytes(4, "big")
        piece_flags = flags
        if not last:
            piece_flags &= ~_TCP_FIN_PSH
        if not first:
            piece_flags &= ~_TCP_CWR
        th[13] = piece_flags
        pseudo = addr_sum + thl + len(payload)
        th[16:18] = b"\0\0"
        if complete:
            csum = checksum(payload, ones_sum(th, pseudo))
        else:
            csum = pseudo % 0xFFFF or 0xFFFF
        th[16:18] = csum.to_bytes(2, "big")
        pieces.append(b"".join((vhdr, iph, th, payload)))
        seq = (seq + len(payload)) & 0xFFFFFFFF
        ident = (ident + 1) & 0xFFFF
        offset = stop
        first = False
    return pieces


def _without_gso(frame: bytes, complete: bool) -> bytes:
    """A "super" segment that fits one piece: drop the GSO request (and,
    with `complete`, finish its checksum)."""
    flags, _, _, _, start, off = _HDR.unpack_from(frame)
    if complete:
        return complete_checksum(frame)
    return _HDR.pack(flags, GSO_NONE, 0, 0, start, off) + frame[LENGTH:]


def complete_checksum(frame: bytes) -> bytes:
    """The frame with a full TCP checksum and flags 0 (no offload asked for):
    whoever receives it verifies the checksum, as for a packet off a wire."""
    flags, gso_type, _, _, _, _ = _HDR.unpack_from(frame)
    body = frame[LENGTH:]
    if flags & F_NEEDS_CSUM and len(body) >= 40 and body[9] == 6:
        body = with_full_tcp_checksum(body)
    if flags == 0 and gso_type == GSO_NONE:
        return frame
    return PLAIN + body
