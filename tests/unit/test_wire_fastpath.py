"""build_tcp_packet's one-pack path for timestamps-only segments (the usual
data segment and ACK) against the generic codec: the same bytes as an IPv4
header (build_ipv4_header) followed by build_tcp, for every field value,
payload length (odd and even), ECN codepoint and TTL; and with
`partial_csum`, the same packet once the checksum is completed. parse_tcp's
one-unpack path for the same segments against the generic parser."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_wire_props import ADDR, U32, segments
from ustack.wire.checksum import checksum, pseudo_header_sum
from ustack.wire.checksum import verify as csum_verify
from ustack.wire.ipv4 import (
    TcpPacketBuilder,
    build_ipv4_header,
    build_tcp_packet,
    parse_ipv4,
    parse_tcp_packet,
    with_full_tcp_checksum,
)
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


# parse_tcp_packet: the one-unpack input path against parse_ipv4 + parse_tcp.


def generic_parse(
    buf: bytes, verify: bool
) -> tuple[bytes, bytes, TcpSegment] | None:
    try:
        ip = parse_ipv4(buf, fragments=True)
        if ip.frag or ip.proto != 6:
            return None
        seg = parse_tcp(ip.payload, ip.src, ip.dst, verify)
    except WireError:
        return None
    seg.ecn = ip.ecn
    return ip.src, ip.dst, seg


@given(ts_segments, ADDR, ADDR, st.integers(1, 255), st.booleans(),
       st.binary(max_size=3))
def test_parse_tcp_packet_takes_the_usual_segment(
    seg: TcpSegment, src: bytes, dst: bytes, ttl: int, verify: bool, pad: bytes
) -> None:
    packet = build_tcp_packet(src, dst, seg, 0, ttl) + pad  # link padding
    got = parse_tcp_packet(packet, verify)
    assert got is not None
    assert got == generic_parse(packet, verify) == (src, dst, seg)


_FLIPS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3)


@given(st.one_of(ts_segments, segments.map(lambda s: replace(s, ecn=s.seq & 3))),
       ADDR, ADDR, st.booleans(), _FLIPS, st.booleans(), st.integers(0, 60))
@settings(max_examples=400)
def test_parse_tcp_packet_agrees_with_the_generic_parsers_or_declines(
    seg: TcpSegment, src: bytes, dst: bytes, verify: bool,
    flips: list[tuple[int, int]], fix_ip_csum: bool, cut: int,
) -> None:
    """Any segment, with bytes changed (bad checksums, lengths, versions,
    options, fragments; the IP checksum made right again or not) or cut
    short: the fast parser returns what the generic ones do, or None (and
    then the generic path decides)."""
    packet = bytearray(build_tcp_packet(src, dst, seg, 0))
    for at, value in flips:
        if at < len(packet):
            packet[at] = value
    if fix_ip_csum:
        packet[10:12] = b"\0\0"
        packet[10:12] = checksum(packet[:20]).to_bytes(2, "big")
    data = bytes(packet[: len(packet) - cut] if cut < len(packet) else packet)
    got = parse_tcp_packet(data, verify)
    if got is not None:
        assert got == generic_parse(data, verify)
    assert parse_tcp_packet(memoryview(data), verify) == got


def _usual_packet() -> bytearray:
    seg = TcpSegment(40000, 80, 3, 4, 0x18, 5, b"abcde", timestamp=(6, 7))
    return bytearray(build_tcp_packet(bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2)),
                                      seg, 0))


def _with(changes: dict[int, int], fix_ip_csum: bool = True) -> bytes:
    p = _usual_packet()
    for at, value in changes.items():
        p[at] = value
    if fix_ip_csum:
        p[10:12] = b"\0\0"
        p[10:12] = checksum(p[:20]).to_bytes(2, "big")
    return bytes(p)


@pytest.mark.parametrize("packet", [
    pytest.param(_with({6: 0x20}), id="more-fragments"),
    pytest.param(_with({7: 0x01}), id="fragment-offset"),
    pytest.param(_with({8: 1}, fix_ip_csum=False), id="bad-ip-checksum"),
    pytest.param(_with({0: 0x46}), id="ip-options"),
    pytest.param(_with({0: 0x55}), id="not-ipv4"),
    pytest.param(_with({9: 17}), id="udp"),
    pytest.param(_with({3: 51}), id="total-below-headers"),
    pytest.param(_with({3: 200}), id="total-past-the-buffer"),
    pytest.param(_with({32: 0x90}), id="tcp-header-36-bytes"),
    pytest.param(_with({40: 0x02}), id="other-option"),
    pytest.param(_with({53: 0x00}), id="bad-tcp-checksum"),
    pytest.param(bytes(_usual_packet()[:51]), id="short"),
])
def test_parse_tcp_packet_declines_anything_unusual(packet: bytes) -> None:
    assert parse_tcp_packet(packet) is None
    assert parse_tcp_packet(_usual_packet()) is not None  # the control


def test_parse_tcp_packet_skips_the_tcp_checksum_unless_verifying() -> None:
    packet = _with({53: 0x00})  # payload changed: the TCP checksum is wrong
    got = parse_tcp_packet(packet, verify=False)
    assert got is not None and got[2].payload == b"a\0cde"

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
