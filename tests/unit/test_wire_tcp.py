"""TCP codec: round trips, scapy cross-checks, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP

from ustack.wire.checksum import checksum, pseudo_header_sum
from ustack.wire.ipv4 import (
    build_ipv4_header,
    build_tcp_packet,
    parse_ipv4,
    with_full_tcp_checksum,
)
from ustack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpSegment,
    WireError,
    build_tcp,
    parse_tcp,
)

SRC = bytes([10, 203, 0, 2])
DST = bytes([10, 203, 0, 1])

SEGMENTS = [
    TcpSegment(1, 2, 0, 0, 0, 0),
    TcpSegment(40000, 80, 2**32 - 1, 2**32 - 1, 0xFF, 65535, b"x" * 1460),
    TcpSegment(
        5555,
        7,
        100,
        0,
        SYN,
        64240,
        mss=1460,
        wscale=7,
        sack_permitted=True,
        timestamp=(123456, 0),
    ),
    TcpSegment(7, 5555, 9, 101, SYN | ACK, 65160, mss=536, sack_permitted=True),
    TcpSegment(7, 5555, 9, 101, SYN | ACK, 65160, wscale=0),
    TcpSegment(7, 5555, 10, 101, ACK | PSH, 502, b"odd", timestamp=(2**32 - 1, 7)),
    TcpSegment(
        7, 5555, 10, 101, ACK, 502, sack_blocks=((1, 2), (3, 4), (5, 6), (7, 8))
    ),
    TcpSegment(
        7,
        5555,
        10,
        101,
        ACK,
        502,
        b"ab",
        timestamp=(1, 2),
        sack_blocks=((10, 20), (30, 40), (50, 60)),
    ),
    TcpSegment(7, 5555, 10, 101, ACK, 502, sack_permitted=True),
    TcpSegment(7, 5555, 10, 101, ACK | URG, 502, b"u", urg_ptr=1),
    TcpSegment(7, 5555, 10, 101, RST, 0),
    TcpSegment(7, 5555, 10, 101, FIN | ACK | ECE | CWR, 1, b"\0" * 999),
]


def expected(seg: TcpSegment) -> TcpSegment:
    """`seg` as parse should return it: SACK blocks cut to the option room."""
    used = 4 * (seg.mss is not None) + 4 * (seg.wscale is not None)
    used += 12 if seg.timestamp is not None else 4 * seg.sack_permitted
    n = (40 - 4 - used) // 8
    blocks = tuple((start, end) for start, end in seg.sack_blocks[:n])
    return TcpSegment(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.window,
        bytes(seg.payload),
        seg.mss,
        seg.wscale,
        seg.sack_permitted,
        blocks,
        seg.timestamp,
        seg.urg_ptr,
    )


def scapy_checks(pkt: bytes) -> IP:
    """Parse with scapy and assert its recomputed checksums equal ours."""
    p = IP(pkt)
    ip_c, tcp_c = p[IP].chksum, p[TCP].chksum
    del p[IP].chksum
    del p[TCP].chksum
    again = IP(raw(p))
    assert again[IP].chksum == ip_c
    assert again[TCP].chksum == tcp_c
    return p


def raw_tcp(
    opts: bytes = b"",
    payload: bytes = b"",
    doff: int | None = None,
    fix_csum: bool = True,
) -> bytes:
    """Hand-built TCP bytes with arbitrary options and data offset."""
    if doff is None:
        doff = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", 1000, 2000, 1, 2, doff << 4, ACK, 100, 0, 0)
    seg = hdr + opts + payload
    if fix_csum:
        c = checksum(seg, pseudo_header_sum(SRC, DST, 6, len(seg)))
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return seg


@pytest.mark.parametrize("seg", SEGMENTS)
def test_round_trip(seg: TcpSegment) -> None:
    buf = build_tcp(seg, SRC, DST)
    hlen = (buf[12] >> 4) * 4
    assert hlen <= 60 and len(buf) == hlen + len(seg.payload)
    assert parse_tcp(buf, SRC, DST) == expected(seg)
    assert parse_tcp(memoryview(buf), SRC, DST) == expected(seg)


@pytest.mark.parametrize("seg", SEGMENTS)
def test_packet_round_trip_and_scapy(seg: TcpSegment) -> None:
    pkt = build_tcp_packet(SRC, DST, seg, ident=0x1_2345)
    assert pkt[20:] == build_tcp(seg, SRC, DST)
    ip = parse_ipv4(pkt)
    assert (ip.src, ip.dst, ip.proto, ip.ident, ip.ttl) == (SRC, DST, 6, 0x2345, 64)
    got = parse_tcp(ip.payload, ip.src, ip.dst)
    assert got == expected(seg)
    assert isinstance(got.payload, bytes)
    p = scapy_checks(pkt)
    t = p[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window, t.urgptr) == (
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.window,
        seg.urg_ptr,
    )
    assert bytes(t.payload) == seg.payload
    opts = dict(t.options)
    assert opts.get("MSS") == seg.mss
    assert opts.get("WScale") == seg.wscale
    assert ("SAckOK" in opts) == seg.sack_permitted
    assert opts.get("Timestamp") == seg.timestamp
    blocks = expected(seg).sack_blocks
    assert opts.get("SAck", ()) == tuple(x for b in blocks for x in b)
    assert p[IP].flags == "DF" and p[IP].len == len(pkt)


SCAPY_OPTS = [
    [],
    [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (5, 6)),
        ("NOP", None),
        ("WScale", 9),
    ],
    [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6, 7, 8))],
    [("MSS", 1200), ("EOL", None)],
    [
        ("NOP", None),
        ("NOP", None),
        ("Timestamp", (2**32 - 1, 2**31)),
        ("NOP", None),
        ("NOP", None),
        ("SAck", (7, 9)),
    ],
    [("AltChkSum", (1, 2)), ("MSS", 99)],  # unknown kind 14 is skipped
    [(30, b"\x01\x02\x03\x04\x05\x06")],  # MPTCP-like unknown kind
]


@pytest.mark.parametrize("opts", SCAPY_OPTS)
@pytest.mark.parametrize("payload", [b"", b"a", b"hello world" * 130])
def test_scapy_built_parses(opts: list, payload: bytes) -> None:
    pkt = raw(
        IP(src="10.203.0.2", dst="10.203.0.1", id=77, ttl=3)
        / TCP(
            sport=443,
            dport=51000,
            seq=3_000_000_000,
            ack=17,
            flags="PA",
            window=1234,
            options=opts,
        )
        / payload
    )
    ip = parse_ipv4(pkt)
    assert (ip.ttl, ip.ident, ip.proto) == (3, 77, 6)
    seg = parse_tcp(ip.payload, ip.src, ip.dst)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack) == (443, 51000, 3e9, 17)
    assert seg.flags == PSH | ACK and seg.window == 1234 and seg.payload == payload
    d = dict((k, v) for k, v in opts if isinstance(k, str))
    assert seg.mss == d.get("MSS")
    assert seg.wscale == d.get("WScale")
    assert seg.sack_permitted == ("SAckOK" in d)
    assert seg.timestamp == d.get("Timestamp")
    s = d.get("SAck", ())
    assert seg.sack_blocks == tuple(zip(s[::2], s[1::2], strict=True))


def test_flag_names_and_seg_len() -> None:
    seg = parse_tcp(
        build_tcp(TcpSegment(1, 2, 3, 4, SYN | FIN | ACK, 5, b"abc"), SRC, DST),
        SRC,
        DST,
    )
    assert seg.flag_names() == "FSA"
    assert seg.seg_len == 5


def test_no_option_header_is_20_bytes() -> None:
    buf = build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, b"zz"), SRC, DST)
    assert len(buf) == 22 and buf[12] == 5 << 4


def test_timestamp_only_layout() -> None:
    buf = build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, timestamp=(1, 2)), SRC, DST)
    assert buf[20:] == bytes([1, 1, 8, 10]) + struct.pack("!II", 1, 2)


def test_sack_blocks_truncated_to_option_space() -> None:
    seg = TcpSegment(
        1,
        2,
        3,
        4,
        ACK,
        5,
        timestamp=(1, 2),
        sack_blocks=((1, 2), (3, 4), (5, 6), (7, 8)),
    )
    buf = build_tcp(seg, SRC, DST)
    assert len(buf) == 60
    assert parse_tcp(buf, SRC, DST).sack_blocks == ((1, 2), (3, 4), (5, 6))


def test_verify_false_skips_checksum() -> None:
    buf = bytearray(build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, b"q"), SRC, DST))
    buf[16] ^= 0xFF
    with pytest.raises(WireError) as ei:
        parse_tcp(bytes(buf), SRC, DST)
    assert ei.value.reason == "bad_tcp_csum"
    assert parse_tcp(bytes(buf), SRC, DST, verify=False).payload == b"q"


def test_checksum_depends_on_pseudo_header() -> None:
    buf = build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, b"q"), SRC, DST)
    with pytest.raises(WireError, match="bad_tcp_csum"):
        parse_tcp(buf, SRC, bytes([10, 203, 0, 3]))


def test_valid_hand_built_options() -> None:
    # EOL stops parsing: the garbage after it is padding
    seg = parse_tcp(raw_tcp(b"\x02\x04\x05\xb4\x00\xff\xff\xff"), SRC, DST)
    assert seg.mss == 1460
    # unknown kind 99 length 6 is skipped
    seg = parse_tcp(raw_tcp(b"\x63\x06abcd\x03\x03\x05\x00\x00\x00"), SRC, DST)
    assert seg.wscale == 5
    # 12 option bytes that are not the NOP NOP TS fast-path layout
    seg = parse_tcp(raw_tcp(b"\x02\x04\x05\xb4" + b"\x01" * 8), SRC, DST)
    assert seg.mss == 1460 and seg.timestamp is None
    seg = parse_tcp(raw_tcp(b"\x08\x0a" + b"\0\0\0\1" * 2 + b"\1\0"), SRC, DST)
    assert seg.timestamp == (1, 1)
    seg = parse_tcp(raw_tcp(b"\x01\x01\x08\x0b" + b"\0" * 8), SRC, DST)
    assert seg.timestamp is None  # TIMESTAMP of length 11: skipped
    # options up to the 60-byte limit
    seg = parse_tcp(raw_tcp(b"\x01" * 40, b"data"), SRC, DST)
    assert seg.payload == b"data" and seg.mss is None


BAD = [
    ("short", b"\0" * 19),
    ("short", b""),
    ("bad_doff", raw_tcp(doff=4)),
    ("bad_doff", raw_tcp(doff=0)),
    ("bad_doff", raw_tcp(b"\x01" * 4, doff=7)),  # 28 > 24 bytes present
    ("bad_tcp_csum", raw_tcp(b"", b"hi", fix_csum=False)),
]


# Issue 10 item 13: a malformed option costs neither the segment nor its data
# (RFC 9293 MUST-7); as Linux's tcp_parse_options, a missing, short or
# overlong length stops parsing, a known kind of the wrong length is skipped.
BAD_OPTIONS = [
    (b"\x01\x01\x01\x02", {}),  # kind without length byte
    (b"\x02\x00\x00\x00", {}),  # length 0
    (b"\x63\x01\x00\x00", {}),  # unknown kind, length 1
    (b"\x01\x01\x63\x05", {}),  # runs past the header
    (b"\x02\x05\x05\xb4\x00\x00\x00\x00", {}),  # MSS len 5
    (b"\x02\x03\x05\x00", {}),  # MSS len 3
    (b"\x03\x04\x05\x00", {}),  # WSCALE len 4
    (b"\x04\x03\x00\x00", {}),  # SACK_PERMITTED len 3
    (b"\x08\x08" + b"\0" * 6, {}),  # TIMESTAMP len 8
    (b"\x05\x02\x00\x00", {}),  # SACK with no block
    (b"\x05\x0b" + b"\0" * 10, {}),  # SACK len 11
    (b"\x01\x01\x05\x06\0\0\0\0", {}),  # SACK len 6
    # what came before the bad option is kept; a skipped one lets parsing go on
    (b"\x02\x04\x05\xb4\x08\x00\x00\x00", {"mss": 1460}),
    (b"\x02\x03\x05\x03\x03\x07\x01\x01", {"wscale": 7}),
]


@pytest.mark.parametrize(("options", "fields"), BAD_OPTIONS)
def test_malformed_option_keeps_the_segment(
    options: bytes, fields: dict[str, int]
) -> None:
    seg = parse_tcp(raw_tcp(options, b"data"), SRC, DST)
    assert seg.payload == b"data"
    assert seg.mss == fields.get("mss") and seg.wscale == fields.get("wscale")
    assert seg.timestamp is None and seg.sack_blocks == ()


@pytest.mark.parametrize(("reason", "buf"), BAD)
def test_malformed(reason: str, buf: bytes) -> None:
    with pytest.raises(WireError) as ei:
        parse_tcp(buf, SRC, DST)
    assert ei.value.reason == reason
    assert str(ei.value) == reason


@given(
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 255),
    window=st.integers(0, 65535),
    ts=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    payload=st.binary(max_size=64) | st.sampled_from([b"", b"\0" * 1448]),
    ecn=st.integers(0, 3),
)
def test_timestamp_only_packet_matches_the_generic_codec(
    seq: int, ack: int, flags: int, window: int, ts: tuple[int, int],
    payload: bytes, ecn: int,
) -> None:
    """build_tcp_packet packs a timestamps-only header in one go; it must
    equal the IPv4 header + build_tcp, and its partial checksum must
    complete to the full one (with_full_tcp_checksum)."""
    seg = TcpSegment(40000, 80, seq, ack, flags, window, payload, timestamp=ts,
                     ecn=ecn)
    tcp = build_tcp(seg, SRC, DST)
    pkt = build_tcp_packet(SRC, DST, seg, ident=7)
    ip = bytearray(build_ipv4_header(SRC, DST, 6, len(tcp), 7))
    ip[1] = ecn
    ip[10:12] = b"\0\0"
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    assert pkt == bytes(ip) + tcp
    partial = build_tcp_packet(SRC, DST, seg, ident=7, partial_csum=True)
    assert partial[:36] == pkt[:36] and partial[38:] == pkt[38:]
    assert with_full_tcp_checksum(partial) == pkt
    back = parse_tcp(parse_ipv4(pkt).payload, SRC, DST)
    assert (back.seq, back.ack, back.flags, back.window, back.timestamp,
            back.payload) == (seq, ack, flags, window, ts, payload)
