"""IPv4 reassembly (ustack.ip.reassembly) and fragmenting output
(ustack.ip.fragment): every order, overlaps, duplicates, timeouts, bounds."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.ip.fragment import ipv4_packets
from ustack.ip.reassembly import FRAGMENT_OVERHEAD, Reassembler
from ustack.wire.ipv4 import parse_ipv4

SRC = bytes([10, 0, 0, 1])
DST = bytes([10, 0, 0, 2])
KEY = (SRC, DST, 17, 4242)
MF = 0x2000


def pieces(payload: bytes, size: int) -> list[tuple[int, bytes]]:
    """(frag field, data) for `payload` cut into `size`-byte fragments."""
    out = []
    for offset in range(0, len(payload), size):
        more = MF if offset + size < len(payload) else 0
        out.append((more | offset // 8, payload[offset : offset + size]))
    return out


def feed(r: Reassembler, frags: list[tuple[int, bytes]], now: float = 0.0) -> list:
    return [r.add(KEY, frag, data, b"start", now) for frag, data in frags]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_order_reassembles(order: tuple[int, ...]) -> None:
    payload = random.Random(1).randbytes(3000)
    frags = pieces(payload, 800)
    r = Reassembler(Counter())
    results = feed(r, [frags[i] for i in order])
    assert results[:-1] == [None, None, None]
    assert results[-1] == (payload, b"start")
    assert r.counters["ReasmOKs"] == 1 and r.counters["ReasmReqds"] == 4
    assert r.held == 0 and len(r) == 0


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 100), st.randoms())
def test_any_cut_in_any_order(payload: bytes, eighths: int, rnd: random.Random) -> None:
    frags = pieces(payload, eighths * 8)
    rnd.shuffle(frags)
    r = Reassembler(Counter(), max_frags=1000)
    results = feed(r, frags)
    assert results[-1] is not None and results[-1][0] == payload
    assert all(x is None for x in results[:-1])


def test_overlap_drops_the_whole_datagram() -> None:
    payload = bytes(range(256)) * 8
    frags = pieces(payload, 512)
    r = Reassembler(Counter())
    feed(r, frags[:2])
    # Starts inside the second fragment: an overlap (RFC 5722 reasoning).
    assert r.add(KEY, MF | (768 // 8), payload[768:1280], b"", 0.0) is None
    assert r.counters["ReasmFails"] == 1 and len(r) == 0 and r.held == 0
    # The rest alone cannot complete it any more.
    assert feed(r, frags[2:]) == [None, None]


def test_exact_duplicate_is_ignored() -> None:
    payload = bytes(2000)
    frags = pieces(payload, 1000)
    r = Reassembler(Counter())
    assert feed(r, [frags[0], frags[0], frags[1]])[-1] == (payload, b"start")
    assert r.counters["ReasmFails"] == 0


def test_a_second_last_fragment_with_another_end_fails() -> None:
    r = Reassembler(Counter())
    feed(r, [(MF, bytes(96)), (200 // 8, bytes(8))])  # ends at 208
    assert r.add(KEY, 104 // 8, bytes(8), b"", 0.0) is None  # ends at 112
    assert r.counters["ReasmFails"] == 1 and len(r) == 0


def test_fragment_not_a_multiple_of_8_fails() -> None:
    r = Reassembler(Counter())
    assert r.add(KEY, MF, bytes(100), b"", 0.0) is None
    assert r.counters["ReasmFails"] == 1


def test_beyond_64k_fails() -> None:
    r = Reassembler(Counter())
    assert r.add(KEY, 0x1FFF, bytes(100), b"", 0.0) is None  # 65528 + 100
    assert r.counters["ReasmFails"] == 1


def test_timeout_drops_and_reports_the_first_fragment() -> None:
    r = Reassembler(Counter(), timeout=30.0)
    r.add(KEY, MF, bytes(8), b"first", 0.0)
    r.add((SRC, DST, 17, 1), MF | 1, bytes(8), b"not-first", 10.0)
    assert r.deadline == 30.0
    assert r.expire(29.9) == []
    gone = r.expire(30.0)
    assert [(g.src, g.quote) for g in gone] == [(SRC, b"first")]
    assert r.deadline == 40.0
    (second,) = r.expire(40.0)
    assert second.quote is None  # no offset-0 fragment: no ICMP (RFC 792)
    assert r.counters["ReasmTimeout"] == 2 and r.counters["ReasmFails"] == 2
    assert r.held == 0 and r.deadline is None


def test_memory_bound_refuses_new_fragments() -> None:
    cost = 1000 + FRAGMENT_OVERHEAD
    r = Reassembler(Counter(), high_thresh=10 * cost)
    for ident in range(10):
        r.add((SRC, DST, 17, ident), MF, bytes(1000), b"", 0.0)
    assert r.held == 10 * cost
    assert r.add((SRC, DST, 17, 99), MF, bytes(8), b"", 0.0) is None
    assert r.counters["ReasmFails"] == 1 and r.held == 10 * cost
    r.expire(31.0)  # space comes back when datagrams time out
    assert r.held == 0
    assert r.add((SRC, DST, 17, 99), 0, bytes(8), b"", 31.0) == (bytes(8), b"")


def test_cap_on_fragments_per_datagram() -> None:
    r = Reassembler(Counter(), max_frags=4)
    feed(r, pieces(bytes(80), 8)[:4])
    assert r.add(KEY, MF | 4, bytes(8), b"", 0.0) is None
    assert r.counters["ReasmFails"] == 1 and len(r) == 0


def test_fragment_output_round_trip() -> None:
    payload = random.Random(2).randbytes(4000)
    packets = ipv4_packets(SRC, DST, 17, payload, 7, mtu=1500)
    assert [len(p) for p in packets] == [1500, 1500, 20 + 4000 - 2 * 1480]
    r = Reassembler(Counter())
    result = None
    for packet in reversed(packets):
        ip = parse_ipv4(packet, fragments=True)
        assert ip.ident == 7 and ip.proto == 17
        result = r.add((ip.src, ip.dst, ip.proto, ip.ident), ip.frag, ip.payload,
                       b"", 0.0)  # fmt: skip
    assert result is not None and result[0] == payload


def test_a_datagram_that_fits_goes_whole_with_df() -> None:
    (packet,) = ipv4_packets(SRC, DST, 1, bytes(1480), 1, mtu=1500)
    assert len(packet) == 1500 and packet[6] & 0x40  # DF
    assert parse_ipv4(packet).payload == bytes(1480)


def test_tiny_fragments_are_charged_their_overhead() -> None:
    r = Reassembler(Counter(), high_thresh=100 * (8 + FRAGMENT_OVERHEAD))
    for ident in range(1000):  # a flood of 8-byte first fragments
        r.add((SRC, DST, 17, ident), MF, bytes(8), b"", 0.0)
    assert len(r) == 100
    assert r.counters["ReasmFails"] == 900
