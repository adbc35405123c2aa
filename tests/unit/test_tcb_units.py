"""Building blocks of the TCB: sequence arithmetic, RTO, reset_for
(reassembly: test_reassembly.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.tcp.rto import RtoEstimator
from ustack.tcp.seq import (
    MASK,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in,
    seq_le,
    seq_lt,
)
from ustack.tcp.tcb import reset_for
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment

u32 = st.integers(min_value=0, max_value=MASK)
# Distances that stay within half the sequence space (RFC 1982 comparability).
near = st.integers(min_value=-(2**31) + 1, max_value=2**31 - 1)


# ----------------------------------------------------------------------
# Sequence arithmetic


def test_seq_wrap_examples() -> None:
    top = MASK  # 2**32 - 1
    assert seq_add(top, 1) == 0
    assert seq_add(top - 2, 5) == 2
    assert seq_lt(top, 0) and seq_lt(top - 2, 2)
    assert seq_gt(0, top) and seq_gt(2, top - 2)
    assert seq_le(top, top) and seq_ge(0, 0)
    assert not seq_lt(5, 5) and not seq_gt(5, 5)
    assert seq_diff(2, top - 2) == 5
    assert seq_diff(top - 2, 2) == -5
    assert seq_diff(0, 0x80000000) == -(2**31)
    assert seq_in(top, top - 1, 3)
    assert seq_in(0, top - 1, 3) and seq_in(2, top - 1, 3)
    assert not seq_in(3, top - 1, 3)  # high is exclusive
    assert not seq_in(top - 2, top - 1, 3)
    assert not seq_in(7, 7, 7)  # empty window holds nothing


@given(u32, near)
def test_seq_ordering_matches_distance(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert seq_diff(b, a) == d
    assert seq_diff(a, b) == -d
    assert seq_lt(a, b) == (d > 0)
    assert seq_gt(a, b) == (d < 0)
    assert seq_le(a, b) == (d >= 0)
    assert seq_ge(a, b) == (d <= 0)


@given(u32, u32)
def test_seq_trichotomy(a: int, b: int) -> None:
    assert [seq_lt(a, b), a == b, seq_gt(a, b)].count(True) == 1 or (
        seq_diff(a, b) == -(2**31)  # exactly half-way: both "less than"
    )
    assert seq_le(a, b) == (seq_lt(a, b) or a == b)
    assert seq_ge(a, b) == (seq_gt(a, b) or a == b)


@given(u32, st.integers(min_value=0, max_value=2**31), st.integers(0, 2**31))
def test_seq_in_is_offset_below_width(low: int, width: int, off: int) -> None:
    x = seq_add(low, off)
    assert seq_in(x, low, seq_add(low, width)) == (off < width)


@given(u32, near, near)
def test_seq_shift_invariance(a: int, d1: int, d2: int) -> None:
    """Comparisons depend only on the difference, wherever the wrap is."""
    for base in (0, 2**31, MASK, MASK - 2):
        x, y = seq_add(a, base), seq_add(seq_add(a, d1), base)
        assert seq_lt(x, y) == seq_lt(a, seq_add(a, d1))
    assert seq_add(seq_add(a, d1), d2) == seq_add(a, d1 + d2)


@given(u32, st.integers(min_value=0, max_value=2**32 * 3))
def test_seq_add_stays_in_range(a: int, n: int) -> None:
    r = seq_add(a, n)
    assert 0 <= r <= MASK and r == (a + n) % 2**32


# ----------------------------------------------------------------------
# RTO (RFC 6298)


def test_rto_first_and_second_sample() -> None:
    r = RtoEstimator(rto_min=0.2, rto_max=120.0, rto=1.0)
    r.sample(0.5)  # 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR
    assert r.srtt == pytest.approx(0.5)
    assert r.rttvar == pytest.approx(0.25)
    assert r.rto == pytest.approx(1.5)
    r.sample(0.1)  # 2.3: RTTVAR first, with the old SRTT
    assert r.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.4)
    assert r.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.1)
    assert r.srtt is not None
    assert r.rto == pytest.approx(r.srtt + 4 * r.rttvar)


def test_rto_clamped() -> None:
    r = RtoEstimator(rto_min=0.2, rto_max=3.0, rto=1.0)
    r.sample(0.001)
    assert r.rto == 0.2
    r.sample(50.0)
    assert r.rto == 3.0
    r = RtoEstimator(rto_min=0.2, rto_max=5.0, rto=1.0)
    seen = []
    for _ in range(5):
        r.backoff()
        seen.append(r.rto)
    assert seen == [2.0, 4.0, 5.0, 5.0, 5.0]


def test_rto_constant_rtt_converges() -> None:
    r = RtoEstimator(rto_min=0.0, rto_max=120.0, rto=1.0)
    for _ in range(200):
        r.sample(0.3)
    assert r.srtt == pytest.approx(0.3)
    assert r.rttvar == pytest.approx(0.0, abs=1e-9)
    assert r.rto == pytest.approx(0.301)  # G = 1 ms floors K*RTTVAR


# ----------------------------------------------------------------------
# reset_for (RFC 9293 3.10.7.1)


def _seg(flags: int, seq: int = 777, ack: int = 0, payload: bytes = b"") -> TcpSegment:
    return TcpSegment(1234, 80, seq, ack, flags, 1000, payload)


def test_reset_for_ack_set() -> None:
    rst = reset_for(_seg(ACK | PSH, seq=777, ack=4242, payload=b"xyz"))
    assert rst is not None
    assert (rst.src_port, rst.dst_port) == (80, 1234)
    assert rst.flags == RST
    assert rst.seq == 4242
    assert rst.payload == b""


def test_reset_for_ack_not_set() -> None:
    rst = reset_for(_seg(SYN, seq=MASK))  # SYN to a closed port
    assert rst is not None
    assert rst.flags == RST | ACK
    assert rst.seq == 0
    assert rst.ack == 0  # SEG.SEQ + SEG.LEN wraps
    rst = reset_for(_seg(FIN, seq=100, payload=b"abcd"))
    assert rst is not None and rst.ack == 105 and rst.flags == RST | ACK
    rst = reset_for(_seg(0, seq=100, payload=b"abcd"))
    assert rst is not None and rst.ack == 104


def test_reset_for_rst_never_answered() -> None:
    assert reset_for(_seg(RST)) is None
    assert reset_for(_seg(RST | ACK, ack=5)) is None
