"""Hypothesis properties: parsers only raise WireError; build/parse round trips."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP

from ustack.wire.checksum import checksum
from ustack.wire.icmp import parse_icmp
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import TcpSegment, WireError, build_tcp, parse_tcp

ADDR = st.binary(min_size=4, max_size=4)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 2**32 - 1)

segments = st.builds(
    TcpSegment,
    src_port=U16,
    dst_port=U16,
    seq=U32,
    ack=U32,
    flags=st.integers(0, 255),
    window=U16,
    payload=st.binary(max_size=2000),
    mss=st.none() | U16,
    wscale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(U32, U32), max_size=4).map(tuple),
    timestamp=st.none() | st.tuples(U32, U32),
    urg_ptr=U16,
)


def expected(seg: TcpSegment) -> TcpSegment:
    used = 4 * (seg.mss is not None) + 4 * (seg.wscale is not None)
    used += 12 if seg.timestamp is not None else 4 * seg.sack_permitted
    n = (40 - 4 - used) // 8
    return TcpSegment(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.window,
        seg.payload,
        seg.mss,
        seg.wscale,
        seg.sack_permitted,
        seg.sack_blocks[:n],
        seg.timestamp,
        seg.urg_ptr,
    )


def only_wire_error(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except WireError as e:
        assert e.reason and isinstance(e.reason, str)


@given(st.binary(max_size=120), ADDR, ADDR)
def test_parse_tcp_arbitrary(buf: bytes, src: bytes, dst: bytes) -> None:
    only_wire_error(parse_tcp, buf, src, dst)
    only_wire_error(parse_tcp, buf, src, dst, False)
    only_wire_error(parse_tcp, memoryview(buf), src, dst, False)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_parse_tcp_arbitrary_options(opts: bytes, payload: bytes) -> None:
    # well-formed fixed header so the option parser sees random bytes
    opts = opts[: len(opts) // 4 * 4]
    hdr = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, (5 + len(opts) // 4) << 4, 0, 0, 0, 0)
    only_wire_error(parse_tcp, hdr + opts + payload, b"\0" * 4, b"\0" * 4, False)


@given(st.binary(max_size=120))
def test_parse_ipv4_arbitrary(buf: bytes) -> None:
    only_wire_error(parse_ipv4, buf)


@given(st.binary(min_size=20, max_size=80), st.integers(0, 15), st.integers(0, 100))
def test_parse_ipv4_fixed_csum(buf: bytes, ihl: int, total: int) -> None:
    # valid version and checksum so the length checks get exercised
    b = bytearray(buf)
    b[0] = 0x40 | ihl
    b[2:4] = total.to_bytes(2, "big")
    b[10:12] = b"\0\0"
    hl = ihl * 4
    if 20 <= hl <= len(b):
        b[10:12] = checksum(b[:hl]).to_bytes(2, "big")
    only_wire_error(parse_ipv4, bytes(b))


@given(st.binary(max_size=100))
def test_parse_icmp_arbitrary(buf: bytes) -> None:
    only_wire_error(parse_icmp, buf)


@given(segments, ADDR, ADDR)
def test_round_trip(seg: TcpSegment, src: bytes, dst: bytes) -> None:
    want = expected(seg)
    assert parse_tcp(build_tcp(seg, src, dst), src, dst) == want
    pkt = build_tcp_packet(src, dst, seg, ident=12345)
    ip = parse_ipv4(pkt)
    assert (ip.src, ip.dst, ip.proto, ip.total_len) == (src, dst, 6, len(pkt))
    assert parse_tcp(ip.payload, ip.src, ip.dst) == want


@settings(max_examples=60, deadline=None)
@given(segments, ADDR, ADDR)
def test_scapy_checksums(seg: TcpSegment, src: bytes, dst: bytes) -> None:
    pkt = build_tcp_packet(src, dst, seg, ident=1)
    p = IP(pkt)
    ip_c, tcp_c = p[IP].chksum, p[TCP].chksum
    del p[IP].chksum
    del p[TCP].chksum
    again = IP(raw(p))
    assert (again[IP].chksum, again[TCP].chksum) == (ip_c, tcp_c)
