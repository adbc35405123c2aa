"""Retransmission timeout estimator (RFC 6298)."""

from __future__ import annotations

from dataclasses import dataclass

# RFC 6298 2.3: alpha = 1/8, beta = 1/4, K = 4.
_ALPHA = 0.125
_BETA = 0.25
_K = 4
# Clock granularity G (RFC 6298 2.3); our clock is a float, so 1 ms.
_G = 0.001


@dataclass(slots=True)
class RtoEstimator:
    rto_min: float
    rto_max: float
    rto: float = 1.0  # RFC 6298 2.1: initial RTO of 1 s
    srtt: float | None = None
    rttvar: float = 0.0

    def sample(self, rtt: float) -> None:
        """Feed one RTT measurement of a segment that was not retransmitted."""
        if self.srtt is None:  # RFC 6298 2.2
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # RFC 6298 2.3
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self.rto = self._clamp(self.srtt + max(_G, _K * self.rttvar))

    def backoff(self) -> None:
        """RFC 6298 5.5: double the RTO on each expiry."""
        self.rto = self._clamp(self.rto * 2)

    def reset_backoff(self) -> None:
        """Undo `backoff`: the RTO from the current estimate (if any) again."""
        if self.srtt is not None:
            self.rto = self._clamp(self.srtt + max(_G, _K * self.rttvar))

    def _clamp(self, value: float) -> float:
        return min(max(value, self.rto_min), self.rto_max)
