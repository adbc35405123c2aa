"""The retransmission queue: one record per segment sent and not yet
cumulatively acknowledged, with the SACK scoreboard marks on it.

Positions are *stream offsets* (bytes since ISS + 1, never wrapping), so the
queue needs no modular arithmetic; the TCB converts sequence numbers at the
edge. This is Linux's write queue of skbs with their `sacked` bits
(TCPCB_SACKED_ACKED, TCPCB_LOST, TCPCB_SACKED_RETRANS, TCPCB_EVER_RETRANS)
and the counters kept beside it, so that RFC 6675's pipe is

    pipe = outstanding - sacked - lost + retrans_out    (Linux tcp_packets_in_flight)

A record is split when a SACK block or a smaller retransmission edge falls
inside it (an offloaded record can hold 64 KB).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Sequence

# Retransmitted ranges remembered after their cumulative ACK, so that a
# D-SACK arriving a little later can still be told apart from a duplicate
# the network made (a D-SACK follows its data by about one RTT).
ACKED_RETRANS_KEPT = 32


class Sent:
    """One transmitted segment: [start, end) in stream offsets."""

    __slots__ = (
        "start",
        "end",
        "xmit",
        "sacked",
        "lost",
        "retrans",
        "ever_retrans",
        "fin",
        "snap",
    )

    def __init__(self, start: int, end: int, xmit: float, fin: bool = False) -> None:
        self.start = start
        self.end = end
        self.xmit = xmit  # time of the latest (re)transmission
        self.sacked = False  # the receiver holds it (SACK)
        self.lost = False  # presumed lost (RACK, dupthresh, RTO)
        self.retrans = False  # a retransmission of it is in flight
        self.ever_retrans = False  # Karn: no RTT sample, RACK care
        self.fin = fin  # its last sequence number is our FIN
        # Delivery-rate snapshot at the latest transmission (rate.py):
        # (delivered, delivered_time, first_sent_time, app_limited, send
        # time on the pacing schedule, sent with nothing else in flight).
        self.snap: tuple[int, float, float, bool, float, bool] | None = None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        marks = "".join(
            c
            for c, on in (
                ("S", self.sacked),
                ("L", self.lost),
                ("R", self.retrans),
                ("E", self.ever_retrans),
                ("F", self.fin),
            )
            if on
        )
        return f"Sent({self.start}..{self.end} @{self.xmit:.3f} {marks})"

    def split(self, at: int) -> Sent:
        """Cut at offset `at`; self keeps the left part, returns the right."""
        right = Sent(at, self.end, self.xmit, self.fin)
        right.sacked, right.lost = self.sacked, self.lost
        right.retrans, right.ever_retrans = self.retrans, self.ever_retrans
        right.snap = self.snap
        self.end = at
        self.fin = False
        return right


def _end(rec: Sent) -> int:
    return rec.end


class RetransmitQueue:
    __slots__ = (
        "recs",
        "una",
        "nxt",
        "sacked",
        "lost",
        "retrans_out",
        "pending",
        "fack",
        "lost_total",
        "acked_retrans",
        "sack_cache",
    )

    def __init__(self, una: int = 0) -> None:
        self.recs: list[Sent] = []
        self.una = una  # offset of SND.UNA
        self.nxt = una  # offset of SND.MAX: one past the last byte sent
        self.sacked = 0  # bytes SACKed above SND.UNA
        self.lost = 0  # bytes marked lost (retransmitted or not)
        self.retrans_out = 0  # bytes of retransmissions in flight
        self.pending = 0  # bytes marked lost and not yet retransmitted
        self.fack = una  # highest offset acknowledged or SACKed
        self.lost_total = 0  # bytes ever marked lost (Linux tp->lost)
        # [start, end) of retransmitted data already cumulatively ACKed (the
        # newest ACKED_RETRANS_KEPT), made by the first such ACK.
        self.acked_retrans: deque[tuple[int, int]] | None = None
        # The previous ACK's SACK blocks: all they cover is marked already
        # (a shared empty tuple until the first SACK).
        self.sack_cache: Sequence[tuple[int, int]] = ()

    def __bool__(self) -> bool:
        return bool(self.recs)

    def __len__(self) -> int:
        return len(self.recs)

    def in_flight(self) -> int:
        """RFC 6675 pipe (Linux tcp_packets_in_flight, in bytes)."""
        return self.nxt - self.una - self.sacked - self.lost + self.retrans_out

    def append(self, start: int, end: int, now: float, fin: bool = False) -> Sent:
        rec = Sent(start, end, now, fin)
        self.recs.append(rec)
        if end > self.nxt:
            self.nxt = end
        return rec

    # ------------------------------------------------------------ ACK, SACK

    def ack(self, ack: int, delivered: list[Sent]) -> int:
        """Cumulative ACK up to `ack`; returns the bytes newly delivered and
        appends the records it delivered (not those SACKed before)."""
        recs = self.recs
        newly = 0
        n = 0
        for rec in recs:
            if rec.start >= ack:
                break
            end = rec.end
            cut = (end if end < ack else ack) - rec.start  # min(), unrolled
            if rec.ever_retrans:
                self._remember_retrans(rec.start, rec.start + cut)
            if rec.sacked:
                self.sacked -= cut
            else:
                newly += cut
                delivered.append(rec)
                if rec.lost or rec.retrans:  # else nothing to unmark
                    self._unmark(rec, cut)
            if end <= ack:
                n += 1
            else:
                rec.start = ack  # part of an offloaded record
                break
        if n:
            del recs[:n]
        self.una = ack
        if ack > self.fack:
            self.fack = ack
        return newly

    def _remember_retrans(self, start: int, end: int) -> None:
        kept = self.acked_retrans
        if kept is None:
            kept = self.acked_retrans = deque(maxlen=ACKED_RETRANS_KEPT)
        kept.append((start, end))

    def retransmitted(self, left: int, right: int) -> bool:
        """Whether any of [left, right) was ever retransmitted: queued
        records carry the mark, ACKed ones the recent list. A D-SACK of data
        we never resent reports a duplicate the network made, not a
        spurious retransmission of ours (Linux tcp_dsack_seen)."""
        if right > self.una:
            recs = self.recs
            i = bisect_right(recs, max(left, self.una), key=_end)
            while i < len(recs) and recs[i].start < right:
                if recs[i].ever_retrans:
                    return True
                i += 1
        if left < self.una and self.acked_retrans:
            for start, end in self.acked_retrans:
                if start < right and left < end:
                    return True
        return False

    def sack_blocks(self, blocks: list[tuple[int, int]], delivered: list[Sent]) -> int:
        """Mark one ACK's SACK blocks; returns the bytes newly SACKed.

        A receiver repeats its blocks on every ACK, each a little longer, so
        (as Linux's recv_sack_cache in tcp_sacktag_write_queue) only the
        parts the previous ACK's blocks did not cover are walked: SACK
        processing costs what is new, not the length of the SACKed runs."""
        cache = self.sack_cache
        newly = 0
        for left, right in blocks:
            pieces = [(left, right)]
            for c_left, c_right in cache:
                rest = []
                for a, b in pieces:
                    if c_right <= a or b <= c_left:
                        rest.append((a, b))
                        continue
                    if a < c_left:
                        rest.append((a, c_left))
                    if c_right < b:
                        rest.append((c_right, b))
                pieces = rest
            for a, b in pieces:
                newly += self.sack(a, b, delivered)
        self.sack_cache = blocks
        return newly

    def sack(self, left: int, right: int, delivered: list[Sent]) -> int:
        """Mark [left, right) SACKed; returns the bytes newly SACKed."""
        left = max(left, self.una)
        right = min(right, self.nxt)
        if left >= right:
            return 0
        recs = self.recs
        i = bisect_right(recs, left, key=_end)
        newly = 0
        while i < len(recs):
            rec = recs[i]
            if rec.start >= right:
                break
            if rec.sacked:
                i += 1
                continue
            if rec.start < left:
                recs.insert(i + 1, rec.split(left))
                i += 1
                continue
            if rec.end > right:
                recs.insert(i + 1, rec.split(right))
            size = rec.end - rec.start
            self._unmark(rec, size)
            rec.lost = rec.retrans = False
            rec.sacked = True
            self.sacked += size
            newly += size
            delivered.append(rec)
            if not (i and self._merge_sacked(i - 1)):
                i += 1
        if 0 < i < len(recs):
            self._merge_sacked(i - 1)
        if right > self.fack:
            self.fack = right
        return newly

    def _merge_sacked(self, i: int) -> bool:
        """Fold recs[i + 1] into recs[i] when both are SACKed and adjacent
        (Linux merges SACKed skbs the same way, tcp_shift_skb_data): a
        SACKed run is then one record, so walking the queue (RACK, NextSeg)
        costs the holes, not every segment above them. Records differing in
        ever_retrans stay apart, so `retransmitted` stays exact."""
        recs = self.recs
        a, b = recs[i], recs[i + 1]
        if (
            not (a.sacked and b.sacked)
            or a.end != b.start
            or a.ever_retrans != b.ever_retrans
            or a.fin
        ):
            return False
        a.end = b.end
        a.fin = b.fin
        del recs[i + 1]
        return True

    def _unmark(self, rec: Sent, size: int) -> None:
        """`size` bytes of `rec` reached the peer: out of lost/retrans counts."""
        if rec.lost:
            self.lost -= size
            if not rec.retrans:
                self.pending -= size
        if rec.retrans:
            self.retrans_out -= size

    # ------------------------------------------------------------ loss marks

    def mark_lost(self, rec: Sent) -> bool:
        """Presume `rec` lost; a lost retransmission becomes due again.
        Returns True if this was news (it was in flight)."""
        if rec.sacked:
            return False
        size = rec.end - rec.start
        if rec.retrans:  # the retransmission itself was lost
            rec.retrans = False
            self.retrans_out -= size
            self.pending += size
            if not rec.lost:
                rec.lost = True
                self.lost += size
            self.lost_total += size
            return True
        if rec.lost:
            return False
        rec.lost = True
        self.lost += size
        self.lost_total += size
        self.pending += size
        return True

    def mark_all_lost(self) -> None:
        """RTO (Linux tcp_enter_loss): everything not SACKed is lost."""
        for rec in self.recs:
            if not rec.sacked:
                self.mark_lost(rec)

    def unmark_lost(self) -> None:
        """Undo (Linux tcp_undo_cwnd_reduction): nothing is presumed lost."""
        for rec in self.recs:
            if rec.lost:
                rec.lost = False
        self.lost = self.pending = 0

    def clear_sacks(self) -> None:
        """The receiver may have reneged (RFC 2018 8): forget the SACK marks."""
        for rec in self.recs:
            if rec.sacked:
                rec.sacked = False
        self.sacked = 0
        self.sack_cache = ()

    def next_pending(self, limit: int) -> Sent | None:
        """The first record due for retransmission, at most `limit` bytes
        long (split if longer)."""
        if not self.pending:
            return None
        recs = self.recs
        for i, rec in enumerate(recs):
            if rec.lost and not rec.retrans and not rec.sacked:
                if rec.end - rec.start > limit:
                    recs.insert(i + 1, rec.split(rec.start + limit))
                return rec
        return None

    def on_retransmit(self, rec: Sent, now: float) -> None:
        size = rec.end - rec.start
        if rec.lost and not rec.retrans:
            self.pending -= size
        rec.retrans = rec.ever_retrans = True
        rec.xmit = now
        self.retrans_out += size

    def last(self) -> Sent | None:
        return self.recs[-1] if self.recs else None

    def split_last(self, size: int) -> Sent:
        """Cut the last `size` bytes off the last record (a loss probe
        resends one segment, not a whole offloaded burst)."""
        last = self.recs[-1]
        right = last.split(last.end - size)
        self.recs.append(right)
        return right

    def reset(self, una: int) -> None:
        self.recs.clear()
        self.acked_retrans = None
        self.sack_cache = ()
        self.una = self.nxt = self.fack = una
        self.sacked = self.lost = self.retrans_out = self.pending = 0
