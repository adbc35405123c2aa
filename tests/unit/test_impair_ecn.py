"""ECN marking in the impairment layer: `ecn=P%` and `ecn_threshold=K`."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from ustack.link.impair import (
    ImpairedLink,
    Impairment,
    ImpairSpecError,
    parse_impair_spec,
)
from ustack.link.memory import memory_link_pair
from ustack.tcp import ecn
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, TcpSegment, parse_tcp

SRC = IPv4Address("10.0.0.1").packed
DST = IPv4Address("10.0.0.2").packed


def packet(seq: int, codepoint: int, size: int = 960) -> bytes:
    seg = TcpSegment(40000, 80, seq, 1, ACK, 1000, bytes(size), ecn=codepoint)
    return build_tcp_packet(SRC, DST, seg, 1)


def decode(p: bytes) -> tuple[int, int]:
    """(seq, ECN codepoint); parse_ipv4 verifies the IP header checksum."""
    ip = parse_ipv4(p)
    return parse_tcp(ip.payload, ip.src, ip.dst).seq, ip.ecn


def test_spec_keys_parse_and_round_trip() -> None:
    cfg = parse_impair_spec("ecn=10%,rate=10mbit,ecn_threshold=20,seed=3")
    assert cfg.outbound.ecn == pytest.approx(0.1)
    assert cfg.inbound.ecn_threshold == 20
    assert parse_impair_spec(cfg.describe()) == cfg
    zero = parse_impair_spec("out.rate=1mbit,out.ecn_threshold=0")
    assert zero.outbound.ecn_threshold == 0
    with pytest.raises(ImpairSpecError, match="give a rate"):
        parse_impair_spec("ecn_threshold=5")
    with pytest.raises(ImpairSpecError, match="between 0% and 100%"):
        parse_impair_spec("ecn=150%")


async def test_ecn_marks_only_ect_packets(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(a, outbound=Impairment(ecn=0.5, seed=2))
    for i in range(400):
        link.write(packet(i, ecn.ECT_0 if i % 2 else ecn.NOT_ECT))
    got = [decode(p) for p in b.inbox]
    assert len(got) == 400  # marking, never dropping
    assert all(cp == ecn.NOT_ECT for seq, cp in got if seq % 2 == 0)
    marked = [seq for seq, cp in got if cp == ecn.CE]
    assert all(seq % 2 for seq in marked)
    assert 70 < len(marked) < 130  # about half of the 200 ECT packets
    assert link.counters["out.ce_mark"] == len(marked)


async def test_queue_threshold_marks_instead_of_dropping(
    autojump_clock: MockClock,
) -> None:
    """Above K waiting packets ECT ones are marked; tail drop stays at queue."""
    a, b = memory_link_pair()
    link = ImpairedLink(
        b, inbound=Impairment(rate=100_000.0, queue=10, ecn_threshold=3, seed=1)
    )
    for i in range(8):
        a.write(packet(i, ecn.ECT_0))
    for i in range(8, 16):
        a.write(packet(i, ecn.NOT_ECT))
    got: list[tuple[int, int]] = []
    with trio.move_on_at(trio.current_time() + 2):
        while True:
            await link.wait_readable()
            got.extend(decode(p) for p in link.read_batch())
    # Packets 0 and 1 leave at once / wait alone, then the queue builds:
    # each ECT packet that finds more than 3 ahead of it is marked.
    codepoints = dict(got)
    assert [codepoints[i] for i in range(8)] == [ecn.ECT_0] * 5 + [ecn.CE] * 3
    assert all(codepoints[i] == ecn.NOT_ECT for i in range(8, 11))
    assert link.counters["in.rate_drop"] == 16 - len(got) == 5  # queue=10 (+1 sent)
