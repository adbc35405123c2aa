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
| `pacing_rate_for(srtt, now)` | every ACK, when pacing | tcp_update_pacing_rate |
| `on_sample(rs, now, flight, ca_state)` | every ACK, model-based | cong_control |

A *model-based* controller (`model_based = True`, BBR) owns cwnd on every
ACK, in recovery too, as Linux's cong_control replaces PRR and cong_avoid:
loss recovery then feeds it a delivery-rate sample (rate.py, its
`sampler`) instead of calling `on_ack` or applying PRR, and
`ssthresh_after_loss` / `on_recovery_done` need not cut or set the window.
`reacts_to_ecn` says whether an ECN-Echo should cause the once-per-window
reduction (RFC 3168 6.1.2); BBR v1 ignores ECE, as Linux's tcp_bbr.c does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ustack.tcp.rate import RateSample, RateSampler

# RFC 5681 3.1: ssthresh SHOULD be set arbitrarily high at the start.
INITIAL_SSTHRESH = 1 << 30
# Linux net.ipv4.tcp_pacing_ss_ratio / tcp_pacing_ca_ratio (percent / 100).
PACING_SS_RATIO = 2.0
PACING_CA_RATIO = 1.2


class CongestionControl:
    """Base class: state shared by every algorithm, and undo bookkeeping."""

    name = "base"
    model_based = False
    reacts_to_ecn = True
    sampler: RateSampler | None = None  # model-based controllers have one
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

    def on_sample(
        self, rs: RateSample, now: float, in_flight: int, ca_state: int
    ) -> None:
        """Model-based controllers: one ACK's rate sample (Linux cong_control)."""

    def pacing_rate_for(self, srtt: float | None, now: float) -> float:
        """Bytes/s to pace at (Linux tcp_update_pacing_rate): twice cwnd per
        RTT in slow start (below half ssthresh), 1.2 times after; 0 = no
        pacing while no RTT is known."""
        if not srtt:
            return 0.0
        ratio = PACING_SS_RATIO if self.cwnd < self.ssthresh // 2 else PACING_CA_RATIO
        return ratio * self.cwnd / srtt

    def set_mss(self, mss: int) -> None:
        self.mss = mss

    def describe(self) -> dict[str, object]:
        """Algorithm-specific state for `ustack ss` (like ss -i)."""
        return {}
