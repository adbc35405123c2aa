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
