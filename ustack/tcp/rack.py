"""RACK: time-based loss detection (RFC 8985 6).

A segment is lost when a segment *sent after it* was delivered more than a
reordering window ago:  xmit_ts + RACK.rtt + reo_wnd <= now. Because the test
uses send times, it detects lost retransmissions as readily as lost
originals, and one SACK is enough once the reordering window has passed (the
reorder timer fires at that moment if no ACK arrives).

The reordering window (6.2 step 4) starts at min_RTT / 4; it is 0 while no
reordering has been seen and the sender is in recovery or DupThresh segments
are SACKed; each round with a D-SACK widens it by min_RTT / 4 (reo_wnd_mult),
and it decays after 16 recoveries without one. Which D-SACKs count is the
caller's choice (recovery.py: only those of our own retransmissions once
reordering was seen, as Linux tcp_dsack_seen).
"""

from __future__ import annotations

import math

from ustack.tcp.rtxq import RetransmitQueue, Sent

DUPTHRESH = 3  # RFC 8985 6.2 (the classic dupthresh of RFC 5681)
REO_WND_PERSIST = 16  # RFC 8985 6.2 step 4
MIN_RTT_WINDOW = 300.0  # Linux tcp_min_rtt_wlen: the min RTT filter's window
_NEVER = -math.inf  # shared: costs no float per connection


class Rack:
    __slots__ = (
        "xmit_ts",
        "end",
        "rtt",
        "min_rtt",
        "min_rtt_stamp",
        "reordering_seen",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "dsack_round",
        "dsack_seen",
    )

    def __init__(self) -> None:
        self.xmit_ts = _NEVER  # send time of the latest-sent delivered segment
        self.end = 0  # its end offset (ties on xmit_ts)
        self.rtt = 0.0  # the RTT of that delivery
        self.min_rtt = math.inf
        self.min_rtt_stamp = 0.0
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None
        self.dsack_seen = False

    def update(self, rec: Sent, now: float, fack: int) -> None:
        """RFC 8985 6.2 steps 1-3 for one newly delivered segment; `fack` is
        the highest offset delivered before this ACK."""
        rtt = now - rec.xmit
        if rec.ever_retrans:
            # Was it the original or the retransmission that arrived? If the
            # RTT is below the minimum, it must be the original (step 2).
            if rtt < self.min_rtt:
                return
        elif rec.end < fack:
            self.reordering_seen = True  # delivered below what was delivered
        if rtt < self.min_rtt or now - self.min_rtt_stamp > MIN_RTT_WINDOW:
            self.min_rtt = rtt
            self.min_rtt_stamp = now
        if rec.xmit > self.xmit_ts or (rec.xmit == self.xmit_ts and rec.end > self.end):
            self.xmit_ts = rec.xmit
            self.end = rec.end
            self.rtt = rtt

    def on_dsack(self, snd_nxt: int) -> None:
        """A D-SACK arrived: widen the reordering window, once per round."""
        self.dsack_seen = True
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_dsack_undo(self) -> None:
        """D-SACKs undid a recovery (Linux tcp_try_undo_dsack): the wider
        window proved right, keep it one recovery longer."""
        self.reo_wnd_persist = min(REO_WND_PERSIST, self.reo_wnd_persist + 1)

    def on_ack(self, una: int) -> None:
        if self.dsack_round is not None and una >= self.dsack_round:
            self.dsack_round = None

    def on_recovery_done(self) -> None:
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def reo_wnd(self, in_recovery: bool, sacked_segs: int, srtt: float) -> float:
        if not self.reordering_seen and (in_recovery or sacked_segs >= DUPTHRESH):
            return 0.0
        if self.min_rtt == math.inf:
            return 0.0
        return min(self.reo_wnd_mult * self.min_rtt / 4, srtt)

    def detect_loss(
        self, queue: RetransmitQueue, now: float, reo_wnd: float, lost: list[Sent]
    ) -> float:
        """RFC 8985 6.2 step 5: mark what is lost; return the time until the
        earliest undecided segment could be (0.0: nothing to wait for)."""
        xmit_ts, end = self.xmit_ts, self.end
        if xmit_ts == -math.inf:
            return 0.0
        rtt_reo = self.rtt + reo_wnd
        wait = 0.0
        for rec in queue.recs:
            if rec.sacked or (rec.lost and not rec.retrans):
                continue
            sent = rec.xmit
            if sent > xmit_ts or (sent == xmit_ts and rec.end >= end):
                # Sent after the latest delivery. Originals go out in order,
                # and a retransmission goes out after every original below
                # it: past the first such original nothing can be lost.
                if not rec.ever_retrans:
                    break
                continue
            remaining = sent + rtt_reo - now
            if remaining <= 0:
                if queue.mark_lost(rec):
                    lost.append(rec)
            elif remaining > wait:
                wait = remaining
        return wait
