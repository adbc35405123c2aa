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

    def sample(self, rtt: float, per_rtt: int = 1) -> None:
        """Feed one RTT measurement (Karn's rule applied by the caller).

        `per_rtt` is how many samples to expect per round trip: RFC 7323
        Appendix G divides alpha and beta by it, so that many samples per
        RTT weigh as much as one per RTT did and RTTVAR does not collapse."""
        srtt = self.srtt
        if srtt is None:  # RFC 6298 2.2
            srtt = rtt
            rttvar = rtt / 2
        else:  # RFC 6298 2.3
            alpha, beta = _ALPHA / per_rtt, _BETA / per_rtt
            err = srtt - rtt
            rttvar = (1 - beta) * self.rttvar + beta * (err if err >= 0 else -err)
            srtt = (1 - alpha) * srtt + alpha * rtt
        self.srtt = srtt
        self.rttvar = rttvar
        # RFC 6298 2.3 and 2.4-2.5 (_clamp, inlined: once per ACK).
        var = _K * rttvar
        rto = srtt + (var if var > _G else _G)
        if rto < self.rto_min:
            rto = self.rto_min
        self.rto = rto if rto < self.rto_max else self.rto_max

    def backoff(self) -> None:
        """RFC 6298 5.5: double the RTO on each expiry."""
        self.rto = self._clamp(self.rto * 2)

    def reset_backoff(self) -> None:
        """Undo `backoff`: the RTO from the current estimate (if any) again."""
        if self.srtt is not None:
            self.rto = self._clamp(self.srtt + max(_G, _K * self.rttvar))

    def _clamp(self, value: float) -> float:
        return min(max(value, self.rto_min), self.rto_max)
