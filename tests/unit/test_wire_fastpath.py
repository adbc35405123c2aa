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
from ustack.wire.ipv4 import build_ipv4_header, build_tcp_packet, with_full_tcp_checksum
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
