"""ICMP error codec and meaning, path MTU cache, ICMP rate limits, UDP codec."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.ip.icmp_errors import (
    IcmpRateLimit,
    PathMtuCache,
    classify,
    next_hop_mtu,
)
from ustack.wire.checksum import verify
from ustack.wire.icmp import (
    DEST_UNREACHABLE,
    ECHO_REQUEST,
    ERROR_MAX_LEN,
    PORT_UNREACHABLE,
    SOURCE_QUENCH,
    TIME_EXCEEDED,
    echo_message,
    echo_reply,
    error_message,
    parse_icmp,
    parse_quoted,
)
from ustack.wire.ipv4 import build_ipv4_header
from ustack.wire.tcp import WireError
from ustack.wire.udp import build_udp, parse_udp

US = bytes([10, 0, 0, 2])
PEER = bytes([10, 0, 0, 1])


def our_packet(payload: bytes = bytes(range(40)), proto: int = 6) -> bytes:
    return build_ipv4_header(US, PEER, proto, len(payload), 1) + payload


# -- ICMP codec -------------------------------------------------------------


def test_error_message_quotes_header_and_data_within_576() -> None:
    original = our_packet(bytes(2000))
    msg = error_message(DEST_UNREACHABLE, PORT_UNREACHABLE, 0, original)
    assert len(msg) + 20 == ERROR_MAX_LEN
    assert verify(msg)
    parsed = parse_icmp(msg)
    assert (parsed.type, parsed.code) == (DEST_UNREACHABLE, PORT_UNREACHABLE)
    quoted = parse_quoted(parsed.data)
    assert (quoted.src, quoted.dst, quoted.proto) == (US, PEER, 6)
    assert quoted.total_len == 2020


def test_error_message_carries_the_next_hop_mtu() -> None:
    msg = parse_icmp(error_message(DEST_UNREACHABLE, 4, 1280, our_packet()))
    assert msg.ident << 16 | msg.seq == 1280


@pytest.mark.parametrize(
    "data", [b"", bytes(19), b"\x60" + bytes(40), our_packet()[:27]]
)
def test_parse_quoted_rejects_short_or_non_ipv4(data: bytes) -> None:
    with pytest.raises(WireError, match="bad_quote"):
        parse_quoted(data)


def test_echo_reply_mirrors_code_and_data() -> None:
    request = echo_message(ECHO_REQUEST, 5, 6, b"payload", code=3)
    reply = parse_icmp(echo_reply(request))
    assert (reply.type, reply.code, reply.ident, reply.seq, reply.data) == (
        0, 3, 5, 6, b"payload"
    )  # fmt: skip


# -- what errors mean ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "code", "expected"),
    [
        (DEST_UNREACHABLE, 0, (errno.ENETUNREACH, False)),
        (DEST_UNREACHABLE, 1, (errno.EHOSTUNREACH, False)),
        (DEST_UNREACHABLE, 2, (errno.ENOPROTOOPT, True)),
        (DEST_UNREACHABLE, 3, (errno.ECONNREFUSED, True)),
        (DEST_UNREACHABLE, 13, (errno.EHOSTUNREACH, True)),  # admin prohibited
        (TIME_EXCEEDED, 0, (errno.EHOSTUNREACH, False)),
        (12, 0, (errno.EPROTO, True)),
    ],
)
def test_classify(typ: int, code: int, expected: tuple[int, bool]) -> None:
    err = classify(typ, code, 0, parse_quoted(our_packet()))
    assert err is not None
    assert (err.errno, err.hard) == expected
    assert err.mtu is None


def test_source_quench_and_unknown_codes_are_ignored() -> None:
    q = parse_quoted(our_packet())
    assert classify(SOURCE_QUENCH, 0, 0, q) is None  # RFC 6633
    assert classify(DEST_UNREACHABLE, 16, 0, q) is None
    assert classify(5, 0, 0, q) is None  # redirect


def test_fragmentation_needed_gives_an_mtu() -> None:
    err = classify(DEST_UNREACHABLE, 4, 1280, parse_quoted(our_packet(bytes(1480))))
    assert err is not None and err.mtu == 1280 and err.errno == errno.EMSGSIZE


def test_old_routers_mtu_zero_uses_the_plateau_table() -> None:
    assert next_hop_mtu(0, 1500) == 1492  # RFC 1191 7.1
    assert next_hop_mtu(1500, 1500) == 1492  # not below what was dropped
    assert next_hop_mtu(0, 600) == 508
    assert next_hop_mtu(1280, 1500) == 1280


# -- path MTU cache -------------------------------------------------------------


def test_pmtu_learn_floor_and_expiry() -> None:
    cache = PathMtuCache(min_pmtu=552, expires=600.0)
    assert cache.get(PEER, 0.0, 1500) == 1500
    assert cache.learn(PEER, 1280, 0.0, 1500) == 1280
    assert cache.learn(PEER, 1400, 1.0, 1500) is None  # never raised by ICMP
    assert cache.learn(PEER, 300, 2.0, 1500) == 552  # the floor (min_pmtu)
    assert cache.learn(PEER, 400, 3.0, 1500) is None
    assert cache.get(PEER, 601.9, 1500) == 552
    assert cache.get(PEER, 602.0, 1500) == 1500  # aged out (mtu_expires)
    assert len(cache) == 0


def test_pmtu_cache_is_bounded() -> None:
    cache = PathMtuCache(552, 600.0, max_entries=10)
    for i in range(100):
        cache.learn(bytes([10, 1, 0, i]), 1000, 0.0, 1500)
    assert len(cache) == 10


# -- rate limits ------------------------------------------------------------------


def test_per_destination_rate_limit_like_icmp_ratelimit() -> None:
    limit = IcmpRateLimit(ratelimit=1.0, msgs_per_sec=1000, burst=50)
    allowed = [limit.check(PEER, 0.0) for _ in range(10)]
    assert allowed == [None] * 6 + ["IcmpOutRateLimitHost"] * 4  # burst of 6
    assert limit.check(PEER, 0.5) == "IcmpOutRateLimitHost"
    assert limit.check(PEER, 1.0) is None  # one per second after the burst
    assert limit.check(US, 1.0) is None  # other destinations have their own


def test_global_rate_limit() -> None:
    limit = IcmpRateLimit(ratelimit=0.0, msgs_per_sec=100, burst=5)
    peers = [bytes([10, 2, 0, i]) for i in range(10)]
    results = [limit.check(p, 0.0) for p in peers]
    assert results == [None] * 5 + ["IcmpOutRateLimitGlobal"] * 5
    assert limit.check(peers[0], 0.01) is None  # 100/s: one more per 10 ms
    assert limit.check(peers[0], 0.01) == "IcmpOutRateLimitGlobal"


# -- UDP codec ----------------------------------------------------------------------


@given(st.binary(max_size=2000), st.integers(1, 65535), st.integers(1, 65535))
def test_udp_round_trip(payload: bytes, sport: int, dport: int) -> None:
    datagram = parse_udp(build_udp(sport, dport, payload, US, PEER), US, PEER)
    assert (datagram.src_port, datagram.dst_port, datagram.payload) == (
        sport, dport, payload
    )  # fmt: skip


def test_udp_bad_checksum_and_zero_checksum() -> None:
    raw = bytearray(build_udp(1, 2, b"data", US, PEER))
    raw[-1] ^= 1
    with pytest.raises(WireError, match="bad_udp_csum"):
        parse_udp(raw, US, PEER)
    assert parse_udp(raw, US, PEER, verify_csum=False).payload == b"dat`"
    raw[6:8] = b"\0\0"  # zero: the sender computed no checksum (RFC 768)
    assert parse_udp(raw, US, PEER).payload == b"dat`"


def test_udp_length_checks_and_padding() -> None:
    raw = build_udp(1, 2, b"abc", US, PEER)
    with pytest.raises(WireError, match="short"):
        parse_udp(raw[:7], US, PEER)
    with pytest.raises(WireError, match="bad_udp_len"):
        parse_udp(raw[:10], US, PEER)  # length field says 11
    assert parse_udp(raw + b"\0\0", US, PEER).payload == b"abc"  # IP padding


def test_udp_checksum_of_zero_is_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to 0; it must go as 0xFFFF.
    for i in range(1 << 16):
        raw = build_udp(1, 2, i.to_bytes(2, "big"), US, PEER)
        assert raw[6:8] != b"\0\0"
        if raw[6:8] == b"\xff\xff":
            assert parse_udp(raw, US, PEER).payload == i.to_bytes(2, "big")
            return
    raise AssertionError("no payload with a zero checksum found")
