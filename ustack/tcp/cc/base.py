"""The congestion control interface, in the spirit of Linux's tcp_congestion_ops.

A controller owns `cwnd` and `ssthresh` (bytes). The TCB tells it what
happened; the loss-recovery machinery (ustack/tcp/recovery.py) decides *when*
a congestion event starts and ends and shapes the reduction (PRR), while the
controller decides *how much*: the growth on ACKs and the new ssthresh.

| call | when | Linux counterpart |
|---|---|---|
| `on_ack(acked, now, ...)` | bytes newly delivered, outside a reduction | cong_avoid |
| `on_rtt(rtt, now)` | every RTT sample | pkts_acked |
| `ssthresh_after_loss(now)` | a fast retransmit or RTO starts a reduction | ssthresh |
| `on_rto(now)` | the retransmission timer fired | set_state(TCP_CA_Loss) |
| `on_recovery_done(now)` | the reduction ended | set_state(TCP_CA_Open) |
| `undo(now)` | the reduction was spurious | undo_cwnd |
| `on_idle(now, idle)` | sending resumes after an idle period | cwnd_event(TX_START) |
"""

from __future__ import annotations

# RFC 5681 3.1: ssthresh SHOULD be set arbitrarily high at the start.
INITIAL_SSTHRESH = 1 << 30


class CongestionControl:
    """Base class: state shared by every algorithm, and undo bookkeeping."""

    name = "base"
    __slots__ = ("mss", "cwnd", "ssthresh", "prior_cwnd", "prior_ssthresh")

    def __init__(self, mss: int, cwnd: int) -> None:
        self.mss = mss
        self.cwnd = cwnd
        self.ssthresh = INITIAL_SSTHRESH
        self.prior_cwnd = cwnd
        self.prior_ssthresh = INITIAL_SSTHRESH

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def on_ack(
        self, acked: int, now: float, cwnd_limited: bool, round_start: bool
    ) -> None:
        raise NotImplementedError

    def on_rtt(self, rtt: float, now: float) -> None:
        """An RTT sample (seconds); algorithms that use delay override it."""

    def ssthresh_after_loss(self, now: float) -> int:
        raise NotImplementedError

    def remember_for_undo(self) -> None:
        """Called before a reduction, so `undo` can restore what it cut."""
        self.prior_cwnd = self.cwnd
        self.prior_ssthresh = self.ssthresh

    def on_rto(self, now: float) -> None:
        """RFC 5681 (4), RFC 6298 5.5: the loss window is one segment."""
        self.cwnd = self.mss

    def on_recovery_done(self, now: float) -> None:
        """RFC 6937: a reduction ends with cwnd = ssthresh."""
        self.cwnd = max(self.ssthresh, self.mss)

    def undo(self, now: float) -> None:
        """RFC 3708 / 2883, Linux tcp_undo_cwnd_reduction: restore the window."""
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        self.ssthresh = max(self.ssthresh, self.prior_ssthresh)

    def on_idle(self, now: float, idle: float) -> None:
        """Sending resumes after `idle` seconds with nothing in flight."""

    def set_mss(self, mss: int) -> None:
        self.mss = mss

    def describe(self) -> dict[str, object]:
        """Algorithm-specific state for `ustack ss` (like ss -i)."""
        return {}
