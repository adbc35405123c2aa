"""The TCB's ICMP entry points: RFC 5927 acceptance, hard errors during the
handshake, soft errors reported on timeout (Linux sk_err_soft), and path MTU
(RFC 1191) with a resend of what is in flight at the new size."""

from __future__ import annotations

import errno

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.state import State


def test_icmp_acceptable_only_for_sequence_numbers_in_flight() -> None:
    pair = Pair()
    a, _ = pair.establish()
    pair.drop = lambda direction, seg: True  # keep data in flight
    a.send(bytes(3000))
    pair.pump()
    una, top = a.snd_una, a.snd_max
    assert top != una
    assert a.icmp_acceptable(una) and a.icmp_acceptable(top)
    assert a.icmp_acceptable(una + 1460)
    assert not a.icmp_acceptable(una - 1)  # already acknowledged
    assert not a.icmp_acceptable(top + 1)  # never sent: a blind attack
    assert not a.icmp_acceptable(una + (1 << 31))
    assert a.counters["OutOfWindowIcmps"] == 3


def test_hard_error_in_syn_sent_aborts_at_once() -> None:
    pair = Pair()
    pair.drop = lambda direction, seg: True
    pair.a.open_active(0.0)
    pair.pump()
    assert pair.a.state is State.SYN_SENT
    assert pair.a.icmp_acceptable(pair.a.iss)
    pair.a.on_icmp_error(errno.EHOSTUNREACH, False, 0.1)
    assert pair.a.state is State.CLOSED
    assert pair.a.error is not None and pair.a.error.errno == errno.EHOSTUNREACH
    assert pair.a.deadline is None  # no more SYN retries
    assert pair.a.counters["AttemptFails"] == 1


def test_soft_error_when_established_is_reported_on_timeout() -> None:
    settings = Settings(msl=1.0, retries2=3)
    pair = Pair(settings)
    a, _ = pair.establish()
    pair.drop = lambda direction, seg: True  # the path is gone
    a.send(b"x" * 100)
    pair.pump()
    a.on_icmp_error(errno.EHOSTUNREACH, False, pair.now)
    assert a.state is State.ESTABLISHED and a.error is None  # soft: keep trying
    a.on_icmp_error(errno.ECONNREFUSED, True, pair.now)  # hard, yet soft here
    assert a.state is State.ESTABLISHED
    pair.run(until=pair.now + 600)
    assert a.state is State.CLOSED
    assert a.error is not None and a.error.errno == errno.ECONNREFUSED


def test_an_ack_clears_the_soft_error() -> None:
    settings = Settings(msl=1.0, retries2=3)
    pair = Pair(settings)
    a, b = pair.establish()
    a.on_icmp_error(errno.EHOSTUNREACH, False, pair.now)
    a.send(b"y" * 100)
    pair.run(until=pair.now + 1.0)  # delivered and (delayed-)acknowledged
    assert b.read(1000) == b"y" * 100
    assert a.snd_una == a.snd_max and a.soft_error == 0
    pair.drop = lambda direction, seg: True
    a.send(b"z")
    pair.pump()
    pair.run(until=pair.now + 600)
    assert a.error is not None and a.error.errno == errno.ETIMEDOUT


def test_path_mtu_lowers_mss_and_resends_in_flight_at_the_new_size() -> None:
    pair = Pair(mss=1460)
    a, b = pair.establish()
    assert a.mss == 1448  # 1460 less the timestamp option
    pair.drop = lambda direction, seg: direction == "A>B" and len(seg.payload) > 1228
    data = bytes(range(256)) * 40
    a.send(data)
    pair.pump()
    assert b.read(1 << 20) == b""  # every full-sized segment was dropped
    cwnd, una = a.cwnd, a.snd_una
    mark = len(pair.log)
    a.on_path_mtu(1280, pair.now)
    assert a.mss == 1280 - 40 - 12
    assert a.cwnd == cwnd  # not congestion: the window stays
    pair.pump()
    resent = [e.seg for e in pair.sent("A>B", mark) if e.seg.payload]
    assert resent and all(len(s.payload) <= 1228 for s in resent)
    assert resent[0].seq == una
    pair.run()
    assert b.read(1 << 20) == data
    assert a.counters["TCPPMTUReduced"] == 1


def test_path_mtu_never_rises_and_has_a_floor() -> None:
    pair = Pair(mss=1460)
    a, _ = pair.establish()
    a.on_path_mtu(1500, pair.now)
    assert a.mss == 1448
    a.on_path_mtu(100, pair.now)  # below min_pmtu 552: the floor
    assert a.mss == 552 - 40 - 12
    a.on_path_mtu(1000, pair.now)
    assert a.mss == 552 - 40 - 12


def test_path_mtu_in_syn_sent_limits_the_mss_offered_and_used() -> None:
    pair = Pair(mss=1460)
    pair.a.open_active(0.0)
    pair.a.on_path_mtu(1000, 0.0)
    assert pair.a.mss_local == 960
    pair.run()
    assert pair.a.state is State.ESTABLISHED
    assert pair.a.mss == 960 - 12
