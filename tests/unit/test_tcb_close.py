"""Closing: four-way, three-way, simultaneous, half-close, TIME_WAIT, FIN
retransmission, orphans, aborts."""

from __future__ import annotations

import errno

import pytest

from tests.tcb_harness import Pair, mk
from ustack.config import Settings
from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, FIN, PSH, RST, TcpSegment

ISS_A = 1000
ISS_B = 5000
MSL = 1.0


def established(**kw: object) -> Pair:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, **kw)  # type: ignore[arg-type]
    p.establish()
    return p


def test_four_way_close_a_first() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    p.now = 10.0
    n = len(p.log)
    a.close(p.now)
    assert a.state is State.FIN_WAIT_1
    p.run(until=10.02)  # B has not answered yet: it delays the ACK of FIN
    assert p.states() == (State.FIN_WAIT_1, State.CLOSE_WAIT)
    assert b.fin_received and b.readable and b.read(100) == b""
    p.run(until=11.0)
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert p.entered("A", State.FIN_WAIT_2) == pytest.approx(10.04)
    # A's application closed: an orphan gets fin_timeout (60 s) in FIN_WAIT_2.
    assert a.close_deadline == pytest.approx(10.04 + 60)
    # B stays in CLOSE_WAIT for as long as its application wants.
    p.run(until=50.0)
    assert b.state is State.CLOSE_WAIT
    b.close(p.now)
    assert b.state is State.LAST_ACK
    p.run(until=50.5)
    assert p.states() == (State.TIME_WAIT, State.CLOSED)
    assert a.close_deadline == 50.0 + 2 * MSL
    assert p.flags_log(n) == ["A>B FA", "B>A A", "B>A FA", "A>B A"]
    fin_a, ack_b, fin_b, ack_a = (e.seg for e in p.log[n:])
    assert (fin_a.seq, fin_a.ack) == (ISS_A + 1, ISS_B + 1)
    assert ack_b.ack == ISS_A + 2  # FIN takes one sequence number
    assert (fin_b.seq, fin_b.ack) == (ISS_B + 1, ISS_A + 2)
    assert (ack_a.seq, ack_a.ack) == (ISS_A + 2, ISS_B + 2)
    p.run(until=51.999)
    assert a.state is State.TIME_WAIT
    p.run(until=60.0)
    assert a.state is State.CLOSED
    assert p.entered("A", State.CLOSED) == 50.0 + 2 * MSL
    assert p.trace("A")[-5:] == [State.ESTABLISHED, State.FIN_WAIT_1,
                                 State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED]
    assert p.trace("B")[-4:] == [State.ESTABLISHED, State.CLOSE_WAIT,
                                 State.LAST_ACK, State.CLOSED]
    assert a.error is None and b.error is None
    assert a.deadline is None and b.deadline is None


def test_time_wait_uses_msl_setting() -> None:
    p = established(settings=Settings(msl=7.5))
    assert p.b is not None
    p.a.close(p.now)
    p.run(until=1.0)
    p.b.close(p.now)
    p.run(until=1.5)
    t = p.entered("A", State.TIME_WAIT)
    p.run(until=100)
    assert p.entered("A", State.CLOSED) == t + 15.0


def test_fin_piggybacked_on_last_data() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    n = len(p.log)
    a.send(b"bye")
    a.close(p.now)  # before the stack flushed
    p.run(until=1.0)
    fin = p.log[n].seg
    assert p.flags_log(n)[0] == "A>B FPA+3"
    assert (fin.seq, fin.payload, fin.flags) == (ISS_A + 1, b"bye", FIN | PSH | ACK)
    assert b.read(100) == b"bye" and b.fin_received
    assert b.rcv_nxt == ISS_A + 5
    assert a.state is State.FIN_WAIT_2


def test_three_segment_close_fin_ack_merged() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    n = len(p.log)
    a.close(p.now)
    p.run(until=p.now + 0.01)  # B got the FIN; its ACK is delayed 40 ms
    assert b.state is State.CLOSE_WAIT
    assert b.read(10) == b""
    b.close(p.now)  # within the delayed-ACK time
    p.run(until=p.now + 0.5)
    assert p.flags_log(n) == ["A>B FA", "B>A FA", "A>B A"]
    fin_b = p.log[n + 1].seg
    assert (fin_b.seq, fin_b.ack) == (ISS_B + 1, ISS_A + 2)
    # FIN_WAIT_1 got FIN + ACK of its FIN at once: straight to TIME_WAIT.
    assert p.trace("A")[-3:] == [State.ESTABLISHED, State.FIN_WAIT_1,
                                 State.TIME_WAIT]
    assert p.states() == (State.TIME_WAIT, State.CLOSED)


def test_two_segment_close_data_fin_both_ways() -> None:
    """FIN on data both ways: the close takes very few segments."""
    p = established()
    a, b = p.a, p.b
    assert b is not None
    n = len(p.log)
    a.send(b"req")
    a.close(p.now)
    p.pump()
    assert b.read(10) == b"req"
    b.send(b"resp")
    b.close(p.now)
    p.run(until=p.now + 0.5)
    assert p.flags_log(n) == ["A>B FPA+3", "B>A FPA+4", "A>B RA"]
    # A's application closed, so "resp" cannot be read: A resets (RFC 2525).
    # The RST is exact (seq = B's RCV.NXT); B in LAST_ACK closes quietly.
    assert p.log[n + 2].seg.seq == ISS_A + 5
    assert a.state is State.CLOSED and b.state is State.CLOSED
    assert p.trace("B")[-2:] == [State.LAST_ACK, State.CLOSED]
    assert b.error is None and a.error is None


def test_fin_wait_1_fin_with_ack_goes_to_time_wait_scripted() -> None:
    p = established()
    a = p.a
    p.drop = lambda d, s: True  # scripted peer
    a.close(p.now)
    p.pump()
    assert a.state is State.FIN_WAIT_1
    n = len(p.log)
    p.inject_a(mk(ISS_B + 1, ISS_A + 2, FIN | ACK, to_b=False))
    assert a.state is State.TIME_WAIT
    (ack,) = [e.seg for e in p.log[n + 1:]]
    assert (ack.flags, ack.seq, ack.ack) == (ACK, ISS_A + 2, ISS_B + 2)
    assert a.close_deadline == p.now + 2 * MSL
    assert a.rtx_deadline is None


def test_fin_wait_1_fin_without_ack_is_closing() -> None:
    p = established()
    a = p.a
    p.drop = lambda d, s: True
    a.close(p.now)
    p.pump()
    p.inject_a(mk(ISS_B + 1, ISS_A + 1, FIN | ACK, to_b=False))  # FIN not acked
    assert a.state is State.CLOSING
    assert p.log[-1].seg.flags == ACK and p.log[-1].seg.ack == ISS_B + 2
    p.now += 0.1
    p.inject_a(mk(ISS_B + 2, ISS_A + 2, ACK, to_b=False))
    assert a.state is State.TIME_WAIT
    assert a.close_deadline == pytest.approx(p.now + 2 * MSL)


def test_simultaneous_close() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    p.now = 3.0
    n = len(p.log)
    a.close(p.now)
    b.close(p.now)
    p.run(until=3.5)
    assert p.flags_log(n) == ["A>B FA", "B>A FA", "A>B A", "B>A A"]
    assert p.trace("A")[-3:] == [State.FIN_WAIT_1, State.CLOSING, State.TIME_WAIT]
    assert p.trace("B")[-3:] == [State.FIN_WAIT_1, State.CLOSING, State.TIME_WAIT]
    assert a.close_deadline == b.close_deadline == 3.0 + 2 * MSL
    p.run(until=10)
    assert p.states() == (State.CLOSED, State.CLOSED)
    assert a.error is None and b.error is None


def test_half_close_keeps_receiving() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    a.send(b"request")
    a.shutdown_write(p.now)
    p.run(until=1.0)
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert b.read(100) == b"request" and b.fin_received
    assert a.close_deadline is None  # not an orphan: no fin_timeout
    # B keeps sending; A keeps receiving.
    data = bytes(range(256)) * 400
    got = bytearray()
    pos = 0
    while len(got) < len(data):
        pos += b.send(data[pos : pos + 8192])
        p.run(until=p.now + 0.1)
        got += a.read(1 << 20)
    assert bytes(got) == data
    assert a.state is State.FIN_WAIT_2
    assert not a.fin_received
    b.close(p.now)
    p.run(until=p.now + 0.5)
    assert a.fin_received and a.read(10) == b""
    assert p.states() == (State.TIME_WAIT, State.CLOSED)


def test_fin_wait_2_not_orphan_stays_forever() -> None:
    p = established(settings=Settings(msl=MSL, fin_timeout=5.0))
    a, b = p.a, p.b
    assert b is not None
    a.shutdown_write(p.now)
    p.run(until=1000.0)
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert a.deadline is None
    b.send(b"late")
    p.run(until=1001.0)
    assert a.read(10) == b"late"


def test_orphan_fin_wait_2_dropped_after_fin_timeout() -> None:
    p = established(settings=Settings(msl=MSL, fin_timeout=5.0))
    a, b = p.a, p.b
    assert b is not None
    p.now = 2.0
    a.close(p.now)
    p.run(until=3.0)
    assert a.state is State.FIN_WAIT_2 and a.is_orphan
    t = p.entered("A", State.FIN_WAIT_2)
    assert a.close_deadline == pytest.approx(t + 5.0)
    n = len(p.log)
    p.run(until=100.0)
    assert p.entered("A", State.CLOSED) == pytest.approx(t + 5.0)
    assert a.error is None
    # The peer learns with a RST it accepts (seq == its RCV.NXT).
    rst = p.log[n].seg
    assert p.log[n].direction == "A>B" and rst.flags & RST and rst.seq == ISS_A + 2
    assert b.state is State.CLOSED and isinstance(b.error, ConnectionResetError)


def test_close_after_shutdown_in_fin_wait_2_starts_fin_timeout() -> None:
    p = established(settings=Settings(msl=MSL, fin_timeout=5.0))
    a = p.a
    a.shutdown_write(p.now)
    p.run(until=10.0)
    assert a.state is State.FIN_WAIT_2 and a.deadline is None
    a.close(p.now)
    assert a.close_deadline == 15.0
    p.run(until=20.0)
    assert p.entered("A", State.CLOSED) == 15.0


def test_close_wait_stays_when_peer_is_not_orphan() -> None:
    p = established(settings=Settings(msl=MSL, fin_timeout=5.0))
    assert p.b is not None
    p.a.shutdown_write(p.now)
    p.run(until=5000.0)
    assert p.b.state is State.CLOSE_WAIT and p.b.deadline is None


# ----------------------------------------------------------------------
# TIME_WAIT


def _to_time_wait(p: Pair, drop_last_ack: bool) -> None:
    assert p.b is not None
    p.a.close(p.now)
    p.run(until=p.now + 0.1)
    dropped: list[TcpSegment] = []

    def drop(d: str, s: TcpSegment) -> bool:
        if drop_last_ack and d == "A>B" and s.flags == ACK and not dropped:
            dropped.append(s)
            return True
        return False

    p.drop = drop
    p.b.close(p.now)
    p.pump()
    assert p.a.state is State.TIME_WAIT


def test_time_wait_reacks_retransmitted_fin_and_restarts_2msl() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    p.now = 1.0
    _to_time_wait(p, drop_last_ack=True)
    t_tw = p.entered("A", State.TIME_WAIT)
    assert a.close_deadline == t_tw + 2 * MSL
    assert b.state is State.LAST_ACK
    n = len(p.log)
    p.run(until=t_tw + 1.0)
    # B's FIN retransmitted after its RTO (0.2 s); A ACKs it again.
    assert p.flags_log(n) == ["B>A FA", "A>B A"]
    t_rtx = p.log[n].time
    assert t_rtx == pytest.approx(t_tw + 0.2)
    assert p.log[n + 1].seg.ack == ISS_B + 2
    assert a.close_deadline == pytest.approx(t_rtx + 2 * MSL)  # restarted
    assert b.state is State.CLOSED and b.error is None
    p.run(until=t_tw + 2 * MSL + 0.1)
    assert a.state is State.TIME_WAIT  # would have ended without the restart
    p.run(until=t_tw + 10)
    assert p.entered("A", State.CLOSED) == pytest.approx(t_rtx + 2 * MSL)


def test_without_time_wait_the_peer_would_get_rst() -> None:
    """What TIME_WAIT prevents: a closed A answers B's FIN with RST."""
    p = established()
    a, b = p.a, p.b
    assert b is not None
    _to_time_wait(p, drop_last_ack=True)
    a._enter_closed()  # pretend A skipped TIME_WAIT
    p.run(until=p.now + 1.0)
    assert isinstance(b.error, ConnectionResetError) or b.state is State.CLOSED
    assert any(e.direction == "A>B" and e.seg.flags & RST for e in p.log)


def test_rst_in_time_wait_ignored() -> None:
    p = established()
    a = p.a
    _to_time_wait(p, drop_last_ack=False)
    deadline = a.close_deadline
    n = len(p.log)
    p.inject_a(mk(ISS_B + 2, ISS_A + 2, RST | ACK, to_b=False))
    p.inject_a(mk(ISS_B + 2, 0, RST, to_b=False))
    assert a.state is State.TIME_WAIT  # RFC 1337
    assert a.close_deadline == deadline
    assert len(p.log) == n + 2  # no answer


def test_time_wait_out_of_window_fin_neither_restarts_nor_floods() -> None:
    """Issue 10 item 5: any FIN, even out of window, restarted 2MSL, and every
    FIN, SYN or data segment got an ACK (a blind 1:1 reflector). Only the
    peer's own FIN again restarts 2MSL; other ACKs are rate-limited."""
    p = established()
    a = p.a
    _to_time_wait(p, drop_last_ack=False)
    deadline = a.close_deadline
    n = len(p.log)
    for i in range(10):  # blind FINs at guessed sequence numbers
        p.inject_a(mk(ISS_B + 5000 + i, ISS_A + 2, FIN | ACK, to_b=False))
        p.inject_a(mk(ISS_B + 9000, ISS_A + 2, ACK, payload=b"x", to_b=False))
    assert a.close_deadline == deadline  # not restarted
    assert len(p.sent("A>B", n)) == 1  # one ACK, the rest rate-limited
    assert a.counters["TCPACKSkippedTimeWait"] == 19
    p.now += 0.1
    p.inject_a(mk(ISS_B + 1, ISS_A + 2, FIN | ACK, to_b=False))  # B's FIN again
    assert a.close_deadline == p.now + 2 * MSL
    assert [e.seg.ack for e in p.sent("A>B", n)][-1] == ISS_B + 2


def test_time_wait_answers_old_data_with_ack() -> None:
    p = established()
    a = p.a
    _to_time_wait(p, drop_last_ack=False)
    deadline = a.close_deadline
    n = len(p.log)
    p.inject_a(mk(ISS_B + 1, ISS_A + 2, ACK, payload=b"old", to_b=False))
    assert [(e.seg.flags, e.seg.ack) for e in p.sent("A>B", n)] == [
        (ACK, ISS_B + 2)]
    assert a.close_deadline == deadline and a.state is State.TIME_WAIT


# ----------------------------------------------------------------------
# FIN retransmission and giving up


@pytest.mark.parametrize("how", ["close", "shutdown"])
def test_fin_lost_repeatedly_then_dropped(how: str) -> None:
    # tlp=False: the RTO's backoff alone (a tail loss probe would come first).
    s = Settings(msl=MSL, retries2=4, orphan_retries=2, fin_timeout=1000, tlp=False)
    p = established(settings=s)
    a, b = p.a, p.b
    assert b is not None
    assert a.rto.rto == 0.2
    p.now = 1.0
    p.drop = lambda d, s: d == "A>B" and bool(s.flags & FIN)
    if how == "close":
        a.close(p.now)
        limit = 2  # orphan_retries: nobody can read any more
    else:
        a.shutdown_write(p.now)
        limit = 4  # retries2
    p.run(until=100)
    fins = [e for e in p.sent("A>B") if e.seg.flags & FIN]
    assert all(e.seg.seq == ISS_A + 1 for e in fins)
    intervals = [round(y.time - x.time, 6) for x, y in zip(fins, fins[1:],
                                                          strict=False)]
    assert len(fins) == 1 + limit
    assert intervals == [0.2 * 2**i for i in range(limit)]
    t_drop = fins[-1].time + 0.2 * 2**limit
    assert a.state is State.CLOSED
    assert p.entered("A", State.CLOSED) == pytest.approx(t_drop)
    assert isinstance(a.error, TimeoutError) and a.error.errno == errno.ETIMEDOUT
    rst, rst2 = [e for e in p.sent("A>B") if e.seg.flags & RST]
    assert rst.time == pytest.approx(t_drop)
    assert rst.seg.flags == RST | ACK and rst.seg.seq == ISS_A + 2
    # The peer never saw the FIN: the RST (seq = SND.NXT, past the FIN) is
    # in its window but not exact, so it challenges (RFC 5961); the closed A
    # answers the challenge ACK with a RST at exactly RCV.NXT.
    challenge = [e for e in p.sent("B>A") if e.time == rst.time][-1]
    assert challenge.seg.flags == ACK and challenge.seg.ack == ISS_A + 1
    assert (rst2.seg.flags, rst2.seg.seq) == (RST, ISS_A + 1)
    assert b.state is State.CLOSED and isinstance(b.error, ConnectionResetError)


def test_last_ack_fin_retransmitted_then_dropped() -> None:
    s = Settings(msl=MSL, retries2=3, orphan_retries=3, tlp=False)
    p = established(settings=s)
    a, b = p.a, p.b
    assert b is not None
    a.shutdown_write(p.now)
    p.run(until=1.0)
    p.drop = lambda d, s: d == "B>A"  # A is gone silent
    b.close(p.now)
    p.run(until=100)
    fins = [e for e in p.sent("B>A") if e.seg.flags & FIN]
    assert [round(e.time - fins[0].time, 6) for e in fins] == [0, 0.2, 0.6, 1.4]
    assert b.state is State.CLOSED and isinstance(b.error, TimeoutError)


def test_rst_in_last_ack_closes_silently() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    a.shutdown_write(p.now)
    p.run(until=1.0)
    p.drop = lambda d, s: d == "B>A"
    b.close(p.now)
    p.pump()
    assert b.state is State.LAST_ACK
    p.inject_b(mk(ISS_A + 2, 0, RST))
    assert b.state is State.CLOSED and b.error is None


# ----------------------------------------------------------------------
# Abort


def test_close_with_unread_data_sends_rst() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    b.send(b"unread")
    p.run(until=1.0)
    assert a.readable
    n = len(p.log)
    a.close(p.now)
    assert a.state is State.CLOSED
    p.run(until=2.0)
    assert p.flags_log(n) == ["A>B RA"]
    rst = p.log[n].seg
    assert rst.seq == ISS_A + 1 and rst.ack == ISS_B + 7
    assert isinstance(b.error, ConnectionResetError)
    assert b.error.errno == errno.ECONNRESET
    assert b.state is State.CLOSED and b.readable


def test_data_after_close_gets_rst() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    a.close(p.now)
    p.run(until=1.0)
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    n = len(p.log)
    b.send(b"anyone there?")
    p.run(until=2.0)
    assert p.flags_log(n) == ["B>A PA+13", "A>B RA"]
    assert p.log[n + 1].seg.seq == ISS_A + 2
    assert a.state is State.CLOSED and a.error is None
    assert b.state is State.CLOSED and isinstance(b.error, ConnectionResetError)


def test_abort_in_established() -> None:
    p = established()
    a, b = p.a, p.b
    assert b is not None
    a.send(b"queued but never sent")
    a.abort(p.now)
    assert a.state is State.CLOSED and not a.sndbuf
    p.run(until=1.0)
    assert isinstance(b.error, ConnectionResetError)
    assert b.read(100) == b""


def test_fin_into_zero_window_survives() -> None:
    """A lone FIN that meets a zero window: the receiver takes it (seq is
    exactly RCV.NXT, as Linux does) and the close proceeds."""
    s = Settings(msl=MSL, retries2=3)
    sb = Settings(msl=MSL, rcv_buf=4096, wscale=0)
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, settings=s, settings_b=sb)
    a, b = p.establish()
    a.send(bytes(4096))
    p.run(until=1.0)
    assert a.snd_wnd == 0 and a.snd_una == a.snd_max
    a.shutdown_write(p.now)
    p.run(until=200.0)
    assert a.error is None and b.fin_received
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert len(b.read(1 << 20)) == 4096 and b.read(10) == b""


def test_lone_fin_gets_a_tail_loss_probe_before_the_rto() -> None:
    """RFC 8985 7.2 (Linux tcp_schedule_loss_probe): when the RTO would come
    first, the probe takes its place; the RTOs (doubling) follow."""
    s = Settings(msl=MSL, retries2=4, orphan_retries=2, fin_timeout=1000)
    p = established(settings=s)
    a = p.a
    p.now = 1.0
    p.drop = lambda d, s: d == "A>B" and bool(s.flags & FIN)
    a.close(p.now)
    p.run(until=20.0)
    fins = [e.time - 1.0 for e in p.sent("A>B") if e.seg.flags & FIN]
    assert fins == pytest.approx([0, 0.2, 0.4, 0.8])  # probe, then RTOs
    assert a.counters["TCPLossProbes"] == 1
    assert a.counters["TCPTimeouts"] == 2


def _stuck_at_zero_window() -> tuple[Pair, Tcb, Tcb]:
    """A sends 50 KB into B's 4 KB buffer, which nobody reads."""
    s = Settings(msl=MSL, rto_max=8.0, orphan_retries=4)
    sb = Settings(msl=MSL, rcv_buf=4096, wscale=0)
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, settings=s, settings_b=sb)
    a, b = p.establish()
    a.send(bytes(50_000))
    return p, a, b


def test_orphan_held_at_zero_window_is_aborted() -> None:
    """Issue 10 item 2 (sockstress): the peer keeps its window at zero and
    answers every probe, which reset the probe count, so the orphan (and its
    send buffer) lived forever. As Linux's tcp_probe_timer: abort once the
    backoff saturates after orphan_retries probes, answered or not."""
    p, a, b = _stuck_at_zero_window()
    p.run(until=1.0)
    assert a.snd_wnd == 0 and a.persist
    a.close(p.now)  # an orphan now, with 45 KB it can never send
    p.run(until=600.0)
    answered = [e for e in p.sent("B>A") if e.time > 1.0]
    assert len(answered) >= 4  # the peer did answer the probes
    assert a.state is State.CLOSED and a.counters["TCPAbortOnTimeout"] == 1
    assert isinstance(b.error, ConnectionResetError)
    assert p.entered("A", State.CLOSED) < 100.0


def test_zero_window_with_a_reader_still_open_is_kept() -> None:
    """Not an orphan: a peer that answers probes keeps the connection up."""
    p, a, b = _stuck_at_zero_window()
    p.run(until=600.0)
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED) and a.persist
