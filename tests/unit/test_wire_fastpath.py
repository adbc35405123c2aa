"""build_tcp_packet's one-pack path for timestamps-only segments (the usual
data segment and ACK) against the generic codec: the same bytes as an IPv4
header (build_ipv4_header) followed by build_tcp, for every field value,
payload length (odd and even), ECN codepoint and TTL; and with
`partial_csum`, the same packet once the checksum is completed. parse_tcp's
one-unpack path for the same segments against the generic parser."""

from __future__ import annotations

import struct
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_wire_props import ADDR, U32, segments
from ustack.wire.checksum import checksum, pseudo_header_sum
from ustack.wire.checksum import verify as csum_verify
from ustack.wire.ipv4 import build_ipv4_header, build_tcp_packet, with_full_tcp_checksum
from ustack.wire.tcp import TcpSegment, WireError, _parse_options, build_tcp, parse_tcp

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


def reference_parse(
    buf: bytes, src: bytes, dst: bytes, verify: bool
) -> TcpSegment:
    """parse_tcp without its timestamps shortcut: RFC 9293 3.1 header, the
    generic option parser, checksum by ustack.wire.checksum.verify."""
    n = len(buf)
    if n < 20:
        raise WireError("short")
    hlen = (buf[12] >> 4) << 2
    if hlen < 20 or hlen > n:
        raise WireError("bad_doff")
    if verify and not csum_verify(buf, pseudo_header_sum(src, dst, 6, n)):
        raise WireError("bad_tcp_csum")
    sport, dport, seq, ack, _, flags, win, _, urg = struct.unpack_from(
        "!HHIIBBHHH", buf
    )
    seg = TcpSegment(sport, dport, seq, ack, flags, win, buf[hlen:], urg_ptr=urg)
    _parse_options(buf, hlen, seg)
    return seg


def _outcome(fn, *args) -> object:  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except WireError as e:
        return ("WireError", e.reason)


# Timestamps-only headers as built, then bytes of them changed at random
# (data offset, option kinds, reserved bits, the checksum), cut short or not.
@given(ts_segments, ADDR, ADDR, st.lists(st.tuples(st.integers(0, 40),
       st.integers(0, 255)), max_size=3), st.integers(0, 60), st.booleans(),
       st.booleans(), st.one_of(st.none(), st.integers(0, 255)))
def test_timestamps_only_parse_matches_the_generic_parser(
    seg: TcpSegment, src: bytes, dst: bytes, changes: list[tuple[int, int]],
    cut: int, verify: bool, view: bool, doff: int | None,
) -> None:
    raw = bytearray(build_tcp(seg, src, dst))
    if doff is not None:
        raw[12] = doff  # data offset and reserved bits
    for i, v in changes:
        if i < len(raw):
            raw[i] = v
    if cut < 33:
        raw = raw[:cut]
    buf = bytes(raw)
    arg: bytes | memoryview = memoryview(buf) if view else buf
    got = _outcome(parse_tcp, arg, src, dst, verify)
    want = _outcome(reference_parse, buf, src, dst, verify)
    assert got == want
    if isinstance(got, TcpSegment):
        assert type(got.payload) is bytes
