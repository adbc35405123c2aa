"""Offload helpers: virtio-net headers and completing partial checksums."""

from __future__ import annotations

import struct

from scapy.compat import raw
from scapy.layers.inet import IP, TCP

from ustack.link import vnet
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4, with_full_tcp_checksum
from ustack.wire.tcp import ACK, PSH, TcpSegment, WireError, parse_tcp

SRC = bytes([10, 203, 0, 2])
DST = bytes([10, 203, 0, 1])


def segment(payload: bytes) -> TcpSegment:
    return TcpSegment(80, 40000, 123456, 654321, ACK | PSH, 500, payload)


def test_partial_checksum_holds_the_pseudo_header_sum() -> None:
    payload = bytes(range(256)) * 10
    packet = build_tcp_packet(SRC, DST, segment(payload), 7, partial_csum=True)
    field = int.from_bytes(packet[36:38], "big")
    tcp_len = len(packet) - 20
    pseudo = int.from_bytes(SRC, "big") + int.from_bytes(DST, "big") + 6 + tcp_len
    assert field == pseudo % 0xFFFF
    # A partial checksum is not a valid one ...
    ip = parse_ipv4(packet)
    try:
        parse_tcp(ip.payload, ip.src, ip.dst)
        raise AssertionError("partial checksum verified as complete")
    except WireError as exc:
        assert exc.reason == "bad_tcp_csum"
    # ... until completed, which gives exactly the fully built packet.
    full = build_tcp_packet(SRC, DST, segment(payload), 7)
    assert with_full_tcp_checksum(packet) == full
    reparsed = IP(with_full_tcp_checksum(packet))
    del reparsed[TCP].chksum
    assert IP(raw(reparsed))[TCP].chksum == IP(full)[TCP].chksum


def test_tcp_header_asks_for_gso_only_beyond_the_mss() -> None:
    small = vnet.tcp_header(20, 20, 1000, 1460)
    big = vnet.tcp_header(20, 32, 64000, 1460)
    fields = struct.Struct("=BBHHHH")
    assert fields.unpack(small) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 0, 0, 20, 16)
    assert fields.unpack(big) == (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 52, 1460, 20, 16)
    assert len(small) == len(big) == vnet.LENGTH


def test_only_kernel_vouched_checksums_are_trusted() -> None:
    assert vnet.checksum_trusted(vnet.F_NEEDS_CSUM)
    assert vnet.checksum_trusted(vnet.F_DATA_VALID)
    assert not vnet.checksum_trusted(0)
