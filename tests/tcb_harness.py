"""Drive two sans-IO TCBs against each other with a virtual clock.

`Pair` links client A (active opener) and server B through a simulated
network: every segment gets a one-way `delay` (0 by default), may be dropped
by the `drop` hook, or be delayed/duplicated/reordered by the `net` hook.
Like the stack, the harness flushes both TCBs after every batch of input and
answers segments that reach a CLOSED TCB with `reset_for` (RFC 9293 3.10.7.1).
`inject_a`/`inject_b` deliver hand-made segments, to play a scripted peer.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

from ustack.config import Settings
from ustack.tcp.seq import MASK
from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb, reset_for
from ustack.wire.tcp import ACK, SYN, TcpSegment

A_IP = bytes([10, 0, 0, 1])
B_IP = bytes([10, 0, 0, 2])
A_PORT = 40000
B_PORT = 80

Filter = Callable[[str, TcpSegment], bool]
# Returns the extra delays of the copies to deliver: [] drops, [0.0, 0.0] dups.
NetHook = Callable[[str, TcpSegment], list[float]]


class Entry(NamedTuple):
    direction: str  # "A>B", "B>A"; injected segments are "A>B*" / "B>A*"
    seg: TcpSegment
    time: float


def seg_desc(seg: TcpSegment) -> str:
    return seg.flag_names() + (f"+{len(seg.payload)}" if seg.payload else "")


class Pair:
    """Client A (active opener) and server B, linked by a segment queue."""

    def __init__(
        self,
        settings: Settings | None = None,
        iss_a: int = 1000,
        iss_b: int = 5000,
        mss: int = 1460,
        *,
        mss_b: int | None = None,
        settings_b: Settings | None = None,
        delay: float = 0.0,
        rst_when_closed: bool = True,
        counters: Counter[str] | None = None,
    ) -> None:
        self.settings = settings or Settings(msl=1.0)
        self.settings_b = settings_b or self.settings
        self.now = 0.0
        # Shared by both TCBs when given (as a stack shares its counters).
        self.counters = counters
        self.a = Tcb(self.settings, (A_IP, A_PORT), (B_IP, B_PORT), iss_a, mss,
                     self.now, counters)
        self.b: Tcb | None = None
        self.iss_b = iss_b
        self.mss = mss
        self.mss_b = mss_b if mss_b is not None else mss
        self.delay = delay
        self.rst_when_closed = rst_when_closed
        self.log: list[Entry] = []
        self.drop: Filter = lambda direction, seg: False
        self.net: NetHook | None = None
        self._wire: list[tuple[float, int, str, TcpSegment]] = []
        self._counter = 0
        # State transitions as (time, "A"/"B", new state), see `trace`.
        self.history: list[tuple[float, str, State]] = [(0.0, "A", State.CLOSED)]

    # ------------------------------------------------------------------
    # Setup

    def make_b(self) -> Tcb:
        self.b = Tcb(self.settings_b, (B_IP, B_PORT), (A_IP, A_PORT), self.iss_b,
                     self.mss_b, self.now, self.counters)
        return self.b

    def connect(self) -> None:
        self.a.open_active(self.now)
        self.run()

    def establish(self) -> tuple[Tcb, Tcb]:
        self.connect()
        assert self.b is not None
        assert self.states() == (State.ESTABLISHED, State.ESTABLISHED)
        return self.a, self.b

    def simultaneous_open(self) -> None:
        """Both sides open actively; their SYNs cross on the wire."""
        b = self.make_b()
        self.a.open_active(self.now)
        b.open_active(self.now)
        self.run()

    # ------------------------------------------------------------------
    # Network

    def _deliver(self, direction: str, seg: TcpSegment) -> None:
        if direction.startswith("A>B"):
            if self.b is None:
                if seg.flags & SYN and not seg.flags & ACK:
                    self.make_b()
                    assert self.b is not None
                    self.b.open_passive(seg, self.now)
                elif self.rst_when_closed:
                    self._answer_closed("B>A", seg)
                return
            target = self.b
            back = "B>A"
        else:
            target = self.a
            back = "A>B"
        if target.state is State.CLOSED:
            if self.rst_when_closed:
                self._answer_closed(back, seg)
            return
        target.on_segment(seg, self.now)

    def note(self) -> None:
        """Record state changes (called after every event the harness drives)."""
        for name, tcb in (("A", self.a), ("B", self.b)):
            if tcb is None:
                continue
            last = [h[2] for h in self.history if h[1] == name]
            if not last or last[-1] is not tcb.state:
                self.history.append((self.now, name, tcb.state))

    def trace(self, name: str) -> list[State]:
        """The states `name` ("A" or "B") went through, in order."""
        return [h[2] for h in self.history if h[1] == name]

    def entered(self, name: str, state: State) -> float:
        """When `name` last entered `state`."""
        return [h[0] for h in self.history if h[1] == name and h[2] is state][-1]

    def _answer_closed(self, direction: str, seg: TcpSegment) -> None:
        rst = reset_for(seg)
        if rst is not None:
            self._send(direction, rst)

    def _send(self, direction: str, seg: TcpSegment) -> None:
        self.log.append(Entry(direction, seg, self.now))
        if self.drop(direction, seg):
            return
        delays = self.net(direction, seg) if self.net else [0.0]
        for extra in delays:
            self._counter += 1
            heapq.heappush(
                self._wire, (self.now + self.delay + extra, self._counter, direction,
                             seg),
            )

    def inject_a(self, seg: TcpSegment) -> None:
        """Deliver a hand-made segment to A now (as if sent by B)."""
        self.log.append(Entry("B>A*", seg, self.now))
        self._deliver("B>A", seg)
        self.note()
        self.pump()

    def inject_b(self, seg: TcpSegment) -> None:
        """Deliver a hand-made segment to B now (as if sent by A)."""
        self.log.append(Entry("A>B*", seg, self.now))
        self._deliver("A>B", seg)
        self.note()
        self.pump()

    def in_flight(self) -> int:
        return len(self._wire)

    def _collect(self) -> bool:
        moved = False
        for tcb, direction in ((self.a, "A>B"), (self.b, "B>A")):
            if tcb is None:
                continue
            out, tcb.outbox = tcb.outbox, []
            for seg in out:
                moved = True
                self._send(direction, seg)
        return moved

    def flush(self) -> None:
        self.a.flush(self.now)
        if self.b is not None:
            self.b.flush(self.now)

    def pump(self) -> int:
        """Flush both, deliver every segment due by now, until quiet."""
        delivered = 0
        for _ in range(100_000):
            self.note()
            self.flush()
            moved = self._collect()
            due = False
            while self._wire and self._wire[0][0] <= self.now:
                _, _, direction, seg = heapq.heappop(self._wire)
                self._deliver(direction, seg)
                self.note()
                delivered += 1
                due = True
            if not moved and not due:
                return delivered
        raise AssertionError("pump did not settle: segments ping-pong forever")

    def next_event(self) -> float | None:
        times = [t.deadline for t in (self.a, self.b)
                 if t is not None and t.deadline is not None]
        if self._wire:
            times.append(self._wire[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next timer or arrival and process it."""
        nxt = self.next_event()
        if nxt is None:
            return False
        self.now = max(self.now, nxt)
        for t in (self.a, self.b):
            if t is not None and t.deadline is not None and t.deadline <= self.now:
                t.on_timer(self.now)
                self.note()
        self.pump()
        return True

    def run(self, until: float | None = None) -> None:
        """Pump, then advance virtual time through timers and arrivals.

        With `until`, stop at that time (the clock ends at `until`). Without,
        stop as soon as no segment is in flight (timers may still be armed).
        """
        self.pump()
        for _ in range(1_000_000):
            nxt = self.next_event()
            if until is None:
                if not self._wire:
                    return
            elif nxt is None or nxt > until:
                self.now = max(self.now, until)
                return
            assert nxt is not None
            self.step()
        raise AssertionError("run did not settle")

    def advance(self, dt: float) -> None:
        self.run(until=self.now + dt)

    # ------------------------------------------------------------------
    # Inspection

    def states(self) -> tuple[State, State | None]:
        return self.a.state, (self.b.state if self.b else None)

    def flags_log(self, since: int = 0) -> list[str]:
        return [f"{e.direction} {seg_desc(e.seg)}" for e in self.log[since:]]

    def sent(self, direction: str, since: int = 0) -> list[Entry]:
        return [e for e in self.log[since:] if e.direction == direction]


def mk(seq: int, ack: int, flags: int, window: int = 65535, payload: bytes = b"",
       *, to_b: bool = True, **opts: object) -> TcpSegment:
    """A hand-made segment from A to B (to_b) or from B to A."""
    src, dst = (A_PORT, B_PORT) if to_b else (B_PORT, A_PORT)
    return TcpSegment(src, dst, seq & MASK, ack & MASK, flags, window, payload,
                      **opts)  # type: ignore[arg-type]


def transfer(pair: Pair, sender: Tcb, receiver: Tcb, data: bytes,
             chunk: int = 65536, limit: float = 1e6) -> bytes:
    """Send `data` from sender to receiver, reading as it arrives."""
    got = bytearray()
    pos = 0
    start = pair.now
    while len(got) < len(data):
        before = (pos, len(got))
        if pos < len(data):
            pos += sender.send(data[pos : pos + chunk])
        pair.pump()
        got += receiver.read(1 << 30)
        pair.pump()
        if len(got) < len(data) and not pair.step() and before == (pos, len(got)):
            raise AssertionError(f"stalled at {len(got)} of {len(data)} bytes")
        assert pair.now - start < limit, "transfer took too long"
    got += receiver.read(1 << 30)
    # Until the sender has its ACKs: the transfer is over for both sides.
    while sender.snd_una != sender.snd_max and sender.error is None:
        assert pair.step(), "sender never got its last ACK"
        assert pair.now - start < limit, "transfer took too long"
    return bytes(got)
