"""RFC 5961 (blind RST/SYN/ACK), unacceptable segments, keepalive."""

from __future__ import annotations

import errno

import pytest

from tests.tcb_harness import Pair, mk
from ustack.config import Settings
from ustack.tcp.seq import MASK
from ustack.tcp.state import State
from ustack.wire.tcp import ACK, PSH, RST, SYN

ISS_A = 1000
ISS_B = 5000


def scripted_a(**kw: object) -> Pair:
    """A established; B is played by hand (A's output goes nowhere)."""
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, **kw)  # type: ignore[arg-type]
    p.establish()
    p.drop = lambda d, s: d == "A>B"
    return p


def answers(p: Pair, n: int) -> list[tuple[int, int, int]]:
    return [(e.seg.flags, e.seg.seq, e.seg.ack) for e in p.sent("A>B", n)]


# ----------------------------------------------------------------------
# RST (RFC 5961 3)


def test_rst_exact_seq_resets() -> None:
    p = scripted_a()
    n = len(p.log)
    p.inject_a(mk(ISS_B + 1, 0, RST, to_b=False))
    assert p.a.state is State.CLOSED
    assert isinstance(p.a.error, ConnectionResetError)
    assert p.a.error.errno == errno.ECONNRESET
    assert p.a.readable and p.a.deadline is None
    assert answers(p, n) == []


def test_rst_in_window_not_exact_challenge_ack() -> None:
    p = scripted_a()
    n = len(p.log)
    p.inject_a(mk(ISS_B + 100, 0, RST, to_b=False))
    assert p.a.state is State.ESTABLISHED and p.a.error is None
    assert answers(p, n) == [(ACK, ISS_A + 1, ISS_B + 1)]
    # The genuine peer answers the challenge with an exact RST.
    p.inject_a(mk(ISS_B + 1, 0, RST, to_b=False))
    assert isinstance(p.a.error, ConnectionResetError)


def test_rst_out_of_window_ignored() -> None:
    p = scripted_a()
    n = len(p.log)
    wnd = p.a.rcv_adv - p.a.rcv_nxt
    for seq in (ISS_B, ISS_B - 5000, ISS_B + 1 + wnd, ISS_B + 1 + 2**31):
        p.inject_a(mk(seq, 0, RST, to_b=False))
        p.inject_a(mk(seq, ISS_A + 1, RST | ACK, to_b=False))
    assert p.a.state is State.ESTABLISHED and p.a.error is None
    assert answers(p, n) == []


def test_rst_exact_after_data() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    b.send(b"x" * 3000)
    p.run(until=1.0)
    assert a.rcv_nxt == ISS_B + 3001
    p.drop = lambda d, s: d == "A>B"
    p.inject_a(mk(ISS_B + 1, 0, RST, to_b=False))  # stale now: challenge
    assert a.state is State.ESTABLISHED
    p.inject_a(mk(ISS_B + 3001, 0, RST, to_b=False))
    assert a.state is State.CLOSED and isinstance(a.error, ConnectionResetError)


# ----------------------------------------------------------------------
# SYN in a synchronized state (RFC 5961 4)


@pytest.mark.parametrize("seq_off", [1, 50, -10])
def test_syn_in_established_challenge_ack(seq_off: int) -> None:
    p = scripted_a()
    n = len(p.log)
    p.inject_a(mk(ISS_B + seq_off, 0, SYN, to_b=False))
    assert p.a.state is State.ESTABLISHED and p.a.error is None
    assert answers(p, n) == [(ACK, ISS_A + 1, ISS_B + 1)]


def test_syn_in_close_wait_challenge_ack() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    b.shutdown_write(p.now)
    p.run(until=1.0)
    assert a.state is State.CLOSE_WAIT
    p.drop = lambda d, s: d == "A>B"
    n = len(p.log)
    p.inject_a(mk(ISS_B + 2, 0, SYN, to_b=False))
    assert a.state is State.CLOSE_WAIT
    assert answers(p, n) == [(ACK, ISS_A + 1, ISS_B + 2)]


# ----------------------------------------------------------------------
# ACK validation (RFC 9293 3.10.7.4 fifth, RFC 5961 5)


def test_ack_for_unsent_data_acked_and_dropped() -> None:
    p = scripted_a()
    a = p.a
    a.send(b"abc")
    p.pump()
    n = len(p.log)
    p.inject_a(mk(ISS_B + 1, ISS_A + 10, ACK | PSH, payload=b"zz", to_b=False))
    assert a.snd_una == ISS_A + 1  # nothing acknowledged
    assert a.read(10) == b""  # payload dropped with the segment
    assert a.rcv_nxt == ISS_B + 1
    assert answers(p, n) == [(ACK, ISS_A + 4, ISS_B + 1)]


def test_too_old_ack_dropped() -> None:
    p = scripted_a()
    a = p.a
    n = len(p.log)
    old = (ISS_A + 1 - a.max_snd_wnd - 10) & MASK
    p.inject_a(mk(ISS_B + 1, old, ACK | PSH, payload=b"zz", to_b=False))
    assert a.read(10) == b""
    assert answers(p, n) == [(ACK, ISS_A + 1, ISS_B + 1)]
    # An old ACK within MAX.SND.WND is acceptable: its data is taken.
    p.inject_a(mk(ISS_B + 1, ISS_A - 5, ACK | PSH, payload=b"ok", to_b=False))
    assert a.read(10) == b"ok"


def test_segment_without_ack_ignored() -> None:
    p = scripted_a()
    n = len(p.log)
    p.inject_a(mk(ISS_B + 1, 0, PSH, payload=b"noack", to_b=False))
    assert p.a.read(10) == b""
    assert answers(p, n) == []


def test_out_of_window_data_acked_and_dropped() -> None:
    p = scripted_a()
    a = p.a
    n = len(p.log)
    wnd = a.rcv_adv - a.rcv_nxt
    p.inject_a(mk(ISS_B + 1 + wnd, ISS_A + 1, ACK, payload=b"far", to_b=False))
    p.inject_a(mk(ISS_B - 10, ISS_A + 1, ACK, payload=b"old", to_b=False))
    assert a.read(10) == b"" and len(a.ooo) == 0
    assert answers(p, n) == [(ACK, ISS_A + 1, ISS_B + 1)] * 2


def test_retransmitted_data_trimmed() -> None:
    p = scripted_a()
    a = p.a
    p.inject_a(mk(ISS_B + 1, ISS_A + 1, ACK, payload=b"hello", to_b=False))
    p.inject_a(mk(ISS_B + 1, ISS_A + 1, ACK, payload=b"hello world", to_b=False))
    assert a.read(100) == b"hello world"
    assert a.rcv_nxt == ISS_B + 12


# ----------------------------------------------------------------------
# Keepalive (RFC 1122 4.2.3.6)


KA = Settings(msl=1.0, keepalive_time=10.0, keepalive_intvl=2.0,
              keepalive_probes=3)


def test_keepalive_off_by_default() -> None:
    p = Pair(settings=KA)
    a, b = p.establish()
    p.run(until=1000)
    assert p.flags_log() == ["A>B S", "B>A SA", "A>B A"]
    assert a.deadline is None


def test_keepalive_unanswered_probes_then_reset() -> None:
    p = Pair(settings=KA, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    p.now = 5.0
    a.set_keepalive(True, p.now)
    assert a.ka_deadline == 15.0 and a.deadline == 15.0
    p.drop = lambda d, s: d == "B>A"  # B went silent
    n = len(p.log)
    p.run(until=100)
    probes = [e for e in p.sent("A>B", n) if not e.seg.flags & RST]
    assert [e.time for e in probes] == [15.0, 17.0, 19.0]
    for e in probes:
        assert (e.seg.flags, e.seg.seq, e.seg.payload) == (ACK, ISS_A, b"")
    (rst,) = [e for e in p.sent("A>B", n) if e.seg.flags & RST]
    assert rst.time == 21.0 and rst.seg.seq == ISS_A + 1
    assert a.state is State.CLOSED
    assert isinstance(a.error, TimeoutError) and a.error.errno == errno.ETIMEDOUT
    # B accepted the exact RST.
    assert b.state is State.CLOSED and isinstance(b.error, ConnectionResetError)


def test_keepalive_answered_keeps_connection() -> None:
    p = Pair(settings=KA, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    a.set_keepalive(True, p.now)
    n = len(p.log)
    p.run(until=55)
    probes = p.sent("A>B", n)
    replies = p.sent("B>A", n)
    assert [e.time for e in probes] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert [(e.seg.flags, e.seg.ack, e.time) for e in replies] == [
        (ACK, ISS_A + 1, t) for t in (10.0, 20.0, 30.0, 40.0, 50.0)]
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert a.ka_probes == 0 and a.ka_deadline == 60.0


def test_keepalive_one_answer_after_losses_resets_count() -> None:
    p = Pair(settings=KA, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    a.set_keepalive(True, p.now)
    p.drop = lambda d, s: d == "B>A" and p.now < 13.0  # first two lost
    p.run(until=40)
    times = [e.time for e in p.sent("A>B")[2:]]  # after S, A
    assert times == [10.0, 12.0, 14.0, 24.0, 34.0]
    assert a.state is State.ESTABLISHED and a.error is None


def test_keepalive_idle_timer_reset_by_traffic() -> None:
    p = Pair(settings=KA, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    a.set_keepalive(True, p.now)
    p.run(until=8.0)
    b.send(b"ping")
    p.run(until=8.5)
    assert a.ka_deadline == 18.0
    n = len(p.log)
    p.run(until=18.5)
    probe = [e for e in p.sent("A>B", n) if not e.seg.payload][-1]
    assert probe.time == 18.0 and probe.seg.seq == ISS_A  # SND.NXT - 1


def test_keepalive_not_sent_while_data_in_flight() -> None:
    s = Settings(msl=1.0, keepalive_time=1.0, keepalive_intvl=1.0,
                 keepalive_probes=2, retries2=3)
    p = Pair(settings=s, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    a.set_keepalive(True, p.now)
    p.drop = lambda d, s: True
    a.send(b"stuck")
    p.run(until=100)
    sent = [e.seg for e in p.sent("A>B")[2:]]
    assert all(seg.payload == b"stuck" or seg.flags & RST for seg in sent)
    assert isinstance(a.error, TimeoutError)  # the RTO gave up, not keepalive


def test_keepalive_in_close_wait_and_fin_wait_2() -> None:
    p = Pair(settings=KA, iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    a.shutdown_write(p.now)  # A: FIN_WAIT_2, B: CLOSE_WAIT
    p.run(until=1.0)
    a.set_keepalive(True, p.now)
    b.set_keepalive(True, p.now)
    n = len(p.log)
    p.run(until=11.5)
    probes = [(e.direction, e.seg.seq) for e in p.log[n:] if e.time == 11.0
              and e.seg.ack in (ISS_B + 1, ISS_A + 2)]
    assert ("A>B", ISS_A + 1) in probes  # SND.NXT - 1 (after the FIN)
    assert ("B>A", ISS_B) in probes
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
