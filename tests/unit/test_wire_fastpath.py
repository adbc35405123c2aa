"""build_tcp_packet's one-pack path for timestamps-only segments (the usual
data segment and ACK) against the generic codec: the same bytes as an IPv4
header (build_ipv4_header) followed by build_tcp, for every field value,
payload length (odd and even), ECN codepoint and TTL; and with
`partial_csum`, the same packet once the checksum is completed."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_wire_props import ADDR, U32, segments
from ustack.wire.checksum import checksum
from ustack.wire.ipv4 import (
    TcpPacketBuilder,
    build_ipv4_header,
    build_tcp_packet,
    with_full_tcp_checksum,
)
from ustack.wire.tcp import TcpSegment, build_tcp

# Any segment of test_wire_props with timestamps as its only option.
ts_segments = st.builds(
    replace,
    segments,
    mss=st.none(),
    wscale=st.none(),
    sack_permitted=st.just(False),
    sack_blocks=st.just(()),
    timestamp=st.tuples(U32, U32),
    ecn=st.integers(0, 3),
)


def generic(src: bytes, dst: bytes, seg: TcpSegment, ident: int, ttl: int) -> bytes:
    tcp = build_tcp(seg, src, dst)
    ip = bytearray(build_ipv4_header(src, dst, 6, len(tcp), ident, ttl))
    ip[1] = seg.ecn  # the TOS byte: build_ipv4_header writes 0
    ip[10:12] = b"\0\0"
    ip[10:12] = checksum(ip).to_bytes(2, "big")
    return bytes(ip) + tcp


@given(ts_segments, ADDR, ADDR, st.integers(0, 0x1FFFF), st.integers(1, 255))
def test_timestamps_only_packet_matches_the_generic_codec(
    seg: TcpSegment, src: bytes, dst: bytes, ident: int, ttl: int
) -> None:
    assert build_tcp_packet(src, dst, seg, ident, ttl) == generic(
        src, dst, seg, ident, ttl
    )


@given(ts_segments, ADDR, ADDR)
def test_timestamps_only_partial_checksum_completes_to_the_full_one(
    seg: TcpSegment, src: bytes, dst: bytes
) -> None:
    partial = build_tcp_packet(src, dst, seg, 7, partial_csum=True)
    full = build_tcp_packet(src, dst, seg, 7)
    assert len(partial) == len(full) and partial[:36] == full[:36]
    assert with_full_tcp_checksum(partial) == full


# TcpPacketBuilder: the stack's per-source builder against prefix +
# build_tcp_packet, for timestamps-only segments (its one-pack path) and for
# any segment (the fallback), with and without a prefix and partial checksums.
_PREFIXES = st.sampled_from([b"", bytes(10), bytes((1, 0, 0, 0, 0, 0, 20, 0, 16, 0))])


@given(ts_segments, ADDR, st.lists(ADDR, min_size=1, max_size=3), _PREFIXES,
       st.booleans(), st.integers(0, 0x1FFFF), st.integers(1, 255))
def test_builder_matches_build_tcp_packet_for_timestamps_only_segments(
    seg: TcpSegment, src: bytes, dsts: list[bytes], prefix: bytes, partial: bool,
    ident: int, ttl: int,
) -> None:
    builder = TcpPacketBuilder(src, ttl, ident, prefix, partial)
    for dst in dsts * 2:  # a peer's address sum cached after the first
        want = prefix + build_tcp_packet(src, dst, seg, ident, ttl, partial)
        assert builder.build(dst, seg) == want


@given(segments.map(lambda s: replace(s, ecn=s.seq & 3)), ADDR, ADDR, _PREFIXES,
       st.booleans())
def test_builder_matches_build_tcp_packet_for_any_segment(
    seg: TcpSegment, src: bytes, dst: bytes, prefix: bytes, partial: bool
) -> None:
    builder = TcpPacketBuilder(src, 64, 0, prefix, partial)
    assert builder.build(dst, seg) == prefix + build_tcp_packet(
        src, dst, seg, 0, 64, partial
    )


def test_builder_peer_cache_is_bounded() -> None:
    builder = TcpPacketBuilder(bytes(4))
    seg = TcpSegment(1, 2, 3, 4, 0x10, 5, b"", timestamp=(6, 7))
    for i in range(5000):
        dst = i.to_bytes(4, "big")
        assert builder.build(dst, seg) == build_tcp_packet(bytes(4), dst, seg, 0)
    assert len(builder._peers) <= 4096
