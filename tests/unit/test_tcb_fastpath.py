"""Header prediction (Tcb._on_segment_predicted) against the slow path.

Every segment an ESTABLISHED TCB receives is also run, on a deep copy made
just before, through the generic RFC 9293 3.10.7.4 path
(_on_segment_synchronized) alone; the two TCBs must then agree on every
slot, recursively (sequence variables, buffers, timers, the outbox's
segments, loss recovery, counters). A third copy checks that a segment the
fast path turns down leaves the TCB untouched. Traffic comes from the
two-TCB harness over a lossy, duplicating, reordering network (hypothesis),
plus a table of segments that must take the slow path.
"""

from __future__ import annotations

import copy
import enum
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.tcp.seq import MASK, seq_diff
from ustack.tcp.state import State
from ustack.tcp.tcb import _EMPTY_BUF, Tcb
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, TcpSegment

_ORIGINAL = Tcb.on_segment


def clone(tcb: Tcb) -> Tcb:
    """A deep copy that keeps module-level shared objects shared (the empty
    buffer is compared by identity)."""
    return copy.deepcopy(tcb, {id(_EMPTY_BUF): _EMPTY_BUF})


def snapshot(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """A comparable value of everything reachable from `obj`."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, enum.Enum)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return ("<seen>", memo[id(obj)])
    memo[id(obj)] = len(memo)
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(snapshot(x, memo) for x in obj))
    if isinstance(obj, dict):
        return ("dict", tuple(sorted(
            (repr(k), snapshot(v, memo)) for k, v in obj.items())))
    if isinstance(obj, (set, frozenset)):
        return ("set", tuple(sorted(repr(x) for x in obj)))
    fields: list[tuple[str, Any]] = []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name != "__weakref__" and hasattr(obj, name):
                fields.append((name, snapshot(getattr(obj, name), memo)))
    if hasattr(obj, "__dict__"):
        fields.extend((k, snapshot(v, memo)) for k, v in sorted(vars(obj).items()))
    return (type(obj).__name__, tuple(fields))


_HP = ("TCPHPHits", "TCPHPAcks")


def _hp_counts(tcb: Tcb) -> tuple[int, ...]:
    return tuple(tcb.counters[name] for name in _HP)


class Oracle:
    """Replaces Tcb.on_segment: the real call, checked against the slow path."""

    def __init__(self) -> None:
        self.predicted = 0
        self.slow = 0

    def __call__(self, tcb: Tcb, seg: TcpSegment, now: float) -> None:
        if tcb.state is not State.ESTABLISHED:
            _ORIGINAL(tcb, seg, now)
            return
        slow = clone(tcb)
        probe = clone(tcb)
        probe.clock = now
        before = snapshot(probe)
        taken = probe._on_segment_predicted(seg, now)
        if taken:
            self.predicted += 1
        else:
            self.slow += 1
            assert snapshot(probe) == before, "a refused prediction changed state"
        hits = _hp_counts(tcb)
        _ORIGINAL(tcb, seg, now)
        slow.clock = now
        slow._on_segment_synchronized(seg, now)
        slow._update_deadline()
        # Only the fast path counts itself (Linux's TCPHPHits / TCPHPAcks).
        assert sum(_hp_counts(tcb)) - sum(hits) == (1 if taken else 0)
        for name in _HP:
            if name in tcb.counters:
                slow.counters[name] = tcb.counters[name]
        fast_s, slow_s = snapshot(tcb), snapshot(slow)
        if fast_s != slow_s:
            diff = [(f[0], f[1], g[1]) for f, g in zip(fast_s[1], slow_s[1],
                                                     strict=True) if f != g]
            raise AssertionError(f"fast and slow paths differ on {seg}: {diff}")


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Oracle]:
    o = Oracle()

    def on_segment(tcb: Tcb, seg: TcpSegment, now: float) -> None:
        o(tcb, seg, now)

    monkeypatch.setattr(Tcb, "on_segment", on_segment)
    yield o


def _exchange(pair: Pair, rng: random.Random, rounds: int) -> None:
    a, b = pair.a, pair.b
    assert b is not None
    for _ in range(rounds):
        for tcb in (a, b):
            if rng.random() < 0.7:
                tcb.send(rng.randbytes(rng.choice([1, 100, 1000, 3000, 9000])))
            if rng.random() < 0.3:
                tcb.nodelay = not tcb.nodelay
        pair.pump()
        pair.advance(rng.choice([0.0, 0.005, 0.05, 0.3]))
        for tcb in (a, b):
            if rng.random() < 0.8:
                tcb.read(rng.choice([10, 1000, 1 << 20]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    dup=st.sampled_from([0.0, 0.1]),
    jitter=st.sampled_from([0.0, 0.02]),
    ts=st.booleans(),
    sack=st.booleans(),
    wscale=st.sampled_from([0, 2, 7]),
    rcv_buf=st.sampled_from([3000, 20000, 1 << 20]),
    iss=st.sampled_from([0, MASK - 5000, 2**31 - 100]),
    keepalive=st.booleans(),
)
def test_fast_path_agrees_with_slow_path(
    oracle: Oracle, seed: int, loss: float, dup: float, jitter: float, ts: bool,
    sack: bool, wscale: int, rcv_buf: int, iss: int, keepalive: bool,
) -> None:
    rng = random.Random(seed)
    s = Settings(timestamps=ts, sack=sack, wscale=wscale, rcv_buf=rcv_buf,
                 snd_buf=30000, msl=0.5)
    pair = Pair(settings=s, iss_a=iss, iss_b=(iss * 7 + 3) & MASK, mss=536,
                delay=0.01)

    def net(direction: str, seg: TcpSegment) -> list[float]:
        copies = [] if rng.random() < loss else [rng.uniform(0, jitter)]
        if rng.random() < dup:
            copies.append(rng.uniform(0, 0.03))
        return copies

    pair.net = net
    pair.connect()
    pair.run()
    if pair.b is None or pair.states() != (State.ESTABLISHED, State.ESTABLISHED):
        return  # the handshake lost too much: nothing established to check
    for tcb in (pair.a, pair.b):
        tcb.set_keepalive(keepalive, pair.now)
    _exchange(pair, rng, 12)
    assert oracle.predicted + oracle.slow > 0


def test_clean_bulk_takes_the_fast_path(oracle: Oracle) -> None:
    """In-order data and pure ACKs are predicted; the first segments after
    the handshake (a SYN's window, no data yet) may not be."""
    pair = Pair(settings=Settings(rcv_buf=1 << 16, snd_buf=1 << 18), mss=1460)
    a, b = pair.establish()
    data = random.Random(1).randbytes(200_000)
    sent = got = 0
    while got < len(data):
        sent += a.send(data[sent:])
        pair.pump()
        got += len(b.read(1 << 20))
        pair.advance(0.05)
    assert oracle.predicted > 100
    assert oracle.slow <= 2, (oracle.predicted, oracle.slow)


def _established() -> tuple[Pair, Tcb, Tcb]:
    pair = Pair(settings=Settings(), mss=1460)
    a, b = pair.establish()
    a.send(b"x" * 100)
    pair.pump()
    b.read(1000)
    pair.advance(0.1)
    return pair, a, b


def _next_from_a(a: Tcb, b: Tcb, **changes: Any) -> TcpSegment:
    """The segment A would send next with 10 bytes, edited."""
    fields: dict[str, Any] = dict(
        src_port=a.local_port, dst_port=a.remote_port, seq=b.rcv_nxt,
        ack=b.snd_max, flags=ACK | PSH, window=a.advertised_window_field(),
        payload=b"y" * 10, timestamp=(a._tsval(), a.ts_recent),
    )
    fields.update(changes)
    return TcpSegment(**fields)


@pytest.mark.parametrize("name,changes", [
    ("out of order", {"seq": "+1"}),
    ("FIN", {"flags": ACK | FIN}),
    ("SYN", {"flags": ACK | SYN}),
    ("RST", {"flags": ACK | RST}),
    ("URG", {"flags": ACK | URG}),
    ("no ACK", {"flags": PSH}),
    ("SACK blocks", {"sack_blocks": ((1, 2),)}),
    ("old timestamp", {"timestamp": "old"}),
    ("ACK of unsent data", {"ack": "+1"}),
    ("old ACK", {"ack": "-1"}),
    ("past the window", {"payload": "window+1"}),
])
def test_slow_path_cases(name: str, changes: dict[str, Any]) -> None:
    _, a, b = _established()
    edits = dict(changes)
    if edits.get("seq") == "+1":
        edits["seq"] = (b.rcv_nxt + 1) & MASK
    if edits.get("ack") == "+1":
        edits["ack"] = (b.snd_max + 1) & MASK
    if edits.get("ack") == "-1":
        edits["ack"] = (b.snd_una - 1) & MASK
    if edits.get("timestamp") == "old":
        edits["timestamp"] = ((b.ts_recent - 1) & MASK, a.ts_recent)
    if edits.get("payload") == "window+1":
        edits["payload"] = b"z" * (seq_diff(b.rcv_adv, b.rcv_nxt) + 1)
    seg = _next_from_a(a, b, **edits)
    probe = clone(b)
    before = snapshot(probe)
    assert not probe._on_segment_predicted(seg, 1.0)
    assert snapshot(probe) == before


def test_the_next_segment_is_predicted() -> None:
    _, a, b = _established()
    seg = _next_from_a(a, b)
    nxt = b.rcv_nxt
    assert b._on_segment_predicted(seg, 1.0)
    assert b.rcv_nxt == (nxt + 10) & MASK and bytes(b.rcvbuf) == b"y" * 10

