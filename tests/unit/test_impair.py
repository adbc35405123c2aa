"""The seeded impairment layer: spec parsing, rules, and each impairment."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from ustack.link.impair import (
    IN,
    OUT,
    ImpairedLink,
    Impairment,
    ImpairSpecError,
    parse_impair_spec,
    parse_rule,
    tcp_flags,
    with_seed,
)
from ustack.link.memory import memory_link_pair
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, FIN, PSH, SYN, TcpSegment, WireError, parse_tcp

SRC = IPv4Address("10.0.0.1").packed
DST = IPv4Address("10.0.0.2").packed


def packet(flags: int = ACK, payload: bytes = b"", seq: int = 1000) -> bytes:
    seg = TcpSegment(40000, 80, seq, 1, flags, 1000, payload)
    return build_tcp_packet(SRC, DST, seg, 1)


def seq_of(p: bytes) -> int:
    return parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False).seq


# ----------------------------------------------------------------------
# Spec parsing


def test_parse_full_spec() -> None:
    cfg = parse_impair_spec("loss=5%,dup=1%,reorder=5%,delay=20ms,jitter=5ms,seed=7")
    for imp in (cfg.inbound, cfg.outbound):
        assert imp.loss == pytest.approx(0.05)
        assert imp.dup == pytest.approx(0.01)
        assert imp.reorder == pytest.approx(0.05)
        assert imp.delay == pytest.approx(0.020)
        assert imp.jitter == pytest.approx(0.005)
    assert cfg.seed == 7
    assert cfg.inbound.seed != cfg.outbound.seed  # independent streams


def test_per_direction_units_and_rules() -> None:
    cfg = parse_impair_spec(
        "in.loss=0.1,out.delay=1.5s,rate=10mbit,out.rate=125kB,queue=5,"
        "corrupt=1%,gap=3,hold=200us,drop=fin:in:1,drop=pure:out:all:skip=2,seed=1"
    )
    assert (cfg.inbound.loss, cfg.outbound.loss) == (0.1, 0.0)
    assert (cfg.inbound.delay, cfg.outbound.delay) == (0.0, 1.5)
    assert cfg.inbound.rate == pytest.approx(10e6 / 8)
    assert cfg.outbound.rate == pytest.approx(125e3)
    assert cfg.inbound.queue == 5 and cfg.inbound.gap == 3
    assert cfg.inbound.hold == pytest.approx(200e-6)
    assert [r.describe() for r in cfg.rules] == [
        "drop=fin:in:1",
        "drop=pure:out:all:skip=2",
    ]


def test_describe_round_trips() -> None:
    text = "in.loss=5%,delay=5ms,out.dup=2%,drop=ack:out:1:after=fin/in,seed=9"
    cfg = parse_impair_spec(text)
    again = parse_impair_spec(cfg.describe())
    assert again == cfg


def test_missing_seed_is_chosen_and_shown() -> None:
    cfg = parse_impair_spec("loss=1%")
    assert f"seed={cfg.seed}" in cfg.describe()
    assert parse_impair_spec("loss=1%", seed=3).seed == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("loss=5", "percentage"),
        ("loss=abc", "percentage"),
        ("loss=150%", "between 0% and 100%"),
        ("delay=fast", "duration"),
        ("rate=10b", "ambiguous|bit rates"),
        ("rate=lots", "rate like"),
        ("queue=0", "at least 1"),
        ("los=5%", "unknown impairment 'los'"),
        ("sideways.loss=5%", "direction"),
        ("loss", "KEY=VALUE"),
        ("drop=fin", "MATCH:DIR"),
        ("drop=fin:up:1", "direction"),
        ("drop=fun:in:1", "unknown segment match 'fun'"),
        ("drop=fin:in:0", "at least 1"),
        ("drop=fin:in:1:when=now", "unexpected"),
        ("drop=fin:in:1:after=fin", "MATCH/DIR"),
        ("drop=fin+!fin:in", "never match"),
        ("seed=-1", "at least 0"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ImpairSpecError, match=message):
        parse_impair_spec(spec)


def test_tcp_flags_sees_data_and_ignores_non_tcp() -> None:
    assert tcp_flags(packet(SYN)) == SYN
    assert tcp_flags(packet(ACK | PSH, b"x")) == ACK | PSH | 0x100
    assert tcp_flags(b"\x60" + bytes(39)) is None  # IPv6
    assert tcp_flags(b"\x45" + bytes(5)) is None  # short


def test_rule_matching() -> None:
    pure = parse_rule("pure:in").match
    assert pure.matches(ACK)
    assert not pure.matches(ACK | 0x100)  # data
    assert not pure.matches(ACK | FIN)
    assert parse_rule("ack+!data:in").match.matches(ACK | FIN)
    assert parse_rule("any:in").match.matches(SYN)


# ----------------------------------------------------------------------
# The link, in virtual time


async def pump(link: ImpairedLink, until: float) -> list[tuple[float, bytes]]:
    """Read what `link` delivers until virtual time `until`, with times."""
    got: list[tuple[float, bytes]] = []
    with trio.move_on_at(until):
        while True:
            await link.wait_readable()
            got.extend((trio.current_time(), p) for p in link.read_batch())
    return got


async def test_targeted_rules_drop_exactly_the_next_n(
    autojump_clock: MockClock,
) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(b, rules=[parse_rule("fin:in:2:skip=1")])
    for i in range(5):
        a.write(packet(FIN | ACK, seq=i))
    a.write(packet(ACK, seq=99))
    got = await pump(link, 1.0)
    # First FIN passes (skip=1), the next two are dropped, the rest pass.
    assert [seq_of(p) for _, p in got] == [0, 3, 4, 99]
    assert link.counters["in.rule_drop"] == 2


async def test_after_rule_arms_on_the_other_direction(
    autojump_clock: MockClock,
) -> None:
    a, b = memory_link_pair()
    sent: list[bytes] = []
    a.sent = None
    link = ImpairedLink(b, rules=[parse_rule("ack:out:1:after=fin/in")])
    b.sent = sent
    link.write(packet(ACK, seq=1))  # not armed yet: passes
    a.write(packet(FIN | ACK, seq=7))
    await pump(link, 0.1)  # the FIN goes by inbound: rule armed
    link.write(packet(ACK, seq=2))  # dropped
    link.write(packet(ACK, seq=3))  # count used up: passes
    assert [seq_of(p) for p in sent] == [1, 3]


async def test_loss_is_seeded_and_replayable(autojump_clock: MockClock) -> None:
    def run(seed: int) -> list[int]:
        a, b = memory_link_pair()
        b.sent = []
        link = ImpairedLink(a, outbound=Impairment(loss=0.3, seed=seed))
        for i in range(1000):
            link.write(packet(seq=i))
        assert link.counters["out.loss"] + len(b.inbox) == 1000
        return [seq_of(p) for p in b.inbox]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    assert 250 < 1000 - len(first) < 350  # ~30% lost


async def test_duplication(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(a, outbound=Impairment(dup=0.5, seed=4))
    for i in range(200):
        link.write(packet(seq=i))
    seqs = [seq_of(p) for p in b.inbox]
    assert len(seqs) == 200 + link.counters["out.dup"]
    assert 70 < link.counters["out.dup"] < 130
    assert sorted(set(seqs)) == list(range(200))


async def test_corruption_is_caught_by_the_checksum(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(a, outbound=Impairment(corrupt=1.0, seed=5))
    for i in range(50):
        link.write(packet(ACK, b"payload %d" % i, seq=i))
    assert link.counters["out.corrupt"] == 50
    for p in b.inbox:
        ip = parse_ipv4(p)  # the IP header is left intact
        with pytest.raises(WireError):
            parse_tcp(ip.payload, ip.src, ip.dst)


async def test_delay_and_jitter_in_both_directions(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    imp = Impairment(delay=0.020, jitter=0.005, seed=3)
    link = ImpairedLink(b, inbound=imp, outbound=imp)
    start = trio.current_time()
    for i in range(100):
        a.write(packet(seq=i))  # inbound for `link`
    got = await pump(link, start + 1)
    delays = [t - start for t, _ in got]
    assert len(got) == 100
    assert min(delays) >= 0.015 - 1e-9 and max(delays) <= 0.025 + 1e-9
    assert max(delays) - min(delays) > 0.005  # jitter spreads them
    # Jitter reorders (as netem's does).
    assert [seq_of(p) for _, p in got] != list(range(100))

    link.write(packet(seq=500))  # outbound: released by the waiting reader
    assert not a.inbox
    await pump(link, trio.current_time() + 0.1)
    assert [seq_of(p) for p in a.inbox] == [500]


async def test_reorder_holds_a_packet_behind_the_next(
    autojump_clock: MockClock,
) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(a, outbound=Impairment(reorder=0.2, seed=11))
    for i in range(200):
        link.write(packet(seq=i))
    await pump(link, 1.0)  # a held last packet leaves after `hold`
    seqs = [seq_of(p) for p in b.inbox]
    assert sorted(seqs) == list(range(200))
    held = link.counters["out.reorder"]
    assert 20 < held < 60  # ~20% of 200
    late = [seq for pos, seq in enumerate(seqs) if seq < pos]
    assert late  # some packets arrive after later ones
    # With gap=1 a held packet waits for one packet that is not held itself:
    # a run of k held packets is overtaken by exactly one.
    assert all(pos - seq == 1 for pos, seq in enumerate(seqs) if seq < pos)


async def test_rate_limit_spaces_packets_and_tail_drops(
    autojump_clock: MockClock,
) -> None:
    a, b = memory_link_pair()
    got: list[float] = []
    rate = 100_000.0  # bytes/s
    link = ImpairedLink(b, inbound=Impairment(rate=rate, queue=10, seed=1))
    start = trio.current_time()
    size = len(packet(ACK, bytes(960)))
    for i in range(20):
        a.write(packet(ACK, bytes(960), seq=i))
    got = [t - start for t, _ in await pump(link, start + 2)]
    # The bucket holds one 1500-byte burst: the first packet leaves at once,
    # the second when the rest of its tokens have come, then one every
    # size/rate seconds; the queue holds 10, the others are dropped at the tail.
    assert link.counters["in.rate_drop"] == 20 - len(got)
    assert len(got) == 11
    assert got[0] == pytest.approx(0, abs=1e-9)
    gaps = [y - x for x, y in zip(got, got[1:], strict=False)]
    first = (size - (1500 - size)) / rate
    assert gaps == pytest.approx([first] + [size / rate] * 9, abs=1e-6)


async def test_add_rule_at_run_time(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(b)
    a.write(packet(seq=1))
    assert [seq_of(p) for _, p in await pump(link, 0.1)] == [1]
    link.add_rule(parse_rule("any:in:all"))
    a.write(packet(seq=2))
    assert await pump(link, 0.2) == []


def test_with_seed_changes_both_directions() -> None:
    cfg = with_seed(parse_impair_spec("loss=1%", seed=1), 5)
    assert cfg.seed == 5
    assert cfg.inbound.seed == "5/in" and cfg.outbound.seed == "5/out"
    assert (IN, OUT) == ("in", "out")


async def test_after_rule_sees_its_trigger_without_other_impairment(
    autojump_clock: MockClock,
) -> None:
    """Only a rule, nothing random: outbound packets must still be inspected
    to arm `after=fin/out` (they used to bypass the pipe)."""
    a, b = memory_link_pair()
    link = ImpairedLink(b, rules=[parse_rule("!fin:in:all:after=fin/out")])
    a.write(packet(ACK, seq=1))
    assert [seq_of(p) for _, p in await pump(link, 0.1)] == [1]  # not armed
    link.write(packet(FIN | ACK, seq=2))
    a.write(packet(ACK, seq=3))  # dropped
    a.write(packet(FIN | ACK, seq=4))  # has FIN: passes
    assert [seq_of(p) for _, p in await pump(link, 0.2)] == [4]
