"""IPv4 header codec and ICMP echo, cross-checked with scapy."""

from __future__ import annotations

import struct

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP

from ustack.wire.checksum import checksum
from ustack.wire.icmp import (
    ECHO_REPLY,
    ECHO_REQUEST,
    build_icmp_packet,
    echo_message,
    echo_reply,
    echo_reply_packet,
    parse_icmp,
)
from ustack.wire.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    build_ipv4_header,
    parse_ipv4,
)
from ustack.wire.tcp import WireError

SRC = bytes([10, 203, 0, 2])
DST = bytes([10, 203, 0, 1])


def ip_header(
    vihl: int = 0x45,
    total: int | None = None,
    frag: int = 0x4000,
    opts: bytes = b"",
    payload: bytes = b"",
    fix: bool = True,
) -> bytes:
    if total is None:
        total = 20 + len(opts) + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", vihl, 0, total, 1, frag, 64, 17, 0, SRC, DST)
    hdr += opts
    if fix:
        c = checksum(hdr)
        hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def test_build_header_scapy() -> None:
    hdr = build_ipv4_header(SRC, DST, 17, 100, ident=70000, ttl=5)
    p = IP(hdr + b"\0" * 100)
    assert (p.src, p.dst, p.proto, p.id, p.ttl, p.len) == (
        "10.203.0.2",
        "10.203.0.1",
        17,
        70000 & 0xFFFF,
        5,
        120,
    )
    assert p.flags == "DF" and p.frag == 0 and p.ihl == 5
    c = p.chksum
    del p.chksum
    assert IP(raw(p)).chksum == c
    assert checksum(hdr) == 0


def test_parse_scapy_built() -> None:
    pkt = raw(IP(src="1.2.3.4", dst="5.6.7.8", id=999, ttl=17) / UDP() / b"xyz")
    ip = parse_ipv4(pkt)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.ident) == (
        b"\x01\x02\x03\x04",
        b"\x05\x06\x07\x08",
        17,
        17,
        999,
    )
    assert (ip.header_len, ip.total_len) == (20, len(pkt))
    assert bytes(ip.payload) == pkt[20:]


def test_options_skipped_and_padding_trimmed() -> None:
    # scapy computes the checksum over an options-bearing header
    pkt = raw(
        IP(src="1.2.3.4", dst="5.6.7.8", options=[b"\x01\x01\x01\x00"])
        / TCP()
        / b"data"
    )
    ip = parse_ipv4(pkt + b"\0" * 6)  # Ethernet-style trailing padding
    assert ip.header_len == 24 and ip.proto == PROTO_TCP
    assert bytes(ip.payload) == pkt[24:]
    assert ip.total_len == len(pkt)


def test_parse_accepts_memoryview_and_bytearray() -> None:
    pkt = ip_header(payload=b"abc")
    assert bytes(parse_ipv4(memoryview(pkt)).payload) == b"abc"
    assert bytes(parse_ipv4(bytearray(pkt)).payload) == b"abc"


def test_fragments_parse_when_asked() -> None:
    ip = parse_ipv4(ip_header(frag=0x2000 | 3), fragments=True)
    assert ip.frag == 0x2000 | 3
    assert parse_ipv4(ip_header(frag=0x4000), fragments=True).frag == 0  # DF only


def test_df_is_not_a_fragment() -> None:
    assert parse_ipv4(ip_header(frag=0x4000)).proto == 17
    assert parse_ipv4(ip_header(frag=0)).proto == 17


BAD = [
    ("short", b""),
    ("short", ip_header()[:19]),
    ("not_ipv4", ip_header(vihl=0x65)),
    ("not_ipv4", b"\x60" + b"\0" * 39),
    ("bad_ihl", ip_header(vihl=0x44)),
    ("bad_ihl", ip_header(vihl=0x40)),
    ("bad_ihl", ip_header(vihl=0x46)),  # 24 > 20 bytes present
    ("bad_len", ip_header(total=19)),
    ("bad_len", ip_header(total=41, payload=b"\0" * 20)),
    ("bad_len", ip_header(vihl=0x46, opts=b"\1" * 4, total=22)),  # < IHL*4
    ("bad_ip_csum", ip_header(payload=b"hi", fix=False)),
    ("fragment", ip_header(frag=0x2000)),  # MF
    ("fragment", ip_header(frag=0x0001)),  # offset 8
    ("fragment", ip_header(frag=0x4000 | 0x1FFF)),
]


@pytest.mark.parametrize(("reason", "buf"), BAD)
def test_malformed(reason: str, buf: bytes) -> None:
    with pytest.raises(WireError) as ei:
        parse_ipv4(buf)
    assert ei.value.reason == reason


def test_bad_ip_csum_single_bit() -> None:
    pkt = bytearray(ip_header(payload=b"x"))
    pkt[8] ^= 1  # TTL
    with pytest.raises(WireError, match="bad_ip_csum"):
        parse_ipv4(pkt)


# ---- ICMP ---------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"a", b"abcdefgh" * 7, bytes(range(256)) * 5])
def test_ping_reply_from_scapy_request(data: bytes) -> None:
    req = raw(
        IP(src="10.203.0.1", dst="10.203.0.2", id=5)
        / ICMP(type=8, id=0xBEEF, seq=42)
        / data
    )
    ip = parse_ipv4(req)
    assert ip.proto == PROTO_ICMP
    msg = parse_icmp(ip.payload)
    assert (msg.type, msg.code, msg.ident, msg.seq, msg.data) == (
        ECHO_REQUEST,
        0,
        0xBEEF,
        42,
        data,
    )
    pkt = echo_reply_packet(ip.dst, ip.src, ip.payload, ident=9)
    p = IP(pkt)
    assert (p.src, p.dst, p.proto, p.id) == ("10.203.0.2", "10.203.0.1", 1, 9)
    assert (p[ICMP].type, p[ICMP].code, p[ICMP].id, p[ICMP].seq) == (0, 0, 0xBEEF, 42)
    assert bytes(p[ICMP].payload) == data
    ip_c, icmp_c = p.chksum, p[ICMP].chksum
    del p.chksum
    del p[ICMP].chksum
    again = IP(raw(p))
    assert (again.chksum, again[ICMP].chksum) == (ip_c, icmp_c)
    # and our own parser agrees
    rep = parse_icmp(parse_ipv4(pkt).payload)
    assert (rep.type, rep.ident, rep.seq, rep.data) == (ECHO_REPLY, 0xBEEF, 42, data)


def test_echo_message_round_trip() -> None:
    m = echo_message(ECHO_REQUEST, 1, 2, b"xyz")
    assert checksum(m) == 0
    assert ICMP(m).chksum == int.from_bytes(m[2:4], "big")
    rep = echo_reply(m)
    assert rep[0] == ECHO_REPLY and rep[4:] == m[4:] and checksum(rep) == 0
    pkt = build_icmp_packet(SRC, DST, rep, ident=3, ttl=9)
    ip = parse_ipv4(pkt)
    assert (ip.proto, ip.ttl) == (PROTO_ICMP, 9)
    assert bytes(ip.payload) == rep


def test_icmp_other_types_parse() -> None:
    unreach = raw(ICMP(type=3, code=3) / IP(src="1.1.1.1") / UDP())
    msg = parse_icmp(unreach)
    assert (msg.type, msg.code) == (3, 3) and msg.data == unreach[8:]


def test_icmp_malformed() -> None:
    with pytest.raises(WireError, match="short"):
        parse_icmp(b"\x08\0\0\0\0\0\0")
    bad = bytearray(echo_message(ECHO_REQUEST, 1, 2, b"abc"))
    bad[-1] ^= 0x10
    with pytest.raises(WireError) as ei:
        parse_icmp(bad)
    assert ei.value.reason == "bad_icmp_csum"
    with pytest.raises(WireError, match="not_echo"):
        echo_reply(echo_message(ECHO_REPLY, 1, 2))
    with pytest.raises(WireError, match="not_echo"):
        echo_reply(b"\x08\0")
