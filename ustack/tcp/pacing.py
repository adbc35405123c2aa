"""Pacing: spread a window's segments over the RTT instead of bursting them
(Linux's internal TCP pacing, tcp_output.c, with sk_pacing_rate set by the
congestion control or tcp_update_pacing_rate).

The sender may transmit when now >= next_send; each burst then moves
next_send by its length over the rate. A burst is ~1 ms of the rate (Linux
tcp_tso_autosize with sk_pacing_shift 10; at least two segments above
1.2 Mbit/s), so a fast flow costs one timer wake-up per millisecond, not one
per MSS; without offload the burst goes out as MSS-sized segments. The TCB
keeps the deadline in `deadline`, which the stack's one timer heap fires.
"""

from __future__ import annotations

# sk_pacing_shift 10: a burst is rate >> 10 bytes, i.e. ~1 ms of data.
BURST_TIME = 1 / 1024
GSO_MAX = 65536
MIN_BURST_RATE = 1_200_000 / 8  # bbr_min_tso_rate / tcp_tso_autosize floor
# Linux starts pacing after the first 10 segments (tp->data_segs_out >= 10).
UNPACED_SEGMENTS = 10
# The event loop's timers have millisecond granularity (epoll), far coarser
# than the kernel's hrtimers, and on a busy machine a wake-up can be several
# ms late: like fq's timer_slack, a burst due within TIMER_SLACK may go now,
# and a wake-up that came late while data waited for the pacer catches up
# on the time it overslept (up to MAX_CREDIT), so the average rate stays
# the pacing rate: the schedule is a token bucket of MAX_CREDIT depth.
# (Linux forgives OS jitter the same way in tcp_update_skb_after_send, by
# at most half a gap.) Without the catch-up, time lost to late wake-ups
# lowers the rate BBR measures, which lowers the pacing rate: a downward
# spiral under load. A pass that was not held back by pacing (ACK-clocked
# while cwnd-limited, or after idle) earns no credit: its schedule starts
# now, as Linux's tcp_wstamp_ns = max(tcp_wstamp_ns, now).
TIMER_SLACK = 0.001
MAX_CREDIT = 0.01


class Pacer:
    __slots__ = ("rate", "next_send", "deadline", "segments", "cursor", "held")

    def __init__(self) -> None:
        self.rate = 0.0  # bytes/s; 0 = not known yet, send unpaced
        self.next_send = 0.0  # when the next burst is due
        self.deadline: float | None = None  # armed when a burst had to wait
        self.segments = 0  # segments sent so far (the first ten go unpaced)
        # During a paced burst: the scheduled departure time of its next
        # byte (Linux's EDT tcp_wstamp_ns); None outside a burst.
        self.cursor: float | None = None
        self.held = False  # this pass follows one that pacing held back

    def budget(self, now: float, mss: int) -> int:
        """Bytes that may go out back to back now (0: wait until next_send):
        ~1 ms of the rate (tcp_tso_autosize: at least two segments above
        1.2 Mbit/s), what a late wake-up overslept, and what is left of the
        first ten segments, which go unpaced. Clears the pacing deadline:
        the caller arms it again if the pass leaves data waiting."""
        rate = self.rate
        self.cursor = None
        self.held = held = self.deadline is not None
        self.deadline = None
        if rate <= 0:
            return GSO_MAX
        unpaced = max(0, UNPACED_SEGMENTS - self.segments) * mss
        late = now - self.next_send
        if late < -TIMER_SLACK and not unpaced:
            return 0
        segs = min(int(rate * BURST_TIME), GSO_MAX) // mss
        burst = max(segs, 1 if rate < MIN_BURST_RATE else 2) * mss
        if late > 0 and held:
            burst += int(min(late, MAX_CREDIT) * rate) // mss * mss
        if not unpaced:
            self.cursor = self._start(now)
        return burst + unpaced

    def _start(self, now: float) -> float:
        """When this pass's burst is due on the schedule."""
        return max(self.next_send, now - MAX_CREDIT if self.held else now)

    def stamp(self, now: float, size: int) -> float:
        """The departure time to record for a segment of `size` bytes sent
        now (the rate sampler's send time): its place on the schedule when
        the burst is late, like the skb_mstamp_ns Linux's EDT model gives
        each skb (tcp_wstamp_ns, advanced by len / rate). Linux's hrtimers
        are seldom late; a late event-loop wake-up is host jitter, not the
        path, and the catch-up burst that repays it must not look like the
        sender going faster than its rate (draft-cheng-iccrg-delivery-
        rate-estimation 3.3: the send interval bounds the sample)."""
        due = self.cursor
        if due is None or self.rate <= 0:
            return now
        self.cursor = due + size / self.rate
        return due if due < now else now

    def end_burst(self) -> None:
        self.cursor = None

    def on_sent(self, n: int, segments: int, now: float) -> None:
        """A burst of `n` bytes left (tcp_update_skb_after_send): the next
        one is due n / rate later, on the schedule unless that fell more
        than MAX_CREDIT behind (an idle or cwnd-limited spell earns none)."""
        start = self._start(now)
        before = self.segments
        self.segments = before + segments
        rate = self.rate
        paced = self.segments - max(before, UNPACED_SEGMENTS)
        if rate <= 0 or paced <= 0:
            return
        if paced < segments:
            n = n * paced // segments  # the unpaced first ten cost no time
        self.next_send = start + n / rate
