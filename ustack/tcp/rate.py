"""Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation;
Linux tcp_rate.c), in bytes and seconds.

The connection counts `delivered` bytes (cumulatively ACKed or SACKed) and
remembers when the count last moved (`delivered_time`). Each transmission
takes a snapshot of those, of `first_sent_time` (the send time of the most
recently delivered segment when this one left) and of whether the sender
was application-limited. When an ACK delivers segments, the snapshot of the
most recently *sent* of them gives the sample:

    delivered = C.delivered - P.delivered
    interval  = max(P.sent - P.first_sent, now - P.delivered_time)

The send interval alone overestimates when ACKs are compressed, the ACK
interval alone when the sender's sends were bunched: the larger of the two
is the conservative choice (draft 3.3). A sample shorter than min_rtt is
dropped (it can only come from ACK compression or a stretch ACK covering
data sent long ago). App-limited samples are kept but flagged: a flow that
had nothing to send measured the application, not the path, so such a
sample may only raise a bandwidth estimate (draft 3.4).

A sample is flagged `is_ack_delayed` when its ACK was probably held by the
receiver's delayed-ACK timer (Linux FLAG_ACK_MAYBE_DELAYED, set in
tcp_clean_rtx_queue and copied by tcp_rate_gen): the ACK cumulatively
delivered exactly one segment, a runt (under one MSS) sent when nothing
else was in flight, nothing else was delivered since it left, and the ACK
carried no SACK, D-SACK or ECE. Its RTT includes the receiver's wait, so a
min-RTT filter should not take it as the path's (BBR bbr_update_min_rtt).
"""

from __future__ import annotations

from ustack.tcp.pacing import Pacer
from ustack.tcp.rtxq import Sent


class RateSample:
    """One ACK's sample (Linux struct rate_sample); reused per connection."""

    __slots__ = (
        "delivered",
        "interval",
        "prior_delivered",
        "prior_time",
        "send_elapsed",
        "is_app_limited",
        "is_retrans",
        "is_ack_delayed",
        "acked_sacked",
        "losses",
        "rtt",
        "prior_in_flight",
        "last_xmit",
        "last_end",
        "newest_xmit",
        "records",
        "lone_bytes",
    )

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.delivered = -1  # bytes delivered over the interval; -1 = invalid
        self.interval = -1.0  # seconds; <= 0 = invalid
        self.prior_delivered = 0
        self.prior_time: float | None = None  # P.delivered_time
        self.send_elapsed = 0.0
        self.is_app_limited = False
        self.is_retrans = False
        self.is_ack_delayed = False  # the ACK was probably a delayed one
        self.acked_sacked = 0  # bytes this ACK delivered
        self.losses = 0  # bytes this ACK marked lost
        self.rtt = -1.0  # RTT of the newest original segment delivered
        self.prior_in_flight = 0
        self.last_xmit = -1.0
        self.last_end = -1
        self.newest_xmit = -1.0
        self.records = 0  # records this ACK delivered by cumulative ACK
        self.lone_bytes = 0  # the one such record's size if it left alone

    @property
    def rate(self) -> float:
        """Bytes per second, 0 when the sample is invalid."""
        if self.delivered < 0 or self.interval <= 0:
            return 0.0
        return self.delivered / self.interval


class RateSampler:
    """The connection's side of the estimator (Linux tp->delivered etc.)."""

    __slots__ = (
        "delivered",
        "delivered_time",
        "first_sent_time",
        "app_limited",
        "lost_total",
        "rs",
        "rate_delivered",
        "rate_interval",
        "rate_app_limited",
        "pacer",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        # 0, or the `delivered` count at which the app-limited phase ends
        # (the last byte sent while app-limited has been delivered).
        self.app_limited = 0
        self.lost_total = 0  # bytes ever marked lost (Linux tp->lost)
        self.rs = RateSample()
        # The latest sample worth showing (Linux tp->rate_delivered /
        # rate_interval_us / rate_app_limited: `ss` delivery_rate).
        self.rate_delivered = 0
        self.rate_interval = 0.0
        self.rate_app_limited = False
        # The connection's pacer during an output pass: send times come from
        # its schedule (Pacer.stamp), not the late wake-up's clock.
        self.pacer: Pacer | None = None

    def next_departure(self, now: float) -> float:
        """The earliest departure time of the next paced burst (Linux
        tcp_wstamp_ns, at least now): now when not paced."""
        pacer = self.pacer
        if pacer is None or pacer.rate <= 0:
            return now
        return max(pacer.next_send, now)

    @property
    def delivery_rate(self) -> float:
        if self.rate_interval <= 0:
            return 0.0
        return self.rate_delivered / self.rate_interval

    # ------------------------------------------------------------ sending

    def on_send(self, rec: Sent, now: float, idle: bool) -> None:
        """Snapshot at (re)transmission (tcp_rate_skb_sent). `idle`: nothing
        was in flight, so the send and ACK clocks restart from now. The send
        time kept is the pacing schedule's (EDT, Pacer.stamp) when paced.
        The snapshot also keeps whether the segment left alone (`idle`;
        for the delayed-ACK check, Linux's tx.in_flight)."""
        pacer = self.pacer
        stamp = now if pacer is None else pacer.stamp(now, rec.end - rec.start)
        if idle:
            self.first_sent_time = stamp
            self.delivered_time = now
        rec.snap = (
            self.delivered,
            self.delivered_time,
            self.first_sent_time,
            self.app_limited != 0,
            stamp,
            idle,
        )

    def mark_app_limited(self, in_flight: int) -> None:
        """The sender ran out of data below cwnd with no repair pending
        (tcp_rate_check_app_limited): samples until what is in flight now
        is delivered measure the application."""
        self.app_limited = (self.delivered + in_flight) or 1

    # ------------------------------------------------------------ ACKs

    def begin(self, prior_in_flight: int) -> RateSample:
        rs = self.rs
        rs.clear()
        rs.prior_in_flight = prior_in_flight
        return rs

    def on_delivered(self, rec: Sent) -> None:
        """A record was ACKed or SACKed by this ACK (tcp_rate_skb_delivered):
        keep the snapshot of the most recently sent one."""
        snap = rec.snap
        if snap is None:
            return
        rs = self.rs
        xmit = rec.xmit
        if not rec.sacked:
            # Cumulatively ACKed (a SACKed record is marked before it gets
            # here); a lone runt sent into an empty pipe may be one whose
            # ACK the receiver delayed.
            rs.records += 1
            rs.lone_bytes = rec.end - rec.start if snap[5] else 0
        if not rec.ever_retrans and xmit > rs.newest_xmit:
            rs.newest_xmit = xmit
        if rs.prior_time is None or xmit > rs.last_xmit or (
            xmit == rs.last_xmit and rec.end > rs.last_end
        ):
            stamp = snap[4]
            rs.prior_delivered = snap[0]
            rs.prior_time = snap[1]
            rs.send_elapsed = stamp - snap[2]
            rs.is_app_limited = snap[3]
            rs.is_retrans = rec.ever_retrans
            rs.last_xmit = xmit
            rs.last_end = rec.end
            self.first_sent_time = stamp
        # A SACKed record stays queued; it must not count again when the
        # cumulative ACK passes it (Linux zeroes delivered_mstamp).
        rec.snap = None

    def finish(
        self,
        delivered: int,
        lost: int,
        now: float,
        min_rtt: float,
        *,
        mss: int = 0,
        alert: bool = False,
    ) -> RateSample:
        """Close the ACK's sample (tcp_rate_gen): `delivered` bytes newly
        ACKed/SACKed, `lost` bytes newly marked lost; `alert`: the ACK
        carried new SACK, D-SACK or ECE information (Linux FLAG_CA_ALERT),
        which rules out a delayed ACK; `mss` sizes a runt."""
        rs = self.rs
        if self.app_limited and self.delivered + delivered > self.app_limited:
            self.app_limited = 0
        if delivered:
            self.delivered += delivered
            self.delivered_time = now
        self.lost_total += lost
        rs.acked_sacked = delivered
        rs.losses = lost
        if rs.newest_xmit >= 0:
            rs.rtt = now - rs.newest_xmit
        if rs.prior_time is None:
            return rs  # nothing with a snapshot was delivered: invalid
        rs.delivered = self.delivered - rs.prior_delivered
        # tcp_clean_rtx_queue's FLAG_ACK_MAYBE_DELAYED: one segment, a lone
        # runt, fully ACKed, nothing else delivered since it left
        # (prior_delivered + 1 == delivered), no SACK/D-SACK/ECE.
        rs.is_ack_delayed = (
            rs.records == 1
            and 0 < rs.lone_bytes < mss
            and rs.delivered == delivered
            and not rs.is_retrans
            and not alert
        )
        ack_elapsed = now - rs.prior_time
        interval = max(rs.send_elapsed, ack_elapsed)
        if interval < min_rtt:
            # Draft 3.3: shorter than an RTT is not a believable interval.
            rs.interval = -1.0
            return rs
        rs.interval = interval
        # ss's delivery_rate: the latest sample unless app-limited and lower.
        if not rs.is_app_limited or (
            rs.delivered * self.rate_interval >= self.rate_delivered * interval
        ):
            self.rate_delivered = rs.delivered
            self.rate_interval = interval
            self.rate_app_limited = rs.is_app_limited
        return rs
