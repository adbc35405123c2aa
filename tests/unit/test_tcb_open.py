"""Opening a connection: handshake, simultaneous open, options, SYN timers."""

from __future__ import annotations

import errno

import pytest

from tests.tcb_harness import A_IP, A_PORT, B_IP, B_PORT, Pair, mk
from ustack.config import Settings
from ustack.tcp.seq import MASK
from ustack.tcp.state import State
from ustack.tcp.tcb import DEFAULT_MSS, Tcb
from ustack.wire.tcp import ACK, FIN, RST, SYN

ISS_A = 1000
ISS_B = 5000


def test_three_way_handshake_segments_and_variables() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.a.open_active(p.now)
    assert p.a.state is State.SYN_SENT
    assert p.a.rtx_deadline == 1.0 and p.a.deadline == 1.0  # RFC 6298 2.1
    p.run()
    syn, synack, ack = (e.seg for e in p.log)
    assert p.flags_log() == ["A>B S", "B>A SA", "A>B A"]
    assert (syn.seq, syn.ack, syn.mss, syn.wscale) == (ISS_A, 0, 1460, 7)
    assert (synack.seq, synack.ack, synack.mss, synack.wscale) == (
        ISS_B, ISS_A + 1, 1460, 7)
    assert (ack.seq, ack.ack) == (ISS_A + 1, ISS_B + 1)
    assert p.trace("A") == [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]
    assert p.trace("B") == [State.SYN_RECEIVED, State.ESTABLISHED]
    a, b = p.a, p.b
    assert b is not None
    # SYN consumes one sequence number on each side.
    assert (a.snd_una, a.snd_nxt, a.snd_max, a.rcv_nxt) == (
        ISS_A + 1, ISS_A + 1, ISS_A + 1, ISS_B + 1)
    assert (b.snd_una, b.snd_nxt, b.snd_max, b.rcv_nxt) == (
        ISS_B + 1, ISS_B + 1, ISS_B + 1, ISS_A + 1)
    assert (a.irs, b.irs) == (ISS_B, ISS_A)
    assert a.rtx_deadline is None and b.rtx_deadline is None
    assert a.deadline is None and b.deadline is None
    assert a.error is None and b.error is None


def test_handshake_against_scripted_server() -> None:
    """A as client against a peer played by hand."""
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B"  # nothing reaches the harness's B
    p.a.open_active(p.now)
    p.run()
    p.inject_a(mk(777, ISS_A + 1, SYN | ACK, 4000, to_b=False, mss=1200))
    assert p.a.state is State.ESTABLISHED
    last = p.log[-1].seg
    assert (last.flags, last.seq, last.ack) == (ACK, ISS_A + 1, 778)
    assert p.a.mss == 1200
    assert p.a.snd_wnd == 4000  # window of a SYN is never scaled
    assert p.a.snd_wscale == 0 and p.a.rcv_wscale == 0  # peer did not offer
    assert last.window == min(p.settings.rcv_buf, 0xFFFF)  # unscaled field


def test_handshake_against_scripted_client() -> None:
    """B as server: SYN -> SYN_RECEIVED + SYN-ACK; ACK -> ESTABLISHED."""
    s = Settings(msl=1.0)
    b = Tcb(s, (B_IP, B_PORT), (A_IP, A_PORT), ISS_B, 1460, 0.0)
    b.open_passive(mk(MASK, 0, SYN, 1000, mss=1400, wscale=3), 0.0)
    assert b.state is State.SYN_RECEIVED
    (synack,) = b.outbox
    assert synack.flags == SYN | ACK and synack.seq == ISS_B and synack.ack == 0
    assert synack.wscale == 7 and synack.mss == 1460
    b.outbox.clear()
    b.on_segment(mk(0, ISS_B + 1, ACK, 100), 0.5)
    assert b.state is State.ESTABLISHED
    assert b.outbox == []
    assert b.snd_wnd == 100 << 3  # scaled from now on
    assert b.mss == 1400
    assert b.rto.srtt == pytest.approx(0.5)


def test_duplicate_syn_in_syn_received_resends_synack() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.drop = lambda d, s: d == "B>A"
    p.a.open_active(p.now)
    p.run()
    assert p.states() == (State.SYN_SENT, State.SYN_RECEIVED)
    assert p.b is not None
    n = len(p.log)
    p.now = 0.5  # before either retransmission timer
    p.inject_b(mk(ISS_A, 0, SYN, mss=1460, wscale=7))  # A's SYN again
    assert [(e.seg.flags, e.seg.seq, e.seg.ack, e.time) for e in p.log[n + 1:]] == [
        (SYN | ACK, ISS_B, ISS_A + 1, 0.5)]
    assert p.b.state is State.SYN_RECEIVED
    p.drop = lambda d, s: False
    p.run(until=2.0)
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)


def test_simultaneous_open() -> None:
    s = Settings(msl=1.0)
    a = Tcb(s, (A_IP, A_PORT), (B_IP, B_PORT), ISS_A, 1460, 0.0)
    b = Tcb(s, (B_IP, B_PORT), (A_IP, A_PORT), ISS_B, 1460, 0.0)
    a.open_active(0.0)
    b.open_active(0.0)
    (syn_a,), (syn_b,) = a.outbox, b.outbox
    a.outbox, b.outbox = [], []
    assert syn_a.flags == SYN and syn_b.flags == SYN
    # The SYNs cross: each side moves to SYN_RECEIVED and sends SYN-ACK.
    a.on_segment(syn_b, 0.1)
    b.on_segment(syn_a, 0.1)
    assert a.state is State.SYN_RECEIVED and b.state is State.SYN_RECEIVED
    (sa_a,), (sa_b,) = a.outbox, b.outbox
    a.outbox, b.outbox = [], []
    assert (sa_a.flags, sa_a.seq, sa_a.ack) == (SYN | ACK, ISS_A, ISS_B + 1)
    assert (sa_b.flags, sa_b.seq, sa_b.ack) == (SYN | ACK, ISS_B, ISS_A + 1)
    # Each SYN-ACK is old news (its SYN was seen): answered by a plain ACK.
    a.on_segment(sa_b, 0.2)
    b.on_segment(sa_a, 0.2)
    out_a, out_b = a.outbox, b.outbox
    a.outbox, b.outbox = [], []
    for segs, (seq, ack) in ((out_a, (ISS_A + 1, ISS_B + 1)),
                             (out_b, (ISS_B + 1, ISS_A + 1))):
        assert [(x.flags, x.seq, x.ack) for x in segs] == [(ACK, seq, ack)]
    for seg in out_b:
        a.on_segment(seg, 0.3)
    for seg in out_a:
        b.on_segment(seg, 0.3)
    assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED
    assert a.outbox == [] and b.outbox == []
    assert a.snd_una == ISS_A + 1 and b.snd_una == ISS_B + 1
    assert a.error is None and b.error is None


def test_simultaneous_open_in_harness_then_data() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.simultaneous_open()
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert p.trace("A") == [State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED,
                            State.ESTABLISHED]
    assert p.trace("B")[-3:] == [State.SYN_SENT, State.SYN_RECEIVED,
                                 State.ESTABLISHED]
    assert p.b is not None
    p.a.send(b"ping")
    p.b.send(b"pong")
    p.run()
    assert p.b.read(100) == b"ping" and p.a.read(100) == b"pong"


def test_synack_with_bad_ack_gets_rst_seq_seg_ack() -> None:
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B" and not s.flags & RST
    p.a.open_active(p.now)
    p.run()
    for bad in (ISS_A + 5, ISS_A, ISS_A - 100):  # beyond SND.NXT, <= ISS
        n = len(p.log)
        p.inject_a(mk(777, bad, SYN | ACK, to_b=False))
        assert p.a.state is State.SYN_SENT
        (rst,) = [e.seg for e in p.log[n + 1:]]
        assert (rst.flags, rst.seq) == (RST, bad & MASK)
    # The connection can still complete with a good SYN-ACK.
    p.inject_a(mk(777, ISS_A + 1, SYN | ACK, to_b=False))
    assert p.a.state is State.ESTABLISHED


def test_rst_with_bad_ack_in_syn_sent_ignored() -> None:
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B"
    p.a.open_active(p.now)
    p.run()
    n = len(p.log)
    p.inject_a(mk(0, ISS_A + 7, RST | ACK, to_b=False))
    p.inject_a(mk(0, 0, RST, to_b=False))  # no ACK: not acceptable (3.10.7.3)
    assert p.a.state is State.SYN_SENT and p.a.error is None
    assert len(p.log) == n + 2  # nothing sent in answer


def test_rst_in_syn_sent_is_connection_refused() -> None:
    p = Pair(iss_a=ISS_A)
    p.a.open_active(p.now)
    p.drop = lambda d, s: d == "A>B"
    p.run()
    p.inject_a(mk(0, ISS_A + 1, RST | ACK, 0, to_b=False))
    assert p.a.state is State.CLOSED
    assert isinstance(p.a.error, ConnectionRefusedError)
    assert p.a.error.errno == errno.ECONNREFUSED
    assert p.a.deadline is None and p.a.readable


def test_syn_to_closed_port_refused_end_to_end() -> None:
    """B never listens: the harness answers like the stack (reset_for)."""
    p = Pair(iss_a=ISS_A)
    b = p.make_b()  # exists, but CLOSED: every segment gets RST
    assert b.state is State.CLOSED
    p.connect()
    assert p.flags_log() == ["A>B S", "B>A RA"]
    assert p.log[1].seg.ack == ISS_A + 1 and p.log[1].seg.seq == 0
    assert isinstance(p.a.error, ConnectionRefusedError)


def test_rst_to_passive_syn_received_closes_silently() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.drop = lambda d, s: d == "B>A"  # A never sees the SYN-ACK
    p.a.open_active(p.now)
    p.run()
    assert p.b is not None and p.b.state is State.SYN_RECEIVED
    n = len(p.log)
    p.inject_b(mk(ISS_A + 1, 0, RST))
    assert p.b.state is State.CLOSED
    assert p.b.error is None
    assert p.b.deadline is None
    assert len(p.log) == n + 1  # no answer to a RST


def test_bad_ack_in_syn_received_gets_rst() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.drop = lambda d, s: d == "B>A"
    p.a.open_active(p.now)
    p.run()
    assert p.b is not None
    n = len(p.log)
    p.inject_b(mk(ISS_A + 1, ISS_B + 99, ACK))
    assert [(e.seg.flags, e.seg.seq) for e in p.log[n + 1:]] == [(RST, ISS_B + 99)]
    assert p.b.state is State.SYN_RECEIVED


# ----------------------------------------------------------------------
# Options


def test_mss_is_min_of_both() -> None:
    p = Pair(mss=1460, mss_b=1000, settings=Settings(msl=1.0, timestamps=False))
    a, b = p.establish()
    assert a.mss == 1000 and b.mss == 1000
    a.send(b"x" * 5000)
    p.run()
    assert [len(e.seg.payload) for e in p.sent("A>B") if e.seg.payload] == [
        1000, 1000, 1000, 1000, 1000]


def test_payload_leaves_room_for_the_timestamp_option() -> None:
    """RFC 6691: the MSS counts no options; with timestamps on, each data
    segment carries 12 option bytes, so its payload is MSS - 12."""
    p = Pair(mss=1460, mss_b=1000)
    a, b = p.establish()
    assert a.ts_ok and a.mss == b.mss == 1000 - 12
    a.send(b"x" * 2000)
    p.run()
    sizes = [len(e.seg.payload) for e in p.sent("A>B") if e.seg.payload]
    assert sizes == [988, 988, 24]


def test_mss_default_536_without_option() -> None:
    s = Settings()
    b = Tcb(s, (B_IP, B_PORT), (A_IP, A_PORT), ISS_B, 1460, 0.0)
    b.open_passive(mk(100, 0, SYN, 8000), 0.0)  # no MSS option
    assert b.mss == DEFAULT_MSS == 536
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B"
    p.a.open_active(p.now)
    p.run()
    p.inject_a(mk(9, ISS_A + 1, SYN | ACK, 8000, to_b=False))
    assert p.a.mss == 536


def test_window_scale_both_offer() -> None:
    p = Pair(settings=Settings(msl=1.0, wscale=7),
             settings_b=Settings(msl=1.0, wscale=2))
    a, b = p.establish()
    assert (a.snd_wscale, a.rcv_wscale) == (2, 7)
    assert (b.snd_wscale, b.rcv_wscale) == (7, 2)
    assert p.log[1].seg.wscale == 2  # B's SYN-ACK carries its own shift
    # After the handshake, window fields are shifted: A advertises 1 MiB.
    final_ack = p.log[2].seg
    assert final_ack.window == (1 << 20) >> 7
    assert b.snd_wnd == 1 << 20


def test_window_scale_only_when_both_offer() -> None:
    s = Settings()
    b = Tcb(s, (B_IP, B_PORT), (A_IP, A_PORT), ISS_B, 1460, 0.0)
    b.open_passive(mk(100, 0, SYN, 8000, mss=1460), 0.0)  # no wscale offered
    (synack,) = b.outbox
    assert synack.wscale is None
    assert b.snd_wscale == 0 and b.rcv_wscale == 0
    b.outbox.clear()
    b.on_segment(mk(101, ISS_B + 1, ACK, 30000), 0.1)
    assert b.snd_wnd == 30000
    b.send(b"z" * 10)
    b.flush(0.1)
    assert b.outbox[-1].window == min(s.rcv_buf, 0xFFFF)  # unscaled, clamped


def test_wscale_capped_at_14() -> None:
    s = Settings()
    b = Tcb(s, (B_IP, B_PORT), (A_IP, A_PORT), ISS_B, 1460, 0.0)
    b.open_passive(mk(100, 0, SYN, 8000, wscale=20), 0.0)
    assert b.snd_wscale == 14  # RFC 7323 2.3


# ----------------------------------------------------------------------
# SYN and SYN-ACK retransmission


def test_syn_backoff_then_etimedout() -> None:
    p = Pair(iss_a=ISS_A)  # syn_retries = 6 (Linux default)
    p.drop = lambda d, s: True
    p.a.open_active(p.now)
    p.run(until=500)
    times = [e.time for e in p.sent("A>B")]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert all(e.seg.flags == SYN and e.seg.seq == ISS_A for e in p.sent("A>B"))
    assert p.a.state is State.CLOSED
    assert p.entered("A", State.CLOSED) == 127.0
    assert isinstance(p.a.error, TimeoutError)
    assert p.a.error.errno == errno.ETIMEDOUT


def test_syn_retries_setting() -> None:
    p = Pair(settings=Settings(syn_retries=2))
    p.drop = lambda d, s: True
    p.a.open_active(p.now)
    p.run(until=100)
    assert [e.time for e in p.sent("A>B")] == [0.0, 1.0, 3.0]
    assert p.entered("A", State.CLOSED) == 7.0
    assert isinstance(p.a.error, TimeoutError)


def test_synack_retries_limit() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, settings=Settings(synack_retries=3))
    first = True

    def drop(d: str, s: object) -> bool:
        nonlocal first
        if d == "A>B":  # only A's first SYN arrives
            ok, first = first, False
            return not ok
        return True  # every SYN-ACK is lost

    p.drop = drop
    p.a.open_active(p.now)
    p.run(until=100)
    assert p.b is not None
    synacks = [e for e in p.sent("B>A") if e.seg.flags == SYN | ACK]
    assert [e.time for e in synacks] == [0.0, 1.0, 3.0, 7.0]
    assert all(e.seg.seq == ISS_B and e.seg.ack == ISS_A + 1 for e in synacks)
    assert p.b.state is State.CLOSED
    assert p.entered("B", State.CLOSED) == 15.0


def test_rto_is_3s_after_retransmitted_syn() -> None:
    p = Pair()
    p.drop = lambda d, s: len(p.log) == 1  # the first SYN is lost
    p.connect()
    p.run(until=2.0)
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert p.entered("A", State.ESTABLISHED) == 1.0
    assert p.a.rto.srtt is None  # Karn: no sample from a retransmitted SYN
    assert p.a.rto.rto == 3.0  # RFC 6298 5.7
    # B's SYN-ACK was sent once: B did get a sample.
    assert p.b is not None and p.b.rto.srtt == 0.0


def test_handshake_rtt_sample() -> None:
    p = Pair(delay=0.05)
    p.connect()
    a, b = p.a, p.b
    assert b is not None and p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert a.rto.srtt == pytest.approx(0.1) and a.rto.rttvar == pytest.approx(0.05)
    assert a.rto.rto == pytest.approx(0.3)
    assert b.rto.srtt == pytest.approx(0.1)


def test_close_in_syn_sent_sends_nothing() -> None:
    p = Pair()
    p.drop = lambda d, s: True
    p.a.open_active(p.now)
    p.run()
    p.a.close(p.now)
    assert p.a.state is State.CLOSED and p.a.deadline is None
    p.run(until=50)
    assert p.flags_log() == ["A>B S"]
    assert p.a.error is None


def test_shutdown_in_syn_sent_sends_fin_after_handshake() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    p.drop = lambda d, s: d == "B>A"
    p.a.open_active(p.now)
    p.run()
    p.a.send(b"early")
    p.a.shutdown_write(p.now)
    assert p.a.state is State.SYN_SENT
    p.drop = lambda d, s: False
    p.run(until=1.5)  # SYN retransmitted at 1 s
    assert p.b is not None
    assert p.b.read(100) == b"early" and p.b.fin_received
    assert p.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    fins = [e.seg for e in p.sent("A>B") if e.seg.flags & FIN]
    assert [(f.seq, f.payload) for f in fins] == [(ISS_A + 1, b"early")]


@pytest.mark.parametrize("irs", [777, MASK, MASK - 1])
def test_data_on_synack_is_delivered(irs: int) -> None:
    """RFC 9293 3.10.7.3: text on a SYN-ACK is processed (step six on)."""
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B"
    p.a.open_active(p.now)
    p.run()
    n = len(p.log)
    p.inject_a(mk(irs, ISS_A + 1, SYN | ACK, 4000, b"hi", to_b=False))
    assert p.a.state is State.ESTABLISHED
    assert p.a.read(10) == b"hi"
    assert p.a.rcv_nxt == (irs + 3) & MASK
    (ack,) = [e.seg for e in p.sent("A>B", n)]
    assert (ack.flags, ack.ack) == (ACK, (irs + 3) & MASK)


def test_rto_is_3s_after_retransmitted_synack() -> None:
    p = Pair()
    p.drop = lambda d, s: d == "B>A" and s.flags == SYN | ACK and p.now < 0.5
    p.a.open_active(p.now)
    p.run(until=0.1)
    p.run(until=0.9)  # A's SYN timer (1 s) has not fired yet
    assert p.states() == (State.SYN_SENT, State.SYN_RECEIVED)
    p.run(until=1.5)
    assert p.b is not None and p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert p.b.rto.srtt is None and p.b.rto.rto == 3.0


def test_simultaneous_open_with_lost_synack() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    lost: list[float] = []

    def drop(d: str, s: object) -> bool:
        if d == "A>B" and getattr(s, "flags", 0) == SYN | ACK and not lost:
            lost.append(p.now)
            return True
        return False

    p.drop = drop
    p.simultaneous_open()
    assert lost and p.states() == (State.SYN_RECEIVED, State.ESTABLISHED)
    p.run(until=1.5)  # A's SYN-ACK timer; B answers the old SYN-ACK with ACK
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert p.entered("A", State.ESTABLISHED) == 1.0
    assert p.a.error is None and p.b is not None and p.b.error is None


def test_synack_retries_run_out_silently() -> None:
    """Issue 10 item 4: a half-open connection whose SYN-ACKs go unanswered
    (a SYN flood from spoofed sources) is dropped without a RST, as Linux."""
    p = Pair(iss_a=ISS_A, iss_b=ISS_B, settings=Settings(synack_retries=2))
    p.drop = lambda d, s: d == "B>A" or p.now > 0  # the "client" never answers
    p.a.open_active(p.now)
    p.run(until=100)
    assert p.b is not None and p.b.state is State.CLOSED
    assert [e.seg.flags for e in p.sent("B>A")] == [SYN | ACK] * 3  # no RST
    assert p.b.counters["OutRsts"] == 0


def test_fin_on_synack_closes_the_peer_side() -> None:
    """Issue 10 item 10: RFC 9293 3.10.7.3 continues at step six, so a FIN
    on the SYN-ACK is processed: CLOSE_WAIT, EOF, the FIN is acknowledged."""
    p = Pair(iss_a=ISS_A)
    p.drop = lambda d, s: d == "A>B"
    p.a.open_active(p.now)
    p.run()
    n = len(p.log)
    p.inject_a(mk(777, ISS_A + 1, SYN | ACK | FIN, 4000, b"bye", to_b=False))
    assert p.a.state is State.CLOSE_WAIT and p.a.fin_received
    assert p.a.read(10) == b"bye"
    assert p.a.rcv_nxt == 777 + 1 + 3 + 1
    p.run(until=1)
    assert [e.seg.ack for e in p.sent("A>B", n) if e.seg.flags & ACK][-1] == 782
