"""Reno / NewReno window growth (RFC 5681) with byte counting (RFC 3465).

Slow start adds every acknowledged byte (capped at ssthresh), so a stretch
ACK for a 64 KB offloaded segment grows cwnd as much as 45 separate ACKs
would: Linux's tcp_slow_start counts acknowledged segments the same way.
Congestion avoidance adds one MSS per cwnd of acknowledged bytes (RFC 5681
3.1's byte-counting form, RFC 3465 2.1), so neither delayed ACKs (half the
ACKs) nor ACK division (many tiny ACKs) change the growth rate.

NewReno's part, partial ACKs in fast recovery (RFC 6582), lives in the loss
recovery, not here: "newreno" names the same window growth.
"""

from __future__ import annotations

from ustack.tcp.cc.base import CongestionControl

# RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS).
RENO_BETA = 0.5


class Reno(CongestionControl):
    name = "reno"
    __slots__ = ("bytes_acked",)

    def __init__(self, mss: int, cwnd: int) -> None:
        super().__init__(mss, cwnd)
        self.bytes_acked = 0

    def on_ack(
        self, acked: int, now: float, cwnd_limited: bool, round_start: bool
    ) -> None:
        if not cwnd_limited:
            return  # RFC 7661: do not grow a window the sender is not using
        acked = self.slow_start(acked)
        if acked:
            self.congestion_avoidance(acked, self.mss)

    def slow_start(self, acked: int) -> int:
        """Grow by `acked` up to ssthresh; return what is left for CA."""
        if self.cwnd >= self.ssthresh:
            return acked
        grow = min(acked, self.ssthresh - self.cwnd)
        self.cwnd += grow
        return acked - grow

    def congestion_avoidance(self, acked: int, step: int) -> None:
        """Add `step` bytes per cwnd of acknowledged bytes (RFC 3465 2.1)."""
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            rounds, self.bytes_acked = divmod(self.bytes_acked, self.cwnd)
            self.cwnd += rounds * step

    def ssthresh_after_loss(self, now: float) -> int:
        self.bytes_acked = 0
        return max(int(self.cwnd * RENO_BETA), 2 * self.mss)
