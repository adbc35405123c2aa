"""RFC 1071 checksum against a word-by-word reference."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from ustack.wire.checksum import checksum, ones_sum, pseudo_header_sum, verify


def ref_sum(data: bytes) -> int:
    """Textbook RFC 1071 4.1: add 16-bit words, fold carries."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_checksum(data: bytes) -> int:
    return ~ref_sum(data) & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_edge_values() -> None:
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\0\0\0") == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert checksum(b"\xff\xff") == 0
    assert checksum(b"\x80\x00\x80\x00") == ref_checksum(b"\x80\x00\x80\x00")
    assert checksum(b"\x01") == 0xFEFF  # odd byte is the high half of a word
    assert checksum(memoryview(b"\x12\x34\x56")) == ref_checksum(b"\x12\x34\x56")


def test_known_ip_header() -> None:
    # Wikipedia's IPv4 header checksum example
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(hdr) == 0xB861
    full = hdr[:10] + b"\xb8\x61" + hdr[12:]
    assert verify(full)
    assert checksum(full) == 0
    assert not verify(hdr)


def test_pseudo_header_sum() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([192, 168, 7, 9])
    body = b"\x12\x34\x56\x78\x9a"
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(body))
    want = ref_checksum(pseudo + body + b"\0")
    assert checksum(body, pseudo_header_sum(src, dst, 6, len(body))) == want


@given(st.binary(max_size=3000))
def test_matches_reference(data: bytes) -> None:
    assert ones_sum(data) == ref_sum(data)
    assert checksum(data) == ref_checksum(data)


@given(st.binary(max_size=600), st.binary(min_size=8, max_size=8))
def test_embedding_checksum_verifies(data: bytes, addrs: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    initial = pseudo_header_sum(addrs[:4], addrs[4:], 6, len(data) + 2)
    c = checksum(data, initial)
    assert verify(data + struct.pack("!H", c), initial)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_initial_is_partial_sum(a: bytes, b: bytes) -> None:
    if len(a) % 2:
        a += b"\0"
    assert checksum(b, int.from_bytes(a, "big")) == ref_checksum(a + b)
