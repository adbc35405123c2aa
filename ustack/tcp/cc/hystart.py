"""HyStart++ (RFC 9406): leave slow start when the RTT starts to climb.

Per round (one window of data), the first N_RTT_SAMPLE RTT samples give the
round's minimum RTT. When it exceeds the previous round's minimum by more
than RttThresh, a queue is building: slow start turns into Conservative Slow
Start (CSS, growth divided by CSS_GROWTH_DIVISOR). If the RTT falls back,
slow start resumes (the increase was spurious); after CSS_ROUNDS rounds in
CSS, congestion avoidance begins (ssthresh = cwnd).
"""

from __future__ import annotations

import math

# RFC 9406 4.3 constants.
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5


class HyStartPP:
    __slots__ = (
        "last_round_min_rtt",
        "current_round_min_rtt",
        "rtt_sample_count",
        "css_baseline_min_rtt",
        "css_rounds",
        "done",
    )

    def __init__(self) -> None:
        self.last_round_min_rtt = math.inf
        self.current_round_min_rtt = math.inf
        self.rtt_sample_count = 0
        self.css_baseline_min_rtt = math.inf  # finite while in CSS
        self.css_rounds = 0
        self.done = False  # slow start has ended for good

    @property
    def in_css(self) -> bool:
        return self.css_baseline_min_rtt != math.inf

    def on_round_start(self) -> bool:
        """A new round begins; True when CSS ran its rounds (enter CA)."""
        self.last_round_min_rtt = self.current_round_min_rtt
        self.current_round_min_rtt = math.inf
        self.rtt_sample_count = 0
        if self.in_css:
            self.css_rounds += 1
            if self.css_rounds >= CSS_ROUNDS:
                self.done = True
                return True
        return False

    def on_rtt(self, rtt: float) -> None:
        """RFC 9406 4.2: sample the round, then check for a delay increase."""
        if self.done:
            return
        if rtt < self.current_round_min_rtt:
            self.current_round_min_rtt = rtt
        self.rtt_sample_count += 1
        if self.rtt_sample_count < N_RTT_SAMPLE:
            return
        if self.in_css:
            if self.current_round_min_rtt < self.css_baseline_min_rtt:
                # The delay increase was spurious: back to slow start.
                self.css_baseline_min_rtt = math.inf
                self.css_rounds = 0
        elif (
            self.current_round_min_rtt != math.inf
            and self.last_round_min_rtt != math.inf
        ):
            thresh = min(
                max(self.last_round_min_rtt / MIN_RTT_DIVISOR, MIN_RTT_THRESH),
                MAX_RTT_THRESH,
            )
            if self.current_round_min_rtt >= self.last_round_min_rtt + thresh:
                self.css_baseline_min_rtt = self.current_round_min_rtt
                self.css_rounds = 0

    def growth_divisor(self) -> int:
        return CSS_GROWTH_DIVISOR if self.in_css else 1

    def on_loss(self) -> None:
        """RFC 9406 4.2: a loss ends slow start and CSS alike."""
        self.done = True
        self.css_baseline_min_rtt = math.inf
