"""Random streams keyed by role (`data=`): a ustack sender (data out of
ustack) and a kernel sender (data into it) meet the same impairment
decisions per packet index at one seed, which the lossy benchmark relies
on to compare them fairly (tools/bench_lossy.py, docs/benchmarks.md)."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

import pytest
from bench_lossy import PATHS, data_direction, impair_spec

from ustack.link.impair import (
    IN,
    OUT,
    ImpairConfig,
    ImpairSpecError,
    Pipe,
    _Rules,
    parse_impair_spec,
    with_seed,
)
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, TcpSegment, parse_tcp

SRC = IPv4Address("10.0.0.1").packed
DST = IPv4Address("10.0.0.2").packed


def packet(seq: int, payload: bytes = b"") -> bytes:
    seg = TcpSegment(40000, 80, seq, 1, ACK, 1000, payload)
    return build_tcp_packet(SRC, DST, seg, 1)


def seq_of(p: bytes) -> int:
    return parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False).seq


def transfer(
    cfg: ImpairConfig, data: str, n: int = 2000
) -> tuple[list[int], list[int]]:
    """n data packets one way, n // 2 ACKs the other, 1 ms apart; what
    comes out of each direction (packet indices, in delivery order)."""
    pipes = {
        d: Pipe(d, cfg.inbound if d == IN else cfg.outbound, _Rules(cfg.rules),
                1500, Counter())
        for d in (IN, OUT)
    }
    ack_dir = OUT if data == IN else IN
    got: dict[str, list[int]] = {IN: [], OUT: []}
    now = 0.0
    for i in range(n):
        now += 0.001
        pipes[data].push(packet(i, b"x" * 1000), now)
        if i % 2:
            pipes[ack_dir].push(packet(i // 2), now)
        for d, pipe in pipes.items():
            got[d] += [seq_of(p) for p in pipe.pop_due(now)]
    for d, pipe in pipes.items():
        got[d] += [seq_of(p) for p in pipe.pop_due(now + 10.0)]
    return got[data], got[ack_dir]


@pytest.mark.parametrize("path", ["loss1", "mixed"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_senders_see_the_same_decisions(path: str, seed: int) -> None:
    spec = PATHS[path]
    ustack = parse_impair_spec(impair_spec(spec, seed, "ustack-bbr"))
    linux = parse_impair_spec(impair_spec(spec, seed, "bbr"))
    assert (ustack.data, linux.data) == (OUT, IN)
    u_data, u_acks = transfer(ustack, OUT)
    l_data, l_acks = transfer(linux, IN)
    assert len(u_data) < 2000  # something was dropped...
    assert u_data == l_data  # ...the same packets, dups and reorders alike
    assert u_acks == l_acks


def test_keyed_by_direction_the_senders_differ() -> None:
    # Without data= (the default, and the bench before it): the k-th data
    # packet of a ustack sender and of a kernel sender meet different
    # streams, so their losses differ at the same seed.
    cfg = parse_impair_spec(f"{PATHS['mixed']},seed=1")
    assert cfg.data is None
    assert cfg.inbound.seed == "1/in" and cfg.outbound.seed == "1/out"
    assert transfer(cfg, OUT)[0] != transfer(cfg, IN)[0]


def test_data_item_parses_round_trips_and_keeps_under_with_seed() -> None:
    cfg = parse_impair_spec("loss=1%,data=out,seed=4")
    assert cfg.data == OUT
    assert (cfg.inbound.seed, cfg.outbound.seed) == ("4/ack", "4/data")
    assert parse_impair_spec(cfg.describe()) == cfg
    assert "data=out" in cfg.describe()
    again = with_seed(cfg, 9)
    assert (again.inbound.seed, again.outbound.seed) == ("9/ack", "9/data")
    cfg = parse_impair_spec("loss=1%,data=IN,seed=4")
    assert (cfg.inbound.seed, cfg.outbound.seed) == ("4/data", "4/ack")
    with pytest.raises(ImpairSpecError, match="direction must be"):
        parse_impair_spec("loss=1%,data=up")


def test_bench_data_direction_per_sender() -> None:
    assert data_direction("ustack") == data_direction("ustack-bbr-x2") == OUT
    assert data_direction("cubic") == data_direction("bbr") == IN
