"""Data transfer: both directions, wrap, flow control, persist, reordering,
loss recovery (RTO, fast retransmit) and the RTT estimator in a connection."""

from __future__ import annotations

import random

import pytest

from tests.tcb_harness import Pair, mk, transfer
from ustack.config import Settings
from ustack.tcp.reassembly import CHUNK_COST, RUN_COST
from ustack.tcp.seq import MASK, seq_add, seq_diff
from ustack.tcp.state import State
from ustack.wire.tcp import ACK, FIN, PSH, TcpSegment

ISS_A = 1000
ISS_B = 5000

# Without RFC 7323 timestamps: payloads fill the whole MSS (no 12-byte option)
# and RTT samples come from sequence numbers with Karn's rule.
NO_TS = Settings(msl=1.0, timestamps=False)


def _hold(held: list[TcpSegment], seg: TcpSegment) -> list[float]:
    """A `Pair.net` hook's body that keeps the segment back (no delivery)."""
    held.append(seg)
    return []


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def test_small_exchange_sequence_numbers() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    n = len(p.log)
    assert a.send(b"hello") == 5
    p.run()
    data = p.log[n].seg
    assert (data.flags, data.seq, data.ack, data.payload) == (
        ACK | PSH, ISS_A + 1, ISS_B + 1, b"hello")
    # B owes an ACK for one segment: delayed by 40 ms, not sent at once.
    assert p.flags_log(n) == ["A>B PA+5"]
    assert b.delack_deadline == pytest.approx(0.04)
    assert b.deadline == pytest.approx(0.04)
    p.run(until=1.0)
    assert b.readable and b.read(100) == b"hello"
    assert not b.readable
    assert p.flags_log(n) == ["A>B PA+5", "B>A A"]
    assert p.log[n + 1].time == pytest.approx(0.04)
    assert p.log[n + 1].seg.ack == ISS_A + 6
    assert (a.snd_una, a.snd_nxt, b.rcv_nxt) == (ISS_A + 6, ISS_A + 6, ISS_A + 6)
    # And back: the reply carries the ACK.
    n = len(p.log)
    b.send(b"world!")
    p.run()
    assert a.read(100) == b"world!"
    reply = p.log[n].seg
    assert (reply.seq, reply.ack) == (ISS_B + 1, ISS_A + 6)


def test_reply_piggybacks_delayed_ack() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    n = len(p.log)
    a.send(b"GET /")
    p.pump()
    assert b.read(100) == b"GET /"
    b.send(b"200 OK")  # within the delayed-ACK time: no bare ACK
    p.run(until=1.0)
    assert p.flags_log(n)[:2] == ["A>B PA+5", "B>A PA+6"]
    assert p.log[n + 1].seg.ack == ISS_A + 6


def test_every_second_segment_acked_at_once() -> None:
    p = Pair(iss_a=ISS_A, settings=NO_TS)  # full-MSS payloads
    a, b = p.establish()
    held: list[TcpSegment] = []
    p.net = lambda d, s: _hold(held, s)
    a.send(b"x" * 1460 * 4)
    p.pump()
    p.net = None
    assert [len(s.payload) for s in held] == [1460] * 4
    n = len(p.log)
    acks = []
    for seg in held:  # one by one, as separate batches
        p.inject_b(seg)
        acks.append([e.seg.ack - ISS_A - 1 for e in p.sent("B>A", n)])
    assert acks == [[], [2920], [2920], [2920, 5840]]  # RFC 1122 4.2.3.2
    assert b.delack_deadline is None


def test_lone_segment_acked_after_delack() -> None:
    p = Pair(iss_a=ISS_A)
    a, b = p.establish()
    p.now = 5.0
    a.send(b"x" * 100)
    p.pump()
    assert b.delack_deadline == pytest.approx(5.04)
    p.run(until=6.0)
    (ack,) = [e for e in p.sent("B>A") if e.time >= 5.0]
    assert ack.time == pytest.approx(5.04) and ack.seg.ack == ISS_A + 101


@pytest.mark.parametrize("delay", [0.0, 0.01])
def test_large_transfer_a_to_b(delay: float) -> None:
    p = Pair(delay=delay)
    a, b = p.establish()
    data = blob(5 * 1024 * 1024)
    assert transfer(p, a, b, data) == data
    assert a.snd_una == seq_add(a.iss, 1 + len(data)) == a.snd_max
    assert b.rcv_nxt == a.snd_una
    assert not a.sndbuf and a.error is None and b.error is None


def test_large_transfer_b_to_a_with_small_buffers() -> None:
    s = Settings(msl=1.0, rcv_buf=20000, snd_buf=30000)
    p = Pair(settings=s, delay=0.002)
    a, b = p.establish()
    data = blob(1024 * 1024, seed=2)
    assert transfer(p, b, a, data) == data


def test_both_directions_at_once() -> None:
    p = Pair(delay=0.003)
    a, b = p.establish()
    da, db = blob(300_000, 3), blob(200_000, 4)
    got_a, got_b = bytearray(), bytearray()
    pa = pb = 0
    for _ in range(100_000):
        pa += a.send(da[pa : pa + 8192])
        pb += b.send(db[pb : pb + 8192])
        p.pump()
        got_b += b.read(1 << 20)
        got_a += a.read(1 << 20)
        if len(got_a) == len(db) and len(got_b) == len(da):
            break
        p.step()
    assert bytes(got_b) == da and bytes(got_a) == db


@pytest.mark.parametrize("iss_a,iss_b", [(2**32 - 3, 2**32 - 2), (MASK, 0),
                                         (2**32 - 20000, 2**32 - 1)])
def test_transfer_across_sequence_wrap(iss_a: int, iss_b: int) -> None:
    p = Pair(iss_a=iss_a, iss_b=iss_b, delay=0.001)
    a, b = p.establish()
    assert a.snd_una == (iss_a + 1) & MASK
    d1, d2 = blob(100_000, 5), blob(70_000, 6)
    assert transfer(p, a, b, d1) == d1
    assert transfer(p, b, a, d2) == d2
    assert a.snd_una == (iss_a + 1 + len(d1)) & MASK < 200_000  # wrapped
    assert b.snd_una == (iss_b + 1 + len(d2)) & MASK < 200_000
    a.close(p.now)
    p.run()
    b.close(p.now)
    p.run(until=p.now + 10)
    assert p.states() == (State.CLOSED, State.CLOSED)
    assert a.error is None and b.error is None


def test_loss_across_wrap_recovered() -> None:
    p = Pair(iss_a=2**32 - 3000, delay=0.001)
    a, b = p.establish()
    rng = random.Random(7)
    p.drop = lambda d, s: bool(s.payload) and rng.random() < 0.1
    data = blob(200_000, 8)
    assert transfer(p, a, b, data) == data


# ----------------------------------------------------------------------
# Flow control


def test_sender_stops_at_advertised_window_and_resumes() -> None:
    sb = Settings(msl=1.0, rcv_buf=16384, wscale=0)  # exact window fields
    p = Pair(settings_b=sb)
    a, b = p.establish()
    data = blob(100_000, 9)
    assert a.send(data) == 100_000
    p.run(until=0.1)
    # B advertised 16384 bytes in its SYN-ACK and never read: A stops there.
    assert len(b.rcvbuf) == 16384
    assert seq_diff(a.snd_max, a.iss + 1) == 16384
    assert a.snd_una == a.snd_max and a.snd_wnd == 0
    assert b.rcv_adv == b.rcv_nxt  # zero window advertised
    last_b = p.sent("B>A")[-1].seg
    assert last_b.window == 0 and last_b.ack == b.rcv_nxt
    assert a.persist and a.rtx_deadline is not None
    # Reading opens the window: B sends a window update, A sends more.
    n = len(p.log)
    got = b.read(1 << 20)
    assert got == data[:16384]
    p.pump()
    upd = p.log[n]
    assert upd.direction == "B>A" and upd.seg.window == 16384 and not upd.seg.payload
    assert not a.persist
    assert seq_diff(a.snd_max, a.iss + 1) == 32768
    assert b.read(1 << 20) == data[16384:32768]


def test_scaled_window_never_overrun() -> None:
    """With window scaling the sender stays within the receiver's right edge."""
    sb = Settings(msl=1.0, rcv_buf=8192)  # wscale 7: 128-byte granularity
    p = Pair(settings_b=sb)
    a, b = p.establish()
    assert b.rcv_wscale == 7
    edges = []

    def watch(d: str, s: TcpSegment) -> bool:
        if d == "A>B" and s.payload:
            edges.append((s.seq, len(s.payload), b.rcv_adv))
        return False

    p.drop = watch
    a.send(blob(50_000))
    p.run(until=1.0)
    assert edges
    for seq, n, edge in edges:
        assert seq_diff(edge, seq) >= n  # inside the offered window
    # The window is rounded up to the scale (as Linux): under 128 bytes over.
    assert 8192 - 128 < len(b.rcvbuf) < 8192 + 128
    assert a.snd_wnd == 0 and a.persist


def test_small_read_does_not_send_silly_window_update() -> None:
    sb = Settings(msl=1.0, rcv_buf=16384, wscale=0)
    p = Pair(settings_b=sb)
    a, b = p.establish()
    a.send(blob(100_000))
    p.run(until=0.1)
    n = len(p.log)
    assert len(b.read(100)) == 100  # less than min(rcv_buf/2, MSS)
    p.pump()
    assert p.log[n:] == []
    b.read(2000)  # now the window can grow by >= one MSS
    p.pump()
    assert p.log[n].direction == "B>A" and p.log[n].seg.window == 2100


def test_zero_window_persist_probes_and_survival() -> None:
    sb = Settings(msl=1.0, rcv_buf=8192, wscale=0)
    p = Pair(iss_a=ISS_A, settings_b=sb)
    a, b = p.establish()
    data = blob(50_000, 10)
    a.send(data)
    p.run(until=0.1)
    zero = [e for e in p.sent("B>A") if e.seg.window == 0]
    t0 = zero[0].time
    una = a.snd_una
    assert una == ISS_A + 1 + 8192
    assert a.snd_wnd == 0 and a.persist
    assert a.rto.rto == 0.2 and a.rtx_deadline == pytest.approx(t0 + 0.2)
    n = len(p.log)
    p.run(until=t0 + 30)
    probes = p.sent("A>B", n)
    assert probes, "no zero-window probe sent"
    for e in probes:
        assert e.seg.seq == (una - 1) & MASK and e.seg.payload == b""
        assert e.seg.flags == ACK
    times = [e.time - t0 for e in probes]
    assert times[:5] == pytest.approx([0.2, 0.6, 1.4, 3.0, 6.2])
    answers = p.sent("B>A", n)
    assert len(answers) == len(probes)
    assert all(e.seg.window == 0 and e.seg.ack == una for e in answers)
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert a.error is None
    # The window opens; the update is lost; the next probe learns it.
    p.drop = lambda d, s: d == "B>A" and s.window > 0 and not s.payload
    got = bytearray(b.read(1 << 20))
    p.pump()
    assert a.snd_wnd == 0 and a.persist  # update lost
    p.drop = lambda d, s: False
    for _ in range(1000):
        p.step()
        got += b.read(1 << 20)
        if len(got) == len(data):
            break
    assert bytes(got) == data
    assert p.now - t0 < 200


def test_persist_does_not_count_as_retries() -> None:
    """A zero window for a long time never drops the connection (no retries2)."""
    s = Settings(msl=1.0, retries2=3, rto_max=5.0)
    sb = Settings(msl=1.0, rcv_buf=4096)
    p = Pair(settings=s, settings_b=sb)
    a, b = p.establish()
    a.send(blob(20000))
    p.run(until=600)
    assert p.states() == (State.ESTABLISHED, State.ESTABLISHED)
    probes = [e for e in p.sent("A>B") if not e.seg.payload and e.time > 1]
    assert len(probes) > 100  # capped at rto_max = 5 s


# ----------------------------------------------------------------------
# Reordering, duplication, out-of-order queue


def test_out_of_order_segments_reassembled() -> None:
    p = Pair(iss_a=ISS_A, settings=NO_TS)  # full-MSS payloads
    a, b = p.establish()
    held: list[TcpSegment] = []
    # A's output is held back (no retransmission reaches B); we inject.
    p.net = lambda d, s: _hold(held, s) if d == "A>B" else [0.0]
    data = blob(4 * 1460, 11)
    a.send(data)
    p.pump()
    assert len(held) == 4
    segs = list(held)
    n = len(p.log)
    for seg in (segs[3], segs[1], segs[2]):
        p.inject_b(seg)
    assert b.read(1 << 20) == b""  # hole at the start
    assert b.ooo.size == 3 * 1460 and len(b.ooo) == 1  # one run: 1..3 coalesced
    # Each out-of-order segment got an immediate duplicate ACK.
    dups = [e.seg for e in p.sent("B>A", n)]
    assert [d.ack for d in dups] == [ISS_A + 1] * 3
    p.inject_b(segs[1])  # a duplicate of queued data changes nothing
    assert b.ooo.size == 3 * 1460 and len(b.ooo) == 1
    n = len(p.log)
    p.inject_b(segs[0])
    assert b.ooo.size == 0
    assert b.read(1 << 20) == data
    assert b.rcv_nxt == ISS_A + 1 + len(data)
    # Filling the hole is ACKed at once (RFC 5681 4.2), covering everything.
    assert [e.seg.ack for e in p.sent("B>A", n)] == [b.rcv_nxt]


def test_reorder_and_duplicate_random() -> None:
    p = Pair(delay=0.005)
    a, b = p.establish()
    rng = random.Random(12)

    def net(d: str, s: object) -> list[float]:
        copies = [rng.uniform(0, 0.02)]
        if rng.random() < 0.2:
            copies.append(rng.uniform(0, 0.05))
        return copies

    p.net = net
    d1, d2 = blob(500_000, 13), blob(300_000, 14)
    assert transfer(p, a, b, d1) == d1
    assert transfer(p, b, a, d2) == d2
    assert a.error is None and b.error is None


def test_ooo_fin_delivered_after_hole_filled() -> None:
    p = Pair(iss_a=ISS_A)
    a, b = p.establish()
    held: list[TcpSegment] = []
    p.net = lambda d, s: _hold(held, s)
    a.send(b"abc")
    a.flush(p.now)
    a.send(b"defg")
    a.shutdown_write(p.now)
    p.a.nodelay = True
    p.pump()
    p.net = None
    assert [(s.payload, s.flags & FIN) for s in held] == [(b"abc", 0),
                                                         (b"defg", FIN)]
    # With no delay at all, A's RACK would resend "abc" at once on the SACK.
    p.drop = lambda d, s: d == "A>B"
    p.inject_b(held[1])
    assert not b.fin_received and b.ooo.fin_seq == ISS_A + 8
    p.inject_b(held[0])
    assert b.fin_received and b.state is State.CLOSE_WAIT
    assert b.read(100) == b"abcdefg"
    assert b.rcv_nxt == ISS_A + 9


def test_ooo_queue_is_bounded() -> None:
    sb = Settings(msl=1.0, ooo_max_bytes=3000)
    p = Pair(settings_b=sb, iss_a=ISS_A)
    a, b = p.establish()
    held: list[TcpSegment] = []
    p.net = lambda d, s: _hold(held, s) if d == "A>B" else [0.0]
    data = blob(10 * 1460, 15)
    a.send(data)
    p.pump()
    segs = held[:10]
    for seg in segs[1:]:
        p.inject_b(seg)
    # The rest was dropped, not queued: one coalesced run and its overhead.
    assert b.ooo.size == 3000 - RUN_COST - CHUNK_COST == b.ooo.truesize - (
        RUN_COST + CHUNK_COST
    )
    assert len(b.ooo) == 1
    p.net = None
    got = bytearray()
    for _ in range(200):
        p.step()
        got += b.read(1 << 20)
        if len(got) == len(data):
            break
    assert bytes(got) == data  # A's retransmissions fill in the rest


# ----------------------------------------------------------------------
# Loss recovery




def test_rto_retransmission_with_backoff() -> None:
    p = Pair(iss_a=ISS_A, settings=NO_TS.replace(tlp=False))  # the RTO alone
    a, b = p.establish()
    assert a.rto.rto == 0.2  # RTT 0 -> clamped to rto_min
    lost = 0

    def drop(d: str, s: object) -> bool:
        nonlocal lost
        if d == "A>B" and bool(getattr(s, "payload", b"")) and lost < 3:
            lost += 1
            return True
        return False

    p.drop = drop
    a.send(b"data")
    p.run(until=10)
    sends = [e for e in p.sent("A>B") if e.seg.payload]
    assert [e.time for e in sends] == pytest.approx([0.0, 0.2, 0.6, 1.4])
    assert all(e.seg.seq == ISS_A + 1 for e in sends)
    assert b.read(10) == b"data"
    assert a.snd_una == ISS_A + 5 and a.rtx_deadline is None
    # Karn: the ACK of a retransmitted segment gives no sample; the backed-off
    # RTO stays until a fresh sample arrives.
    assert a.rto.srtt == 0.0
    assert a.rto.rto == pytest.approx(1.6)
    a.send(b"more")
    p.run(until=20)
    assert a.rto.rto == pytest.approx(0.2)  # fresh sample


def test_retransmission_timer_restarted_on_new_ack() -> None:
    p = Pair(delay=0.05, settings=NO_TS)
    a, b = p.establish()
    rto = a.rto.rto
    assert rto == pytest.approx(0.3)
    t0 = p.now
    a.send(blob(1460))
    p.pump()
    assert a.rtx_deadline == pytest.approx(t0 + 0.3)  # RFC 6298 5.1
    p.run(until=t0 + 0.1)
    a.send(blob(1460))
    p.pump()
    assert a.rtx_deadline == pytest.approx(t0 + 0.3)  # already running
    # The delayed ACK of the first segment leaves B at +0.09, arrives +0.14.
    p.run(until=t0 + 0.14 + 1e-9)
    assert a.snd_una == a.iss + 1 + 1460 != a.snd_max
    assert a.rtx_deadline == pytest.approx(t0 + 0.14 + a.rto.rto)  # 5.3
    p.run(until=t0 + 1)
    assert a.snd_una == a.snd_max and a.rtx_deadline is None  # 5.2


def test_rtt_estimate_in_connection() -> None:
    p = Pair(delay=0.05, settings=NO_TS)
    a, b = p.establish()
    assert a.rto.srtt == pytest.approx(0.1)
    a.send(b"x" * 100)
    p.run(until=p.now + 1)
    # 50 ms there, 40 ms delayed ACK, 50 ms back: R = 0.14.
    assert a.rto.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.04)
    assert a.rto.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.14)
    assert a.rto.srtt is not None
    assert a.rto.rto == pytest.approx(a.rto.srtt + 4 * a.rto.rttvar)


def test_rto_clamped_to_settings() -> None:
    # No tail loss probe (RFC 8985 7): only the RTO's clamping is tested.
    p = Pair(settings=Settings(msl=1.0, rto_min=0.5, rto_max=2.0, tlp=False))
    a, b = p.establish()
    assert a.rto.rto == 0.5
    p.drop = lambda d, s: d == "A>B" and bool(s.payload) and p.now < 9
    a.send(b"q")
    p.run(until=12)
    times = [e.time for e in p.sent("A>B") if e.seg.payload]
    assert times == pytest.approx([0, 0.5, 1.5, 3.5, 5.5, 7.5, 9.5])
    assert b.read(10) == b"q"


@pytest.mark.parametrize(("algorithm", "beta"), [("reno", 0.5), ("cubic", 0.7)])
@pytest.mark.parametrize("sack", [True, False])
def test_fast_retransmit_on_three_dupacks(algorithm: str, beta: float,
                                          sack: bool) -> None:
    settings = Settings(msl=1.0, timestamps=False, sack=sack, congestion=algorithm)
    p = Pair(iss_a=ISS_A, settings=settings)  # full-MSS payloads
    a, b = p.establish()
    first = True

    def drop(d: str, s: object) -> bool:
        nonlocal first
        if d == "A>B" and bool(getattr(s, "payload", b"")) and first:
            first = False
            return True
        return False

    p.drop = drop
    data = blob(10 * 1460, 16)
    a.send(data)
    p.pump()  # no time passes: recovery cannot be the RTO
    assert p.now == 0.0
    firsts = [e for e in p.sent("A>B") if e.seg.seq == ISS_A + 1 and e.seg.payload]
    assert len(firsts) == 2  # original + fast retransmit
    dupacks = [e.seg for e in p.sent("B>A") if e.seg.ack == ISS_A + 1]
    assert len(dupacks) >= 3
    assert b.read(1 << 20) == data
    assert a.snd_una == a.snd_max == ISS_A + 1 + len(data)
    # Reno: cwnd / 2 (RFC 5681 eq. 4, as Linux); CUBIC: beta = 0.7 (RFC 9438 4.6).
    assert a.ssthresh == int(beta * 10 * 1460)
    assert a.cwnd == a.ssthresh  # full ACK ends the reduction (RFC 6937)
    assert a.counters["TCPSackRecovery" if sack else "TCPRenoRecovery"] == 1
    assert a.recover is None


def test_partial_ack_retransmits_next_hole() -> None:
    p = Pair(iss_a=ISS_A)
    a, b = p.establish()
    lost_seqs = {ISS_A + 1, ISS_A + 1 + 3 * 1460}
    seen: set[int] = set()

    def drop(d: str, s: object) -> bool:
        seq = getattr(s, "seq", None)
        if d == "A>B" and seq in lost_seqs and seq not in seen:
            seen.add(seq)
            return True
        return False

    p.drop = drop
    data = blob(10 * 1460, 17)
    a.send(data)
    p.pump()
    assert p.now == 0.0
    assert b.read(1 << 20) == data  # NewReno: both holes repaired without RTO


def test_ack_of_unsent_data_is_dropped() -> None:
    p = Pair(iss_a=ISS_A, iss_b=ISS_B)
    a, b = p.establish()
    n = len(p.log)
    p.inject_b(mk(ISS_A + 1, ISS_B + 100, ACK | PSH, 1000, b"evil"))
    assert b.read(100) == b""  # dropped, not delivered
    assert b.snd_una == ISS_B + 1
    (ans,) = [e.seg for e in p.sent("B>A", n)]
    assert (ans.flags, ans.seq, ans.ack) == (ACK, ISS_B + 1, ISS_A + 1)


def test_window_reopened_after_long_persist_rto_not_backed_off() -> None:
    """After persist probes backed the timer off, a loss right after the window
    reopens must not wait for the backed-off (up to 120 s) timer."""
    sb = Settings(msl=1.0, rcv_buf=4096, wscale=0)
    p = Pair(settings_b=sb)
    a, b = p.establish()
    data = blob(20_000, 18)
    a.send(data)
    p.run(until=300)  # many probes: the persist interval reached rto_max
    assert a.persist
    lost: list[float] = []

    def drop(d: str, s: TcpSegment) -> bool:
        if d == "A>B" and s.payload and not lost:
            lost.append(p.now)
            return True
        return False

    p.drop = drop
    got = bytearray(b.read(1 << 20))
    p.pump()
    assert lost  # the first segment after the update was lost
    for _ in range(1000):
        p.step()
        got += b.read(1 << 20)
        if len(got) == len(data):
            break
    assert bytes(got) == data
    retx = [e.time for e in p.sent("A>B") if e.seg.payload and e.time > lost[0]]
    assert retx and retx[0] - lost[0] <= 1.0


def test_shrunk_window_probed_not_timed_out() -> None:
    """A peer that shrinks its window to zero with data outstanding (allowed
    with window scaling, RFC 7323 2.4) must be probed, not timed out while it
    keeps answering (RFC 9293 3.8.6.1: the window may stay closed forever)."""
    p = Pair(iss_a=ISS_A, settings=Settings(msl=1.0, retries2=3))
    p.drop = lambda d, s: d == "A>B"
    p.a.open_active(p.now)
    p.run()
    a = p.a
    p.inject_a(mk(ISS_B, ISS_A + 1, 0x12, 4000, to_b=False, mss=1000))
    a.send(blob(3000))
    p.pump()
    assert a.snd_max == ISS_A + 3001
    # The peer takes 1000 bytes and closes its window over the rest.
    p.inject_a(mk(ISS_B + 1, ISS_A + 1001, ACK, 0, to_b=False))
    # From now on the peer answers every segment with a zero window.
    for _ in range(40):
        if not p.step():
            break
        for e in p.sent("A>B")[-1:]:
            if e.time == p.now:
                p.inject_a(mk(ISS_B + 1, ISS_A + 1001, ACK, 0, to_b=False))
        if p.now > 100:
            break
    assert a.state is State.ESTABLISHED and a.error is None
    sent_late = [e for e in p.sent("A>B") if e.time > 5]
    assert sent_late, "the sender went silent instead of probing"


def test_one_byte_segments_beyond_a_hole_cost_their_overhead() -> None:
    """Issue 10 item 1 through a TCB with default settings: 1-byte segments
    at RCV.NXT+2, +4, ... are each charged a run's overhead, so the 1 MB
    bound holds about a thousand (it admitted half a million before) and the
    rest is dropped and counted; the hole still fills and data flows."""
    p = Pair(iss_a=ISS_A)
    a, b = p.establish()
    nxt = b.rcv_nxt
    for i in range(3000):
        p.inject_b(mk(nxt + 2 + 2 * i, a.snd_nxt, ACK, payload=b"z"))
    assert b.ooo.truesize <= b.settings.ooo_max_bytes
    assert 1000 < len(b.ooo) < 1100
    assert b.counters["TCPOFODrop"] == 3000 - len(b.ooo)
    p.inject_b(mk(nxt, a.snd_nxt, ACK, payload=b"a"))
    p.inject_b(mk(nxt + 1, a.snd_nxt, ACK, payload=b"b"))
    assert b.read(10) == b"abz"
