"""The sender's shortcuts against the full paths: the common-ACK fast path
(LossRecovery._on_cumulative_ack) against LossRecovery.on_ack with it off,
header prediction's ACK path (Tcb._predicted_ack) against Tcb._sender_ack
with the fast ACK path off, and the output pass that has nothing to send
(Tcb._output_data) against the full pass.

Every ACK the sender side processes (Tcb._sender_ack, Tcb._predicted_ack)
and every output pass is also run, on a deep copy made just before, with
`LossRecovery.fast_ack` (or `Tcb.fast_output`) off; the two TCBs must then
agree on every slot, recursively (sequence variables, buffers, timers, the
outbox, the retransmission queue, RACK, the congestion controller, counters).
ACKs come from the two-TCB harness over a lossy, duplicating, reordering
network, and from a scripted peer that sends random ACKs (cumulative, old,
duplicate, with SACK blocks, ECE, window changes) in virtual time.
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcb_harness import Pair, mk
from tests.unit.test_tcb_fastpath import clone, snapshot
from ustack.config import Settings
from ustack.tcp import ecn
from ustack.tcp.cc import create as cc_create
from ustack.tcp.recovery import MIN_PTO, WC_DEL_ACK, CaState, LossRecovery
from ustack.tcp.seq import MASK
from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, ECE, TcpSegment

_ORIGINAL = Tcb._sender_ack
_PREDICTED = Tcb._predicted_ack
_OUTPUT = Tcb._output_data
_FAST = LossRecovery._on_cumulative_ack


class Oracle:
    """Replaces Tcb._sender_ack: the real call, checked against the full path."""

    def __init__(self) -> None:
        self.fast = 0
        self.calls = 0
        self.predicted = 0
        self.outputs = 0

    def __call__(
        self, tcb: Tcb, seg: TcpSegment, wnd: int, advanced: bool, now: float
    ) -> None:
        self.calls += 1
        full = clone(tcb)
        _ORIGINAL(tcb, seg, wnd, advanced, now)
        LossRecovery.fast_ack = False
        try:
            _ORIGINAL(full, seg, wnd, advanced, now)
        finally:
            LossRecovery.fast_ack = True
        _compare(tcb, full, f"ACK {seg}")

    def predicted_ack(
        self,
        tcb: Tcb,
        rec: LossRecovery,
        ack: int,
        ts: tuple[int, int] | None,
        now: float,
    ) -> None:
        """The fused path against the whole of _sender_ack (fast ACK path
        off) for the same ACK: a predicted segment has no SACK blocks, no
        ECE, no SYN/FIN, and its ACK advances SND.UNA."""
        self.calls += 1
        self.predicted += 1
        assert rec is tcb._rec
        full = clone(tcb)
        seg = TcpSegment(tcb.remote_port, tcb.local_port, tcb.rcv_nxt, ack, ACK,
                         0, timestamp=ts)
        _PREDICTED(tcb, rec, ack, ts, now)
        LossRecovery.fast_ack = False
        try:
            _ORIGINAL(full, seg, full.snd_wnd, True, now)
        finally:
            LossRecovery.fast_ack = True
        _compare(tcb, full, f"predicted ACK {ack} ts={ts}")

    def output(self, tcb: Tcb, now: float) -> None:
        self.outputs += 1
        full = clone(tcb)
        _OUTPUT(tcb, now)
        Tcb.fast_output = False
        try:
            _OUTPUT(full, now)
        finally:
            Tcb.fast_output = True
        _compare(tcb, full, "an output pass")


def _compare(tcb: Tcb, full: Tcb, what: str) -> None:
    got, want = snapshot(tcb), snapshot(full)
    if got != want:
        diff = [(f[0], f[1], g[1]) for f, g in zip(got[1], want[1], strict=True)
                if f != g]
        raise AssertionError(f"fast and full paths differ on {what}: {diff}")


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Oracle]:
    o = Oracle()

    def sender_ack(
        tcb: Tcb, seg: TcpSegment, wnd: int, advanced: bool, now: float
    ) -> None:
        o(tcb, seg, wnd, advanced, now)

    def counted(rec: LossRecovery, ack: int, now: float, srtt: float) -> float | None:
        o.fast += 1
        return _FAST(rec, ack, now, srtt)

    def output_data(tcb: Tcb, now: float) -> None:
        o.output(tcb, now)

    def predicted_ack(
        tcb: Tcb, rec: LossRecovery, ack: int, ts: tuple[int, int] | None,
        now: float,
    ) -> None:
        o.predicted_ack(tcb, rec, ack, ts, now)

    monkeypatch.setattr(Tcb, "_sender_ack", sender_ack)
    monkeypatch.setattr(Tcb, "_output_data", output_data)
    monkeypatch.setattr(Tcb, "_predicted_ack", predicted_ack)
    monkeypatch.setattr(LossRecovery, "_on_cumulative_ack", counted)
    yield o


class _Impaired:
    """Drops, duplicates and delays (so reorders) segments at random."""

    def __init__(self, rng: random.Random, loss: float, dup: float,
                 jitter: float) -> None:
        self.rng, self.loss, self.dup, self.jitter = rng, loss, dup, jitter

    def __call__(self, direction: str, seg: TcpSegment) -> list[float]:
        rng = self.rng
        delays = [rng.uniform(0, self.jitter)] if rng.random() >= self.loss else []
        if rng.random() < self.dup:
            delays.append(rng.uniform(0, 0.03))
        return delays


_SETTINGS = dict(snd_buf=60000, msl=0.5)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.03, 0.15]),
    dup=st.sampled_from([0.0, 0.1]),
    jitter=st.sampled_from([0.0, 0.02]),
    ts=st.booleans(),
    sack=st.booleans(),
    ecn=st.sampled_from([0, 1]),
    congestion=st.sampled_from(["cubic", "reno"]),
    iss=st.sampled_from([0, MASK - 5000, 2**31 - 100]),
    pacing=st.sampled_from(["auto", "on"]),
)
def test_harness_traffic(
    oracle: Oracle, seed: int, loss: float, dup: float, jitter: float, ts: bool,
    sack: bool, ecn: int, congestion: str, iss: int, pacing: str,
) -> None:
    rng = random.Random(seed)
    s = Settings(timestamps=ts, sack=sack, ecn=ecn, congestion=congestion,
                 pacing=pacing, **_SETTINGS)  # type: ignore[arg-type]
    pair = Pair(settings=s, iss_a=iss, iss_b=(iss * 7 + 3) & MASK, mss=536,
                delay=0.01)
    a, b = pair.establish()  # a clean handshake, then the impaired path
    pair.net = _Impaired(rng, loss, dup, jitter)
    for _ in range(10):
        for tcb in (a, b):
            if rng.random() < 0.7:
                tcb.send(rng.randbytes(rng.choice([1, 100, 1000, 5000])))
            tcb.nodelay = rng.random() < 0.5
        pair.pump()
        pair.advance(rng.choice([0.0, 0.005, 0.05, 0.3, 1.5]))
        for tcb in (a, b):
            tcb.read(rng.choice([10, 1000, 1 << 20]))
    assert oracle.calls > 0 and oracle.outputs > 0


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    ts=st.booleans(),
    sack=st.booleans(),
    tso=st.booleans(),
)
def test_random_acks_from_a_scripted_peer(
    oracle: Oracle, seed: int, ts: bool, sack: bool, tso: bool
) -> None:
    """A's data never reaches B; the test plays B and answers with random
    ACKs: cumulative ones anywhere in the window (or old), duplicates, SACK
    blocks inside the outstanding data, ECE, other windows, at random times
    (timers fire between them: RTO, TLP, RACK's reorder timer)."""
    rng = random.Random(seed)
    s = Settings(timestamps=ts, sack=sack, **_SETTINGS)  # type: ignore[arg-type]
    pair = Pair(settings=s, mss=1000)
    a, b = pair.establish()
    if tso:
        a.tso_limit = 16000
    pair.drop = lambda direction, seg: direction.startswith("A>B")
    seq_b = b.snd_max
    for _ in range(60):
        if rng.random() < 0.3:
            a.send(rng.randbytes(rng.choice([1, 500, 3000, 12000])))
            pair.pump()
        una, top = a.snd_una, a.snd_max
        span = (top - una) & MASK
        if rng.random() < 0.15:
            ack = (una - rng.randint(0, 3000)) & MASK  # old
        elif rng.random() < 0.3 or not span:
            ack = una  # duplicate
        else:
            ack = (una + rng.randint(1, span)) & MASK
        blocks: tuple[tuple[int, int], ...] = ()
        if span > 2 and rng.random() < 0.4:
            picks = []
            for _ in range(rng.randint(1, 3)):
                lo = rng.randint(0, span - 1)
                hi = rng.randint(lo + 1, span)
                picks.append(((una + lo) & MASK, (una + hi) & MASK))
            blocks = tuple(picks)
        flags = ACK | (ECE if rng.random() < 0.1 else 0)
        window = rng.choice([65535, 65535, 65535, 8000, 0])
        tstamp = (rng.randint(0, 1 << 20), a._tsval()) if a.ts_ok else None
        pair.inject_a(mk(seq_b, ack, flags, window, to_b=False,
                         sack_blocks=blocks, timestamp=tstamp))
        pair.advance(rng.choice([0.0, 0.001, 0.02, 0.3, 2.0]))
        if a.state is not State.ESTABLISHED:
            break
    assert oracle.calls > 0


def test_clean_bulk_and_ping_pong_take_the_fast_path(oracle: Oracle) -> None:
    """Without loss almost every ACK is a plain cumulative one."""
    pair = Pair(settings=Settings(rcv_buf=1 << 16, snd_buf=1 << 18), mss=1460)
    a, b = pair.establish()
    data = random.Random(1).randbytes(100_000)
    sent = got = 0
    while got < len(data):
        sent += a.send(data[sent:])
        pair.pump()
        got += len(b.read(1 << 20))
        pair.advance(0.01)
    a.nodelay = b.nodelay = True
    for _ in range(50):
        a.send(b"x")
        pair.pump()
        b.read(10)
        b.send(b"y")
        pair.pump()
        a.read(10)
    assert oracle.calls > 100
    assert oracle.fast >= oracle.calls - 2, (oracle.fast, oracle.calls)
    # Header prediction takes the fused ACK path for nearly all of them.
    assert oracle.predicted >= oracle.calls - 4, (oracle.predicted, oracle.calls)


def test_a_loss_takes_the_full_path(oracle: Oracle) -> None:
    """With a segment SACKed above a hole, or marked lost, the fast path is
    not taken (and recovery then runs as before)."""
    pair = Pair(settings=Settings(), mss=1000)
    a, b = pair.establish()
    dropped: list[TcpSegment] = []

    def drop_third(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and not dropped and (
            (seg.seq - a.iss) & MASK > 2000
        ):
            dropped.append(seg)
            return True
        return False

    pair.drop = drop_third
    a.send(bytes(10_000))
    pair.run()
    pair.advance(5.0)
    assert dropped and a.snd_una == a.snd_max
    assert a.counters["TCPSackRecovery"] + a.counters["TCPLossProbes"] >= 1
    assert oracle.fast < oracle.calls


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([1, 500, 1460, 4380]), min_size=1, max_size=6),
    data=st.data(),
    sack=st.booleans(),
    slow_start=st.booleans(),
    congestion=st.sampled_from(["cubic", "reno"]),
)
def test_cumulative_ack_on_a_queue_with_any_clean_records(
    sizes: list[int], data: st.DataObject, sack: bool, slow_start: bool,
    congestion: str,
) -> None:
    """LossRecovery._on_cumulative_ack against the full on_ack on queues the
    traffic tests seldom reach: records retransmitted before but clean now
    (after an undo), sent out of order, a RACK state from earlier ACKs, an
    ACK inside a record (offload), rounds and app-limited flags."""
    rec = LossRecovery(cc_create(congestion, 1460, 14600), Counter(), sack_ok=sack)
    rec.reset(1)
    q = rec.queue
    draw = data.draw
    off = 1
    for size in sizes:
        r = q.append(off, off + size, draw(st.floats(0.0, 1.0)))
        r.ever_retrans = draw(st.booleans())
        off += size
    rack = rec.rack
    rack.min_rtt = draw(st.sampled_from([math.inf, 0.001, 0.05, 0.5]))
    rack.min_rtt_stamp = draw(st.sampled_from([0.0, -400.0]))
    rack.xmit_ts = draw(st.sampled_from([-math.inf, 0.0, 0.5, 1.0]))
    rack.end = draw(st.integers(0, off))
    q.fack = draw(st.integers(1, off))
    rec.round_end = draw(st.integers(0, off))
    rec.max_flight = draw(st.integers(0, 20000))
    rec.cwnd_used_prev = draw(st.booleans())
    if not slow_start:
        rec.cc.ssthresh = 2920
    ack = draw(st.integers(2, off))
    now = 1.0 + draw(st.floats(0.0, 1.0))
    srtt = draw(st.sampled_from([0.0, 0.01, 0.2]))
    full = copy.deepcopy(rec)
    got = rec.on_ack(ack, [], None, False, now, None, srtt)
    LossRecovery.fast_ack = False
    try:
        want = full.on_ack(ack, [], None, False, now, None, srtt)
    finally:
        LossRecovery.fast_ack = True
    assert got == want
    assert snapshot(rec) == snapshot(full)


@given(
    srtt=st.floats(0.0, 5.0),
    rto=st.floats(0.2, 120.0),
    flight=st.integers(1, 20000),
)
def test_probe_timeout_is_rfc_8985s_formula(
    srtt: float, rto: float, flight: int
) -> None:
    """LossRecovery.pto, whose max/min are unrolled, against RFC 8985 7.2
    as written: PTO = 2 * SRTT, or max(PTO, 1.5 * SRTT + WCDelAckT) with one
    segment in flight, floored (Linux) and capped by the RTO."""
    rec = LossRecovery(cc_create("cubic", 1460, 14600), Counter(), sack_ok=True)
    rec.reset(1)
    rec.queue.append(1, 1 + flight, 0.0)
    pto = 2 * srtt
    if flight <= 1460:
        pto = max(pto, 1.5 * srtt + WC_DEL_ACK)
    assert rec.pto(srtt, rto) == min(max(pto, MIN_PTO), rto)


def test_predicted_ack_that_finds_a_loss_queues_cwr_like_the_full_path() -> None:
    """A once-retransmitted record (clean again after an undo) resent after
    the record above it: its cumulative ACK makes RACK (RFC 8985 6.2) mark
    the older-sent record lost, so the fused path enters recovery, and with
    ECN on the next new segment must carry CWR (RFC 3168 6.1.2), as after
    the full _sender_ack."""
    pair = Pair(settings=Settings(ecn=1, **_SETTINGS), mss=1000)  # type: ignore[arg-type]
    a, b = pair.establish()
    assert a.ecn_flags
    pair.drop = lambda direction, seg: direction.startswith("A>B")
    a.send(bytes(3000))
    pair.pump()
    rec = a.rec
    first, second = rec.queue.recs[0], rec.queue.recs[1]
    now = pair.now + 0.05
    first.ever_retrans = True
    first.xmit = now - 0.002  # resent after the second was sent
    second.xmit = now - 0.04
    rec.rack.min_rtt = 0.001
    ack = (a.snd_una + 1000) & MASK
    ts = (b._tsval(), a._tsval()) if a.ts_ok else None
    full = clone(a)
    _PREDICTED(a, rec, ack, ts, now)
    seg = TcpSegment(a.remote_port, a.local_port, a.rcv_nxt, ack, ACK, 0,
                     timestamp=ts)
    LossRecovery.fast_ack = False
    try:
        _ORIGINAL(full, seg, full.snd_wnd, True, now)
    finally:
        LossRecovery.fast_ack = True
    assert a.rec.state is not CaState.OPEN
    assert a.ecn_flags & ecn.QUEUE_CWR
    _compare(a, full, "an ACK that finds a loss")
