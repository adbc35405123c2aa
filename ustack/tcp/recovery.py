"""Loss detection and recovery for one connection's sender, apart from the
state machine (like Linux's tcp_fastretrans_alert and tcp_recovery.c).

It owns the retransmission queue (rtxq.py), RACK (rack.py), PRR (prr.py) and
drives the congestion controller (cc/). The TCB reports what it sent and
what each ACK said, and asks what to (re)send; segment formats and sequence
numbers stay in the TCB (this module sees stream offsets only).

States, as Linux's tcp_ca_state:
- OPEN: no loss outstanding; RACK watches; a tail loss probe (RFC 8985 7)
  may be armed instead of the RTO.
- RECOVERY: fast recovery after RACK (with SACK) or three duplicate ACKs
  (without: RFC 5681, with NewReno's partial ACKs, RFC 6582) found a loss;
  PRR paces the cwnd down to ssthresh; it ends when everything outstanding
  at its start (the recovery point, high_seq) is acknowledged.
- LOSS: after an RTO everything unSACKed is presumed lost and resent in slow
  start; no new fast recovery starts until high_seq is acknowledged
  (RFC 6582 3.2 step 1, RFC 6675 5.1). F-RTO (RFC 5682) sends new data after
  the first ACK to learn whether the timeout was spurious.
- CWR: an ECN-Echo (RFC 3168 6.1.2) reduced the window, as Linux's
  tcp_enter_cwr: ssthresh from the controller, PRR brings cwnd down, nothing
  is retransmitted; it ends once data sent after its start is acknowledged.
  More ECE in CWR, RECOVERY or LOSS reduces no further (once per window); a
  loss found in CWR moves to RECOVERY without a second cut.
Undo (RFC 3708 D-SACK, RFC 3522 Eifel timestamps, F-RTO) restores the window
when every retransmission of an episode proves unnecessary.
"""

from __future__ import annotations

from collections import Counter
from enum import IntEnum

from ustack.tcp.cc.base import INITIAL_SSTHRESH, CongestionControl
from ustack.tcp.prr import Prr
from ustack.tcp.rack import DUPTHRESH, MIN_RTT_WINDOW, Rack
from ustack.tcp.rtxq import RetransmitQueue, Sent
from ustack.tcp.seq import seq_lt

# RFC 8985 7.2: the worst-case delayed-ACK timer added when one segment is
# in flight (Linux TCP_DELACK_MAX), and Linux's floor for the PTO.
WC_DEL_ACK = 0.2
MIN_PTO = 0.01


class CaState(IntEnum):
    OPEN = 0
    CWR = 2
    RECOVERY = 3
    LOSS = 4


class LossRecovery:
    # The common-ACK fast path (`_on_cumulative_ack`); tests turn it off to
    # compare it with the full path.
    fast_ack = True

    __slots__ = (
        "queue",
        "rack",
        "prr",
        "cc",
        "sack_ok",
        "frto_enabled",
        "counters",
        "state",
        "high_seq",
        "undo_marker",
        "undo_start",
        "undo_retrans",
        "retrans_stamp",
        "frto",
        "send_new_first",
        "tlp_high",
        "tlp_retrans",
        "tlp_reductions",
        "dupacks",
        "reno_sacked",
        "reo_deadline",
        "round_end",
        "rounds",
        "cwnd_used",
        "cwnd_used_prev",
        "max_flight",
        "max_flight_prev",
    )

    def __init__(
        self,
        cc: CongestionControl,
        counters: Counter[str],
        sack_ok: bool = False,
        frto: bool = True,
    ) -> None:
        self.queue = RetransmitQueue()
        self.rack = Rack()
        # PRR is made by the first fast recovery: most connections never need it.
        self.prr: Prr | None = None
        self.cc = cc
        self.sack_ok = sack_ok
        self.frto_enabled = frto
        self.counters = counters
        self.state = CaState.OPEN
        self.high_seq = 0  # the recovery point (RFC 6582 "recover")
        # Undo (Linux undo_marker / undo_retrans / retrans_stamp).
        self.undo_marker = False
        self.undo_start = 0  # SND.UNA when the episode began (Linux undo_marker)
        self.undo_retrans = 0  # retransmitted segments not yet D-SACKed
        self.retrans_stamp: int | None = None  # TSval of the first retransmission
        self.frto = False
        self.send_new_first = False  # F-RTO step 2b: new data, not retransmissions
        self.tlp_high: int | None = None  # a loss probe is out up to here
        self.tlp_retrans = False
        self.tlp_reductions = 0  # reductions for probe-repaired losses (ECN CWR)
        self.dupacks = 0  # without SACK (RFC 5681 3.2)
        # Without SACK each duplicate ACK stands for one segment that left the
        # network (Linux tcp_add_reno_sack): it comes off the pipe, which is
        # what makes limited transmit (RFC 3042) and PRR work without SACK.
        self.reno_sacked = 0
        self.reo_deadline: float | None = None  # RACK reorder timer
        # Rounds (one window of data each) and whether cwnd was the limit
        # (RFC 7661; Linux tcp_is_cwnd_limited).
        self.round_end = 0
        self.rounds = 0
        self.cwnd_used = False
        self.cwnd_used_prev = False
        self.max_flight = 0
        self.max_flight_prev = 0

    # ------------------------------------------------------------- sending

    def in_flight(self) -> int:
        return self.queue.in_flight() - self.reno_sacked

    def on_send(self, flight: int, cwnd_blocked: bool) -> None:
        """After an output pass: what was in flight, and whether cwnd stopped it."""
        if flight > self.max_flight:
            self.max_flight = flight
        if cwnd_blocked:
            self.cwnd_used = True

    def cwnd_limited(self) -> bool:
        cc = self.cc
        if cc.in_slow_start:
            mf, mfp = self.max_flight, self.max_flight_prev  # max(), unrolled
            return cc.cwnd < 2 * (mf if mf > mfp else mfp)
        return self.cwnd_used or self.cwnd_used_prev

    def next_retransmission(self, limit: int) -> Sent | None:
        if self.send_new_first:
            return None
        return self.queue.next_pending(limit)

    def on_retransmit(self, rec: Sent, now: float, tsval: int) -> None:
        size = rec.end - rec.start
        self.queue.on_retransmit(rec, now)
        sampler = self.cc.sampler
        if sampler is not None:
            sampler.on_send(rec, now, False)
        if self.retrans_stamp is None:
            self.retrans_stamp = tsval
        if self.undo_marker:
            self.undo_retrans += 1
        if self.state is CaState.RECOVERY:
            assert self.prr is not None  # made by _enter_recovery
            self.prr.on_sent(size)
            self.counters["TCPFastRetrans"] += 1
        elif self.state is CaState.LOSS:
            self.counters["TCPSlowStartRetrans"] += 1

    def on_new_data(self, n: int, rec: Sent, now: float) -> None:
        prr = self.prr  # None in CWR when the controller ignores ECE (BBR)
        if prr is not None and (
            self.state is CaState.RECOVERY or self.state is CaState.CWR
        ):
            prr.on_sent(n)
        sampler = self.cc.sampler
        if sampler is not None:
            # Nothing was in flight before this one: the clocks restart.
            sampler.on_send(rec, now, len(self.queue.recs) == 1)

    def check_app_limited(self, unsent: int) -> None:
        """After an output pass (Linux tcp_rate_check_app_limited): less than
        a segment left to send, cwnd not the limit, no repair pending."""
        sampler = self.cc.sampler
        if sampler is None:
            return
        flight = self.in_flight()
        if unsent < self.cc.mss and flight < self.cc.cwnd and not self.queue.pending:
            sampler.mark_app_limited(flight)

    # ------------------------------------------------------------- ACKs

    def on_ack(
        self,
        ack: int,
        blocks: list[tuple[int, int]],
        dsack: tuple[int, int] | None,
        is_dupack: bool,
        now: float,
        tsecr: int | None,
        srtt: float,
        ece: bool = False,
    ) -> float | None:
        """Process one ACK (Linux tcp_ack -> tcp_fastretrans_alert).

        `ack`, `blocks` and `dsack` (a range the peer got twice, RFC 2883)
        are stream offsets; `ece`: the ACK carries ECN-Echo (RFC 3168).
        Returns an RTT sample (seconds) from the send times of what it
        acknowledged, if Karn's rule allows one."""
        q = self.queue
        cc = self.cc
        sampler = cc.sampler
        if (
            ack > q.una
            and not blocks
            and dsack is None
            and not ece
            and self.state is CaState.OPEN
            and self.tlp_high is None
            and sampler is None
            and not (q.sacked or q.lost or q.retrans_out or self.reno_sacked)
            and self.fast_ack
        ):
            return self._on_cumulative_ack(ack, now, srtt)
        if sampler is not None:
            sampler.begin(self.in_flight())
            prior_lost = q.lost_total
        dsack_segs = 0
        widen = False
        if dsack is not None:
            dsack_segs = self._dsack_segs(dsack)
            widen = self._dsack_widens(dsack)
        prior_fack = q.fack
        prior_flight = q.nxt - q.una
        delivered: list[Sent] = []
        acked = q.ack(ack, delivered) if ack > q.una else 0
        n_acked = len(delivered)
        sacked = q.sack_blocks(blocks, delivered) if blocks else 0
        # RTT (RFC 6298 with Karn's rule; Linux takes the oldest segment the
        # ACK covers), RACK's view of the newest delivery, and whether any
        # original (never retransmitted) segment got through.
        rtt: float | None = None
        orig_delivered = False
        rack = self.rack
        high = self.high_seq
        for i, rec in enumerate(delivered):
            rack.update(rec, now, prior_fack)
            if sampler is not None:
                sampler.on_delivered(rec)
            if not rec.ever_retrans:
                # F-RTO looks at originals sent before the RTO (Linux
                # FLAG_ORIG_SACK_ACKED), not at new data sent after it.
                if rec.end <= high:
                    orig_delivered = True
                if rtt is None and i < n_acked:
                    rtt = now - rec.xmit
        if delivered and rack.rtt:
            cc.on_rtt(rack.rtt, now)
        if dsack is not None:
            self.counters["TCPDSACKRecv"] += 1
            if widen:
                rack.on_dsack(q.nxt)
            if self.undo_marker and self.undo_retrans > 0 and dsack_segs:
                self.undo_retrans = max(0, self.undo_retrans - dsack_segs)
        rack.on_ack(q.una)
        round_start = ack > self.round_end
        if round_start:
            self._next_round()
        delivered_bytes = acked + sacked
        if not self.sack_ok:
            if is_dupack:
                self.dupacks += 1
                room = q.nxt - q.una - cc.mss - self.reno_sacked
                credit = max(0, min(cc.mss, room))
                self.reno_sacked += credit
                delivered_bytes += credit
            elif acked:
                # The ACK covers bytes its duplicates already stood for.
                eaten = min(self.reno_sacked, max(acked - cc.mss, 0))
                self.reno_sacked -= eaten
                delivered_bytes -= eaten
                if self.state <= CaState.CWR:
                    self.dupacks = 0
        if self.tlp_high is not None:
            self._check_tlp(ack, acked, sacked, dsack, is_dupack, now)
        # State machine (Linux tcp_fastretrans_alert / tcp_process_loss).
        state = self.state
        ended = False
        hold = False  # mark nothing more lost on this ACK
        if state is CaState.LOSS:
            self._process_loss(
                ack, acked, sacked, orig_delivered, is_dupack, tsecr, now
            )
        elif state is CaState.RECOVERY:
            if ack >= self.high_seq:
                self._end_recovery(tsecr, now)
                ended = True
            elif acked and self.undo_marker and self._packet_delayed(tsecr):
                # Linux tcp_try_undo_partial: an original filled the hole, so
                # the path reorders. With retransmissions still out, undoing
                # would forget losses they repair: clock out new data only.
                rack.reordering_seen = True
                if q.retrans_out:
                    hold = True
                else:
                    self._undo(now, "TCPPartialUndo")
            elif acked and not self.sack_ok:
                # NewReno partial ACK (RFC 6582 3.2 step 3): the next hole is lost.
                head = q.recs[0] if q.recs else None
                if head is not None:
                    q.mark_lost(head)
            if dsack_segs and self.undo_marker and not self.undo_retrans:
                rack.on_dsack_undo()
                self._undo(now, "TCPDSACKUndo")
        elif state is CaState.CWR and ack > self.high_seq:
            # Linux: CWR holds until data *above* high_seq is acknowledged,
            # so that the CWR flag has reached the receiver.
            self._end_cwr(now)
            ended = True
        if ece:
            # Linux tcp_count_delivered: segments delivered with ECE.
            self.counters["TCPDeliveredCE"] += -(-delivered_bytes // cc.mss)
        # Loss detection (RFC 8985 6.2 step 5, or dupthresh without SACK).
        lost = not hold and self._detect_loss(now, srtt)
        if lost and self.state <= CaState.CWR:
            self._enter_recovery(now, prior_flight)
        elif ece and self.state is CaState.OPEN:
            self._enter_cwr(now, prior_flight)
        # Congestion window.
        if sampler is not None:
            rs = sampler.finish(
                delivered_bytes,
                q.lost_total - prior_lost,
                now,
                rack.min_rtt,
                mss=cc.mss,
                alert=sacked > 0 or dsack is not None or ece,
            )
            if cc.model_based:
                # Linux cong_control: the model sets cwnd, PRR does not.
                cc.on_sample(rs, now, self.in_flight(), self.state)
                return rtt
        if self.state is CaState.RECOVERY or (
            self.state is CaState.CWR and self._ecn_reduces()
        ):
            assert self.prr is not None
            cc.cwnd = self.prr.cwnd(delivered_bytes, self.in_flight(), cc.mss)
        elif acked and delivered_bytes > 0 and not ended:
            # Grow on in-order progress only (RFC 5681; Linux
            # tcp_may_raise_cwnd), by all it delivered (RFC 3465).
            cc.on_ack(delivered_bytes, now, self.cwnd_limited(), round_start)
        return rtt

    def _on_cumulative_ack(self, ack: int, now: float, srtt: float) -> float | None:
        """`on_ack` for the common ACK: it advances SND.UNA, carries no SACK
        or D-SACK information and no ECE, nothing is SACKed, marked lost or
        retransmitted, no loss probe out and the state is OPEN (Linux
        tcp_ack without FLAG_SLOWPATH: tcp_clean_rtx_queue, then congestion
        avoidance). Every branch of the full path that such an ACK cannot
        take is left out; the rest is the same, in the same order, so the
        result is identical (tests/unit/test_sender_fastpath.py).

        With nothing SACKed, lost or retransmitted no record carries those
        marks, so RetransmitQueue.ack reduces to the loop below, and RACK's
        update for each delivered record (Rack.update, RFC 8985 6.2 steps
        1-3) runs in it: the same work, per record, without the calls."""
        q = self.queue
        rack = self.rack
        prior_fack = q.fack
        prior_flight = q.nxt - q.una
        recs = q.recs
        acked = 0
        n = 0
        rtt: float | None = None
        for rec in recs:  # RetransmitQueue.ack on a clean queue
            start = rec.start
            if start >= ack:
                break
            end = rec.end
            xmit = rec.xmit
            sample = now - xmit
            if end <= ack:
                acked += end - start
                n += 1
            else:
                acked += ack - start
                rec.start = ack  # part of an offloaded record
            if rec.ever_retrans:
                q._remember_retrans(start, end if end < ack else ack)
                # Rack.update: the original or the retransmission? Below
                # the minimum RTT it must be the original (step 2).
                if sample < rack.min_rtt:
                    if end > ack:
                        break
                    continue
            else:
                if rtt is None:
                    rtt = sample  # Karn (RFC 6298 3): an original's send time
                if end < prior_fack:
                    rack.reordering_seen = True
            if sample < rack.min_rtt or now - rack.min_rtt_stamp > MIN_RTT_WINDOW:
                rack.min_rtt = sample
                rack.min_rtt_stamp = now
            if xmit > rack.xmit_ts or (xmit == rack.xmit_ts and end > rack.end):
                rack.xmit_ts = xmit
                rack.end = end
                rack.rtt = sample
            if end > ack:
                break
        if n:
            del recs[:n]
        q.una = ack
        if ack > q.fack:
            q.fack = ack
        cc = self.cc
        if acked and rack.rtt:  # something was delivered
            cc.on_rtt(rack.rtt, now)
        if rack.dsack_round is not None:
            rack.on_ack(ack)
        round_start = ack > self.round_end
        if round_start:  # _next_round, inlined
            self.rounds += 1
            self.round_end = q.nxt
            self.cwnd_used_prev, self.cwnd_used = self.cwnd_used, False
            self.max_flight_prev, self.max_flight = self.max_flight, 0
        if not self.sack_ok:
            self.dupacks = 0  # RFC 5681 3.2: new data acknowledged
        if recs:
            # RFC 8985 6.2 step 5: data sent before what was just delivered
            # may now count as lost (usually the walk stops at once).
            if self._detect_loss(now, srtt):
                self._enter_recovery(now, prior_flight)
                assert self.prr is not None
                cc.cwnd = self.prr.cwnd(acked, self.in_flight(), cc.mss)
                return rtt
        else:
            self.reo_deadline = None  # nothing left to wait for
        # RFC 5681 / RFC 3465: grow by all it delivered. cwnd_limited, inlined.
        if cc.in_slow_start:
            mf, mfp = self.max_flight, self.max_flight_prev
            limited = cc.cwnd < 2 * (mf if mf > mfp else mfp)
        else:
            limited = self.cwnd_used or self.cwnd_used_prev
        cc.on_ack(acked, now, limited, round_start)
        return rtt

    def _dsack_segs(self, dsack: tuple[int, int]) -> int:
        """Segments of ours a D-SACK proves were resent needlessly: only data
        of this episode (Linux: after undo_marker) that we retransmitted; a
        duplicate the network made says nothing about our retransmissions."""
        left, right = dsack
        if (
            not self.undo_marker
            or right <= self.undo_start
            or not self.queue.retransmitted(left, right)
        ):
            return 0
        return -(-(right - left) // self.cc.mss)

    def _dsack_widens(self, dsack: tuple[int, int]) -> bool:
        """Whether a D-SACK widens RACK's reordering window (RFC 8985 6.2
        step 4: it reports a retransmission that reordering made spurious).
        As Linux tcp_dsack_seen: only once reordering was seen, not for a
        loss probe's duplicate (TLP is timer-driven), and only for data we
        retransmitted: with a path that duplicates packets, D-SACKs of
        originals would otherwise push the window to a full SRTT and delay
        every loss detection by that much."""
        left, right = dsack
        if self.tlp_high is not None and right == self.tlp_high:
            return False
        return self.rack.reordering_seen and self.queue.retransmitted(left, right)

    def _next_round(self) -> None:
        self.rounds += 1
        self.round_end = self.queue.nxt
        self.cwnd_used_prev, self.cwnd_used = self.cwnd_used, False
        self.max_flight_prev, self.max_flight = self.max_flight, 0

    def _detect_loss(self, now: float, srtt: float) -> bool:
        q = self.queue
        self.reo_deadline = None
        if not q.recs:
            return False
        if self.sack_ok:
            lost: list[Sent] = []
            in_rec = self.state >= CaState.RECOVERY
            reo = self.rack.reo_wnd(in_rec, q.sacked // self.cc.mss, srtt)
            before = q.retrans_out
            wait = self.rack.detect_loss(q, now, reo, lost)
            if wait:
                self.reo_deadline = now + wait
            if q.retrans_out < before:
                self.counters["TCPLostRetransmit"] += 1
            return bool(lost)
        if self.state <= CaState.CWR and self.dupacks >= DUPTHRESH:
            return q.mark_lost(q.recs[0])
        return False

    def on_reorder_timer(self, now: float, srtt: float) -> None:
        """RACK's reorder timer (RFC 8985 6.3): run the detection again."""
        prior_flight = self.queue.nxt - self.queue.una
        if self._detect_loss(now, srtt) and self.state <= CaState.CWR:
            self._enter_recovery(now, prior_flight)
        if self.state is CaState.RECOVERY and not self.cc.model_based:
            assert self.prr is not None
            self.cc.cwnd = self.prr.cwnd(0, self.in_flight(), self.cc.mss)

    # ------------------------------------------------------------- episodes

    def _start_undo(self) -> None:
        self.undo_marker = True
        self.undo_start = self.queue.una
        self.undo_retrans = 0
        self.retrans_stamp = None
        self.cc.remember_for_undo()

    def _enter_recovery(self, now: float, prior_flight: int) -> None:
        """RFC 6675 5 / Linux tcp_enter_recovery. From CWR the window was
        already cut in this window (RFC 3168 6.1.2): PRR carries on."""
        cc = self.cc
        in_cwr = self.state is CaState.CWR
        self._start_undo()
        if not in_cwr:
            cc.ssthresh = cc.ssthresh_after_loss(now)
            self._start_prr(cc.ssthresh, prior_flight)
        self.state = CaState.RECOVERY
        self.high_seq = self.queue.nxt
        self.counters["TCPSackRecovery" if self.sack_ok else "TCPRenoRecovery"] += 1

    def _ecn_reduces(self) -> bool:
        """Whether the controller cuts its window on ECE (CUBIC and Reno do;
        BBR v1 does not, as Linux's tcp_bbr.c: its model owns cwnd)."""
        return self.cc.reacts_to_ecn

    def _enter_cwr(self, now: float, prior_flight: int) -> None:
        """ECN-Echo in OPEN (RFC 3168 6.1.2; Linux tcp_enter_cwr ->
        tcp_init_cwnd_reduction): one reduction for this window, by PRR, with
        no retransmission and nothing to undo."""
        cc = self.cc
        self.state = CaState.CWR
        self.high_seq = self.queue.nxt
        self.undo_marker = False
        self.tlp_high = None
        if self._ecn_reduces():
            cc.ssthresh = cc.ssthresh_after_loss(now)
            self._start_prr(cc.ssthresh, prior_flight)

    def _start_prr(self, ssthresh: int, prior_flight: int) -> None:
        """PRR (RFC 6937) for a new reduction; made at the first one."""
        prr = self.prr
        if prr is None:
            prr = self.prr = Prr()
        prr.start(ssthresh, prior_flight)  # resets all PRR state

    def _end_cwr(self, now: float) -> None:
        """Linux tcp_end_cwnd_reduction: cwnd = ssthresh, back to OPEN."""
        if self._ecn_reduces():
            self.cc.on_recovery_done(now)
        self.state = CaState.OPEN

    def _end_recovery(self, tsecr: int | None, now: float) -> None:
        if self.undo_marker and (not self.undo_retrans or self._packet_delayed(tsecr)):
            name = "TCPDSACKUndo" if not self.undo_retrans else "TCPFullUndo"
            self._undo(now, name)
            return
        self.cc.on_recovery_done(now)
        self.rack.on_recovery_done()
        self.state = CaState.OPEN
        self.undo_marker = False
        self.dupacks = 0
        self.reno_sacked = 0

    def on_rto(self, now: float, first: bool) -> None:
        """The retransmission timer fired (Linux tcp_enter_loss).

        `first`: not a repeated expiry of the same episode; only then is a
        new ssthresh taken (a backed-off RTO does not cut it again)."""
        cc = self.cc
        q = self.queue
        new_episode = self.state is not CaState.LOSS or first or q.una >= self.high_seq
        if new_episode:
            if not (self.state is CaState.RECOVERY and self.undo_marker):
                self._start_undo()
            cc.ssthresh = cc.ssthresh_after_loss(now)
        cc.on_rto(now)
        if not first:
            q.clear_sacks()  # repeated timeouts: the receiver may have reneged
        q.mark_all_lost()
        self.frto = self.frto_enabled and new_episode
        self.send_new_first = False
        self.state = CaState.LOSS
        self.high_seq = q.nxt
        self.tlp_high = None
        self.dupacks = 0
        self.reno_sacked = 0
        self.reo_deadline = None

    def _process_loss(
        self,
        ack: int,
        acked: int,
        sacked: int,
        orig_delivered: bool,
        is_dupack: bool,
        tsecr: int | None,
        now: float,
    ) -> None:
        """Linux tcp_process_loss, with F-RTO (RFC 5682 3, SACK variant 4)."""
        q = self.queue
        self.send_new_first = False
        if self.frto and orig_delivered and (acked or sacked):
            # An original transmission arrived after the RTO: spurious.
            self.counters["TCPSpuriousRTOs"] += 1
            self._undo(now, "TCPLossUndo")
            return
        recovered = ack >= self.high_seq
        if recovered:
            self.state = CaState.OPEN
            self.undo_marker = False
            self.frto = False
            return
        if self.frto:
            if q.nxt > self.high_seq:  # new data went out after the RTO
                if sacked or is_dupack:
                    self.frto = False  # RFC 5682 3 step 3a: the loss was real
            elif acked:
                # Step 2b: send new data now instead of more retransmissions.
                self.high_seq = q.nxt
                self.send_new_first = True
                return
        if acked and self.undo_marker and self._packet_delayed(tsecr):
            self.counters["TCPSpuriousRTOs"] += 1
            self._undo(now, "TCPLossUndo")  # Eifel (RFC 3522)

    def _packet_delayed(self, tsecr: int | None) -> bool:
        """RFC 3522: the ACK echoes a timestamp older than our first
        retransmission, so it was caused by an original segment."""
        stamp = self.retrans_stamp
        return stamp is not None and bool(tsecr) and seq_lt(tsecr or 0, stamp)

    def _undo(self, now: float, counter: str) -> None:
        """Linux tcp_undo_cwnd_reduction: the reduction was spurious."""
        self.cc.undo(now)
        self.queue.unmark_lost()
        self.state = CaState.OPEN
        self.undo_marker = False
        self.frto = False
        self.send_new_first = False
        self.dupacks = 0
        self.reno_sacked = 0
        self.counters[counter] += 1

    # ------------------------------------------------------------- TLP

    def pto(self, srtt: float | None, rto: float) -> float | None:
        """RFC 8985 7.2: the probe timeout, or None when no probe applies."""
        if (
            not self.sack_ok
            or srtt is None
            or self.state > CaState.CWR  # Linux: probes in Open and CWR
            or self.tlp_high is not None
            or not self.queue.recs
        ):
            return None
        pto = 2 * srtt
        q = self.queue
        # q.in_flight(), inlined (after every ACK and every send).
        if q.nxt - q.una - q.sacked - q.lost + q.retrans_out <= self.cc.mss:
            one = 1.5 * srtt + WC_DEL_ACK
            if one > pto:
                pto = one
        # If the RTO would come first, the probe takes its place (RFC 8985
        # 7.2, Linux tcp_schedule_loss_probe): a tail loss is then repaired
        # without collapsing cwnd. (min(max(pto, MIN_PTO), rto), unrolled.)
        if pto < MIN_PTO:
            pto = MIN_PTO
        return pto if pto < rto else rto

    def on_probe_sent(self, retransmitted: bool) -> None:
        self.tlp_high = self.queue.nxt
        self.tlp_retrans = retransmitted
        self.counters["TCPLossProbes"] += 1

    def _check_tlp(
        self,
        ack: int,
        acked: int,
        sacked: int,
        dsack: tuple[int, int] | None,
        is_dupack: bool,
        now: float,
    ) -> None:
        """RFC 8985 7.4 (Linux tcp_process_tlp_ack): did the probe repair a loss?"""
        high = self.tlp_high
        assert high is not None
        if ack < high:
            return
        probe_was_duplicate = dsack is not None and dsack[1] >= high
        if not self.tlp_retrans or probe_was_duplicate:
            self.tlp_high = None  # new data, or the original arrived as well
        elif ack > high:
            # The probe's retransmission was the only copy: a loss repaired
            # without an RTO. Reduce the window once (Linux enters CWR).
            self.tlp_high = None
            cc = self.cc
            self.counters["TCPLossProbeRecovery"] += 1
            self.tlp_reductions += 1  # Linux tcp_init_cwnd_reduction: CWR due
            if cc.model_based:
                return  # cong_control owns cwnd: no CWR reduction (tcp_bbr.c)
            cc.remember_for_undo()
            cc.ssthresh = cc.ssthresh_after_loss(now)
            cc.cwnd = max(cc.ssthresh, cc.mss)
        elif not (acked or sacked or is_dupack):
            self.tlp_high = None

    def on_mtu_reduced(self, mss: int) -> None:
        """The path MTU fell (RFC 1191): what went out larger than `mss` was
        dropped on the way. Resend it at the new size without a congestion
        response (Linux tcp_simple_retransmit: Loss state, cwnd kept)."""
        q = self.queue
        marked = False
        for rec in q.recs:
            if rec.end - rec.start > mss and q.mark_lost(rec):
                marked = True
        if marked and self.state is not CaState.LOSS:
            cc = self.cc
            if cc.ssthresh < INITIAL_SSTHRESH:
                cc.ssthresh = max(cc.ssthresh, cc.cwnd * 3 // 4)
            self.state = CaState.LOSS
            self.high_seq = q.nxt
            self.undo_marker = self.frto = False
            self.tlp_high = None

    # ------------------------------------------------------------- misc

    def reset(self, una: int) -> None:
        self.queue.reset(una)
        self.round_end = una
        self.high_seq = una
