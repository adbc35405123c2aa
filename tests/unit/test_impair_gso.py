"""Impairment with offload: GSO super segments are cut into wire packets
(`vnet.split_gso`) before loss, rules, rate and corruption act on them."""

from __future__ import annotations

import struct

import pytest
import trio
from trio.testing import MockClock

from ustack.link import vnet
from ustack.link.impair import ImpairedLink, Impairment, parse_rule
from ustack.link.memory import MemoryLink
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4, with_full_tcp_checksum
from ustack.wire.tcp import ACK, CWR, FIN, PSH, TcpSegment, WireError, parse_tcp

SRC = bytes([10, 203, 0, 2])
DST = bytes([10, 203, 0, 1])
MSS = 1448
FIELDS = struct.Struct("=BBHHHH")


def segment(payload: bytes, seq: int = 1000, flags: int = ACK | PSH) -> TcpSegment:
    return TcpSegment(
        80, 40000, seq, 777, flags, 500, payload, timestamp=(123456, 654321)
    )


def outgoing(seg: TcpSegment, ident: int = 9) -> bytes:
    """A frame as the stack writes it with offload (partial csum, GSO)."""
    packet = build_tcp_packet(SRC, DST, seg, ident, partial_csum=True)
    plen = len(seg.payload)
    return vnet.tcp_header(20, len(packet) - 20 - plen, plen, MSS) + packet


def incoming(seg: TcpSegment, ident: int = 9) -> bytes:
    """A frame as the kernel hands it over: NEEDS_CSUM, GSO_TCPV4."""
    packet = build_tcp_packet(SRC, DST, seg, ident, partial_csum=True)
    hdr_len = len(packet) - len(seg.payload)
    header = FIELDS.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, hdr_len, MSS, 20, 16)
    return header + packet


def payload_of(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def parsed(piece: bytes) -> TcpSegment:
    ip = parse_ipv4(piece[vnet.LENGTH :])  # verifies the IPv4 header checksum
    return parse_tcp(ip.payload, ip.src, ip.dst, verify=False)


def test_outgoing_super_segment_becomes_mss_packets_for_the_kernel() -> None:
    data = payload_of(45 * MSS + 100)
    seg = segment(data, flags=ACK | PSH | FIN)
    pieces = vnet.split_gso(outgoing(seg), complete=False)
    assert len(pieces) == 46
    offset = 0
    for i, piece in enumerate(pieces):
        assert FIELDS.unpack_from(piece) == (
            vnet.F_NEEDS_CSUM,
            vnet.GSO_NONE,
            0,
            0,
            20,
            16,
        )
        size = MSS if i < 45 else 100
        last = i == 45
        expected = segment(
            data[offset : offset + size],
            seq=1000 + offset,
            flags=ACK | PSH | FIN if last else ACK,
        )
        # Byte for byte what the stack itself would build for that piece
        # (IP length, ID, header checksum, seq, options, partial checksum).
        assert piece[vnet.LENGTH :] == build_tcp_packet(
            SRC, DST, expected, 9 + i, partial_csum=True
        )
        # ... and valid once the kernel completes the checksum.
        full = with_full_tcp_checksum(piece[vnet.LENGTH :])
        ip = parse_ipv4(full)
        assert parse_tcp(ip.payload, ip.src, ip.dst).payload == expected.payload
        offset += size
    assert b"".join(parsed(p).payload for p in pieces) == data


def test_incoming_super_segment_becomes_packets_with_full_checksums() -> None:
    data = payload_of(10 * MSS)
    seg = segment(data, seq=2**32 - 3 * MSS, flags=ACK | PSH | CWR)
    pieces = vnet.split_gso(incoming(seg, ident=0xFFFE), complete=True)
    assert len(pieces) == 10
    got = b""
    for i, piece in enumerate(pieces):
        assert piece[: vnet.LENGTH] == vnet.PLAIN  # nothing vouched for
        assert not vnet.checksum_trusted(piece[0])
        ip = parse_ipv4(piece[vnet.LENGTH :])
        assert ip.ident == (0xFFFE + i) & 0xFFFF
        assert ip.total_len == len(piece) - vnet.LENGTH
        tcp = parse_tcp(ip.payload, ip.src, ip.dst)  # verifies the checksum
        assert tcp.seq == (2**32 - 3 * MSS + i * MSS) % 2**32  # wraps
        assert tcp.timestamp == (123456, 654321)
        assert bool(tcp.flags & CWR) == (i == 0)
        assert bool(tcp.flags & PSH) == (i == 9)
        got += tcp.payload
    assert got == data


def test_frames_without_gso_pass_unchanged() -> None:
    small = outgoing(segment(payload_of(MSS)))
    assert vnet.split_gso(small, complete=False) == [small]
    plain = vnet.PLAIN + build_tcp_packet(SRC, DST, segment(b"x"), 1)
    assert vnet.split_gso(plain, complete=True) == [plain]


def test_gso_frame_that_fits_one_packet_loses_the_gso_request() -> None:
    frame = incoming(segment(payload_of(100)))
    (piece,) = vnet.split_gso(frame, complete=True)
    assert piece[: vnet.LENGTH] == vnet.PLAIN
    ip = parse_ipv4(piece[vnet.LENGTH :])
    assert parse_tcp(ip.payload, ip.src, ip.dst).payload == payload_of(100)


class VnetLink(MemoryLink):
    """A memory link whose packets carry virtio-net headers (like TunLink
    with offload); keeps what is written."""

    vnet_hdr = True

    def __init__(self) -> None:
        super().__init__(1500)
        self.sent = []


async def test_impaired_link_counts_and_drops_wire_packets(
    autojump_clock: MockClock,
) -> None:
    inner = VnetLink()
    link = ImpairedLink(
        inner,
        outbound=Impairment(loss=0.2, seed=3),
        rules=[parse_rule("fin:out:1")],
    )
    assert link.vnet_hdr  # the stack keeps using offload over it
    data = payload_of(40 * MSS)
    link.write(outgoing(segment(data, flags=ACK | PSH | FIN)))
    await trio.sleep(0)
    assert link.counters["out.gso_split"] == 1
    assert link.counters["out.packets"] == 40
    assert link.counters["out.rule_drop"] == 1  # the last piece: the FIN
    lost = link.counters["out.loss"]
    assert 0 < lost < 39
    assert inner.sent is not None and len(inner.sent) == 39 - lost
    for piece in inner.sent:
        seg = parsed(piece)
        assert not seg.flags & FIN and len(seg.payload) == MSS


async def test_corrupted_piece_fails_the_receivers_checksum(
    autojump_clock: MockClock,
) -> None:
    inner = VnetLink()
    link = ImpairedLink(inner, inbound=Impairment(corrupt=1.0, seed=1))
    inner.inject(incoming(segment(payload_of(3 * MSS))))
    pieces = link.read_batch()
    assert len(pieces) == 3
    for piece in pieces:
        assert not vnet.checksum_trusted(piece[0])
        ip = parse_ipv4(piece[vnet.LENGTH :])
        with pytest.raises(WireError):  # the stack counts and drops it
            parse_tcp(ip.payload, ip.src, ip.dst)


def test_without_impairment_nothing_is_cut() -> None:
    inner = VnetLink()
    link = ImpairedLink(inner, inbound=Impairment(loss=0.5, seed=1))
    frame = outgoing(segment(payload_of(10 * MSS)))
    link.write(frame)  # outbound passes through untouched
    assert inner.sent == [frame]
