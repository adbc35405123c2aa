"""Memory of an idle connection, and the TCB's side objects made on demand.

An established idle TCB holds only its hot state; loss recovery and the
congestion controller appear with the first data sent, the out-of-order
queue with the first out-of-order segment (and goes when it empties), PRR
with the first fast recovery, the challenge-ACK limiter with the first
challenge ACK. Each test checks that the object appears when needed and that
the connection behaves as before. tools/bench.py memory measures the same
thing at scale.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter

from tests.tcb_harness import Pair, mk, transfer
from ustack.config import Settings
from ustack.tcp import tcb as tcb_module
from ustack.tcp.recovery import CaState
from ustack.tcp.state import State
from ustack.tcp.tcb import INITIAL_WINDOW, Tcb
from ustack.wire.tcp import ACK, FIN, SYN, TcpSegment

MSS = 1000
N = 200

# Budget for one idle established server TCB (keepalive on, counters shared
# as in a stack), as tracemalloc counts it on CPython 3.11: the object with
# its ~75 slots (~630 B), a dozen distinct sequence-number/window ints
# (28-32 B each, ~350 B), the RTO estimator (~120 B), the outbox list (56 B)
# and a few floats: ~1,230 B measured (2,630 B before the cold state became
# lazy). Any cold object made eagerly again crosses it (loss recovery
# ~600 B, the out-of-order queue ~340 B, the congestion controller ~250 B,
# even one send or receive bytearray, 56 B); a few more slots (8 B each,
# e.g. one for pacing, one for ECN state) do not.
IDLE_BUDGET = 1_280


def _idle_server(settings: Settings, counters: Counter[str], i: int) -> Tcb:
    p = Pair(settings, iss_a=1000 + 7919 * i, iss_b=5000 + 104729 * i,
             counters=counters)
    p.a.set_keepalive(True, 0.0)
    p.connect()
    b = p.b
    assert b is not None and b.state is State.ESTABLISHED
    b.set_keepalive(True, p.now)
    b.outbox.clear()
    return b


def test_idle_established_tcb_fits_the_budget() -> None:
    settings = Settings()
    counters: Counter[str] = Counter()
    _idle_server(settings, counters, -1)  # warm caches outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [_idle_server(settings, counters, i) for i in range(N)]
        gc.collect()
        per_tcb = (tracemalloc.get_traced_memory()[0] - before) / N
    finally:
        tracemalloc.stop()
    assert len(kept) == N
    assert per_tcb <= IDLE_BUDGET, f"{per_tcb:.0f} B per idle TCB"
    b = kept[0]
    # None of the cold state exists on an idle connection.
    assert b._rec is None and b._cc is None and b._ooo is None
    assert b._challenge_limiter is None
    assert b.sndbuf is tcb_module._EMPTY_BUF and b.rcvbuf is tcb_module._EMPTY_BUF
    # ... yet its read-only views answer as before.
    assert b.cwnd == INITIAL_WINDOW * b.mss and b.ca_state is CaState.OPEN
    assert b.congestion_name == "cubic" and b.recover is None
    assert len(b.ooo) == 0 and b.ooo.size == 0
    assert b._cc is None  # reading them made nothing


def test_first_send_makes_recovery_with_the_initial_window() -> None:
    p = Pair(mss=MSS)
    a, b = p.establish()
    assert a._rec is None and a._cc is None
    data = bytes(range(256)) * 40
    assert transfer(p, a, b, data) == data
    assert a._rec is not None and a._cc is not None and a._rec.cc is a._cc
    assert a._rec.queue.una == a.una_off == 1 + len(data)
    # Slow start grew from the initial window of the negotiated MSS.
    assert a.cwnd > INITIAL_WINDOW * a.mss
    # All acknowledged: the send buffer is the shared empty one again.
    assert a.sndbuf is tcb_module._EMPTY_BUF and not b.rcvbuf
    assert tcb_module._EMPTY_BUF == b""  # nothing ever appended to it
    assert b._rec is None  # B sent nothing but ACKs


def test_out_of_order_queue_appears_and_goes() -> None:
    p = Pair(mss=MSS)
    a, b = p.establish()
    nxt = b.rcv_nxt
    p.inject_b(mk(nxt + MSS, a.snd_nxt, ACK, payload=b"y" * MSS))
    assert b._ooo is not None and b.ooo.size == MSS
    ack = p.sent("B>A")[-1].seg
    assert ack.ack == nxt and ack.sack_blocks == ((nxt + MSS, nxt + 2 * MSS),)
    p.inject_b(mk(nxt, a.snd_nxt, ACK, payload=b"x" * MSS))
    assert b.read(1 << 16) == b"x" * MSS + b"y" * MSS
    assert b._ooo is None and b.rcv_nxt == nxt + 2 * MSS
    assert tcb_module._NO_OOO.size == 0 and len(tcb_module._NO_OOO) == 0


def test_out_of_order_fin_keeps_the_queue_until_the_hole_fills() -> None:
    p = Pair(mss=MSS)
    a, b = p.establish()
    nxt = b.rcv_nxt
    p.inject_b(mk(nxt + 5, a.snd_nxt, ACK | FIN))  # FIN beyond a hole
    assert b._ooo is not None and b.ooo.fin_seq == nxt + 5
    p.inject_b(mk(nxt, a.snd_nxt, ACK, payload=b"hello"))
    assert b.fin_received and b.state is State.CLOSE_WAIT and b._ooo is None
    assert b.read(100) == b"hello"


def test_prr_appears_with_the_first_fast_recovery() -> None:
    p = Pair(delay=0.02, mss=MSS, settings=Settings(msl=1.0, timestamps=False))
    a, b = p.establish()
    assert transfer(p, a, b, b"w" * (4 * MSS)) == b"w" * (4 * MSS)
    assert a._rec is not None and a._rec.prr is None  # no loss yet
    hole = a.snd_max + 2 * MSS
    dropped: list[TcpSegment] = []

    def drop(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.seq == hole and not dropped:
            dropped.append(seg)
            return True
        return False

    p.drop = drop
    data = b"z" * (20 * MSS)
    assert transfer(p, a, b, data) == data
    assert dropped and a._rec.prr is not None
    assert a.counters["TCPSackRecovery"] == 1 and a.counters["TCPTimeouts"] == 0


def test_challenge_ack_limiter_made_on_first_use() -> None:
    p = Pair(mss=MSS)
    a, b = p.establish()
    assert b._challenge_limiter is None
    p.inject_b(mk(b.rcv_nxt + 10, 0, SYN))  # in-window SYN: challenge ACK
    assert b._challenge_limiter is not None
    assert b.counters["TCPChallengeACK"] == 1 and b.state is State.ESTABLISHED


def test_congestion_switch_before_sending_keeps_the_window() -> None:
    p = Pair(mss=MSS)
    a, b = p.establish()
    a.set_congestion("reno")
    assert a.congestion_name == "reno" and a.cwnd == INITIAL_WINDOW * a.mss
    a.set_congestion("reno")  # same name: nothing made again
    cc = a._cc
    data = b"r" * (30 * MSS)
    assert transfer(p, a, b, data) == data
    assert a._cc is cc and a._rec is not None and a._rec.cc is cc


def test_path_mtu_drop_before_sending_keeps_the_old_window() -> None:
    """As before the side objects were lazy: the window sized at the
    handshake stays (RFC 1191 lowers the MSS, not cwnd)."""
    p = Pair(mss=1460)
    a, b = p.establish()
    iw = a.cwnd
    a.on_path_mtu(1200, p.now)
    assert a.mss < 1460 and a.cwnd == iw and a._cc is not None
