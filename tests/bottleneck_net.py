"""Sans-IO TCB flows through one shared bottleneck, in virtual time.

Each flow is a sender TCB (client) and a receiver TCB (server). Data
segments from all senders share one FIFO link of `rate` bytes/s with a
drop-tail queue of `queue` packets (like netem rate + limit); everything
else only sees the propagation delay (`delay` each way). The receivers
read what arrives at once, so only the network limits the flows. The
queueing delay of every data packet is recorded, to check standing queues.

`stalls=(mean_gap, max_len, seed)` makes the senders' host stall now and then
(a busy machine, an event loop that wakes late): a segment reaching a sender
or a sender's timer due during a stall is handled when the stall ends, all
of them with that one `now`, as a late event loop does. The network keeps
its own time meanwhile, as a real one does, unless `coupled`: then the link
stalls with the sender's host, as ustack's own impairment layer (which runs
in the stack's process) does: packets due out of the link, and the peer's
answers waiting to enter it, wait for the stall to end. `stamped`: a
segment that waited for the stall is handed to the sender with the time it
arrived, as Stack._input_stamped does with the path process's socket stamps
(Linux's ACK clock is the softirq's, right after the NIC); the default is
the time the stall ends, as a stack that only has its own clock.
"""

from __future__ import annotations

import bisect
import heapq
import random

from ustack.config import Settings
from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, SYN, TcpSegment

HEADER = 40  # IP + TCP bytes per packet on the link


class Flow:
    def __init__(self, index: int, settings: Settings, mss: int, now: float) -> None:
        self.index = index
        ip_a = bytes([10, 0, 1, index + 1])
        self.addr_a = (ip_a, 40000 + index)
        self.addr_b = (bytes([10, 0, 0, 2]), 80)
        self.settings = settings
        self.mss = mss
        self.a = Tcb(settings, self.addr_a, self.addr_b, 1000 + index, mss, now)
        self.b: Tcb | None = None
        self.received = 0
        self.to_send = 0
        self.arrivals: list[tuple[float, int]] = []  # (time, bytes) at B


class BottleneckNet:
    def __init__(
        self,
        rate: float,
        delay: float,
        queue: int,
        mss: int = 1460,
        stalls: tuple[float, float, int] | None = None,
        coupled: bool = False,
        stamped: bool = False,
    ) -> None:
        self.rate = rate
        self.delay = delay
        self.queue = queue
        self.mss = mss
        self.now = 0.0
        self.flows: list[Flow] = []
        self._heap: list[tuple[float, int, int, str, TcpSegment]] = []
        self._n = 0
        self.link_free = 0.0  # when the bottleneck finishes its current packet
        self.backlog: list[float] = []  # departure times of queued packets
        self.queue_delays: list[tuple[float, float]] = []  # (time, seconds)
        self.drops = 0
        self._stalls: list[tuple[float, float]] = []  # (start, end), sorted
        self._stall_rng: random.Random | None = None
        self._stall_gap = self._stall_len = 0.0
        if stalls is not None:
            self._stall_gap, self._stall_len, seed = stalls
            self._stall_rng = random.Random(seed)
        self._stall_ends: list[float] = []
        self.coupled = coupled
        self.stamped = stamped
        self._arrived: dict[int, float] = {}  # heap entry -> first due time

    def _awake(self, t: float) -> float:
        """When the senders' host handles something due at t."""
        rng = self._stall_rng
        if rng is None:
            return t
        stalls = self._stalls
        while not stalls or stalls[-1][1] <= t:
            start = (stalls[-1][1] if stalls else 0.0) + rng.expovariate(
                1 / self._stall_gap
            )
            stalls.append((start, start + rng.uniform(0, self._stall_len)))
            self._stall_ends.append(stalls[-1][1])
        i = bisect.bisect_right(self._stall_ends, t)  # first ending after t
        start, end = stalls[i]
        return end if start <= t else t

    def add_flow(self, settings: Settings, nbytes: int) -> Flow:
        flow = Flow(len(self.flows), settings, self.mss, self.now)
        flow.to_send = nbytes
        self.flows.append(flow)
        flow.a.open_active(self.now)
        self._collect(flow)
        return flow

    def _push(self, when: float, flow: Flow, direction: str, seg: TcpSegment) -> None:
        self._n += 1
        heapq.heappush(self._heap, (when, self._n, flow.index, direction, seg))

    def _send(self, flow: Flow, direction: str, seg: TcpSegment) -> None:
        now = self.now
        if direction == "A>B" and seg.payload:
            backlog = self.backlog
            while backlog and backlog[0] <= now:
                backlog.pop(0)
            if len(backlog) >= self.queue:
                self.drops += 1
                return
            start = max(now, self.link_free)
            self.link_free = start + (len(seg.payload) + HEADER) / self.rate
            backlog.append(self.link_free)
            self.queue_delays.append((now, start - now))
            self._push(self.link_free + self.delay, flow, direction, seg)
        else:
            entry = self._awake(now) if self.coupled and direction == "B>A" else now
            self._push(entry + self.delay, flow, direction, seg)

    def _collect(self, flow: Flow) -> None:
        for tcb, direction in ((flow.a, "A>B"), (flow.b, "B>A")):
            if tcb is None or not tcb.outbox:
                continue
            out, tcb.outbox = tcb.outbox, []
            for seg in out:
                self._send(flow, direction, seg)

    def _feed(self, flow: Flow) -> None:
        a = flow.a
        if flow.to_send and a.state is State.ESTABLISHED:
            n = a.send(b"x" * min(flow.to_send, a.send_space()))
            flow.to_send -= n

    def _deliver(
        self, flow: Flow, direction: str, seg: TcpSegment, arrived: float
    ) -> None:
        if direction == "A>B":
            if flow.b is None:
                if seg.flags & SYN and not seg.flags & ACK:
                    flow.b = Tcb(flow.settings, flow.addr_b, flow.addr_a, 5000,
                                 flow.mss, self.now)
                    flow.b.open_passive(seg, self.now)
                return
            flow.b.on_segment(seg, self.now)
            data = flow.b.read(1 << 30)
            if data:
                flow.received += len(data)
                flow.arrivals.append((self.now, len(data)))
        else:
            flow.a.on_segment(seg, arrived if self.stamped else self.now)

    def _settle(self, flow: Flow) -> None:
        self._feed(flow)
        for tcb in (flow.a, flow.b):
            if tcb is not None:
                tcb.flush(self.now)
        self._collect(flow)

    def run(self, until: float) -> None:
        for _ in range(20_000_000):
            times = [self._awake(t) if tcb is f.a else t
                     for f in self.flows for tcb in (f.a, f.b)
                     if tcb is not None and (t := tcb.deadline) is not None]
            nxt = min(times) if times else None
            if self._heap and (nxt is None or self._heap[0][0] < nxt):
                nxt = self._heap[0][0]
            if nxt is None or nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            touched: set[int] = set()
            while self._heap and self._heap[0][0] <= self.now:
                when, n, i, direction, seg = heapq.heappop(self._heap)
                arrived = self._arrived.pop(n, when)
                if direction == "B>A" or self.coupled:
                    later = self._awake(when)
                    if later > self.now:  # the sender's host is stalled
                        self._push(later, self.flows[i], direction, seg)
                        self._arrived[self._n] = arrived
                        continue
                self._deliver(self.flows[i], direction, seg, arrived)
                touched.add(i)
            for f in self.flows:
                for tcb in (f.a, f.b):
                    if tcb is not None and tcb.deadline is not None \
                            and tcb.deadline <= self.now \
                            and (tcb is not f.a or self._awake(self.now) <= self.now):
                        tcb.on_timer(self.now)
                        touched.add(f.index)
            for i in touched:
                self._settle(self.flows[i])
        raise AssertionError("simulation did not end")

    def goodput(self, flow: Flow, start: float, end: float) -> float:
        """Bytes/s flow delivered to its receiver between start and end."""
        got = sum(n for t, n in flow.arrivals if start <= t < end)
        return got / (end - start)

    def queue_delay_median(self, start: float, end: float) -> float:
        samples = sorted(d for t, d in self.queue_delays if start <= t < end)
        return samples[len(samples) // 2] if samples else 0.0
