"""CUBIC (RFC 9438), Linux's default, with HyStart++ (RFC 9406) slow start.

Window in segments, as the RFC writes it; `cwnd` in bytes at the interface.
  W_cubic(t) = C * (t - K)^3 + W_max               (RFC 9438 4.2, eq. 1)
  K = cbrt((W_max - cwnd_epoch) / C)               (eq. 2)
  W_est += alpha_cubic * segments_acked / cwnd      (4.3, the Reno-friendly
  alpha_cubic = 3 * (1 - beta) / (1 + beta)          region, eq. 4)
Fast convergence (4.7) lowers W_max when a loss comes before the last W_max
was reached; a timeout (4.8) restarts the epoch; idle time shifts the epoch
(5.8, Linux's CA_EVENT_TX_START), so an application-limited flow does not
jump after a pause.
"""

from __future__ import annotations

from ustack.tcp.cc.base import CongestionControl
from ustack.tcp.cc.hystart import HyStartPP

C = 0.4  # RFC 9438 5.1
BETA = 0.7  # RFC 9438 4.6
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 4.3


class Cubic(CongestionControl):
    name = "cubic"
    __slots__ = (
        "w_max",
        "w_last_max",
        "k",
        "epoch_start",
        "cwnd_epoch",
        "w_est",
        "prior_w_max",
        "hystart",
        "srtt",
    )

    def __init__(self, mss: int, cwnd: int) -> None:
        super().__init__(mss, cwnd)
        self.w_max = 0.0  # segments
        self.w_last_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None  # start of this CA epoch
        self.cwnd_epoch = 0.0
        self.w_est = 0.0
        self.prior_w_max = 0.0
        self.hystart = HyStartPP()
        self.srtt = 0.0  # smoothed here, for W_cubic(t + RTT)

    # ----- growth

    def on_ack(
        self, acked: int, now: float, cwnd_limited: bool, round_start: bool
    ) -> None:
        hy = self.hystart
        if round_start and self.in_slow_start and hy.on_round_start():
            self.ssthresh = self.cwnd  # CSS is over: congestion avoidance
        if not cwnd_limited:
            return  # RFC 7661 / RFC 9438 5.8: no growth while app-limited
        if self.in_slow_start:
            grow = min(acked // hy.growth_divisor(), self.ssthresh - self.cwnd)
            self.cwnd += grow
            acked -= grow * hy.growth_divisor()
            if acked <= 0 or self.in_slow_start:
                return
        self._avoid(acked, now)

    def _avoid(self, acked: int, now: float) -> None:
        mss = self.mss
        cwnd = self.cwnd / mss  # segments
        if self.epoch_start is None:
            self._start_epoch(now, cwnd)
        t = now - self.epoch_start  # type: ignore[operator]
        # Reno-friendly estimate (RFC 9438 4.3): alpha until W_max, then 1.
        alpha = ALPHA if self.w_est < self.w_max else 1.0
        self.w_est += alpha * (acked / mss) / cwnd
        w_cubic = self.w_cubic(t)
        if w_cubic < self.w_est:
            target = self.w_est  # Reno-friendly region
            grow = target - cwnd
        else:
            # Concave / convex regions (4.4, 4.5): aim at W_cubic(t + RTT),
            # at most 1.5 cwnd, increasing by (target - cwnd) / cwnd per MSS.
            target = min(max(self.w_cubic(t + self.srtt), cwnd), 1.5 * cwnd)
            grow = (target - cwnd) / cwnd * (acked / mss)
        if grow > 0:
            self.cwnd = int((cwnd + grow) * mss)

    def _start_epoch(self, now: float, cwnd: float) -> None:
        self.epoch_start = now
        self.cwnd_epoch = cwnd
        self.w_est = cwnd
        if self.w_max <= cwnd:
            self.k = 0.0
            self.w_max = cwnd
        else:
            self.k = ((self.w_max - cwnd) / C) ** (1 / 3)

    def w_cubic(self, t: float) -> float:
        """W_cubic(t) in segments (RFC 9438 eq. 1)."""
        return C * (t - self.k) ** 3 + self.w_max

    def on_rtt(self, rtt: float, now: float) -> None:
        self.srtt = rtt if not self.srtt else 0.875 * self.srtt + 0.125 * rtt
        if self.in_slow_start:
            self.hystart.on_rtt(rtt)

    # ----- reductions

    def remember_for_undo(self) -> None:
        super().remember_for_undo()
        self.prior_w_max = self.w_last_max

    def ssthresh_after_loss(self, now: float) -> int:
        cwnd = self.cwnd / self.mss
        # Fast convergence (4.7): a loss before reaching the last W_max means
        # another flow needs room: release some by remembering less.
        if cwnd < self.w_last_max:
            self.w_max = cwnd * (1 + BETA) / 2
        else:
            self.w_max = cwnd
        self.w_last_max = cwnd
        self.epoch_start = None
        self.hystart.on_loss()
        return max(int(self.cwnd * BETA), 2 * self.mss)

    def on_rto(self, now: float) -> None:
        super().on_rto(now)
        self.epoch_start = None  # RFC 9438 4.8

    def undo(self, now: float) -> None:
        super().undo(now)
        self.w_last_max = self.prior_w_max
        self.epoch_start = None

    def on_idle(self, now: float, idle: float) -> None:
        if self.epoch_start is not None:
            self.epoch_start += idle  # RFC 9438 5.8

    def describe(self) -> dict[str, object]:
        return {
            "w_max": round(self.w_max, 1),
            "k": round(self.k, 3),
            "hystart": "done"
            if self.hystart.done
            else ("css" if self.hystart.in_css else "ss"),
        }
