"""BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00; Linux tcp_bbr.c).

A model, not a loss signal: the bottleneck bandwidth is the windowed maximum
of delivery-rate samples (rate.py) over 10 rounds, the propagation delay the
windowed minimum RTT over 10 s. The sender paces at pacing_gain * bw and
keeps cwnd = cwnd_gain * BDP + quanta in flight. Modes, as in Linux:

- STARTUP: gain 2/ln2 until three rounds in a row grew bw by under 25%.
- DRAIN: pacing gain ln2/2 until inflight <= one BDP.
- PROBE_BW: gain cycle 1.25, 0.75, then 1 x6, each phase one min_rtt long,
  starting at a random phase (so flows do not probe in step).
- PROBE_RTT: when min_rtt was not refreshed for 10 s, cwnd = 4 packets for
  200 ms and a round, to see the empty-queue RTT.

Losses do not cut the model: in fast recovery the window follows packet
conservation for a round (inflight + newly delivered), on leaving it the
window before recovery returns. When losses look like a policer (a steady
rate with >= 20% loss over 4..16 rounds), the long-term rate lt_bw is used
for 48 rounds. ECN: as Linux BBR v1, no reduction on ECE (`reacts_to_ecn`).

Units: bytes and seconds (Linux counts packets and microseconds).
"""

from __future__ import annotations

import math
import random

from ustack.tcp.cc.base import CongestionControl
from ustack.tcp.rate import RateSample, RateSampler

STARTUP, DRAIN, PROBE_BW, PROBE_RTT = "startup", "drain", "probe_bw", "probe_rtt"
CA_RECOVERY = 3  # recovery.CaState values (no import: recovery imports cc)
CA_LOSS = 4

HIGH_GAIN = 2885 / 1000  # 2/ln2 rounded up, Linux bbr_high_gain
DRAIN_GAIN = 1000 / 2885  # its inverse, bbr_drain_gain
CWND_GAIN = 2.0  # bbr_cwnd_gain
PACING_GAIN = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # bbr_pacing_gain
CYCLE_LEN = len(PACING_GAIN)
CYCLE_RAND = 7  # bbr_cycle_rand: random start phase, never the 0.75 one
BW_RTTS = CYCLE_LEN + 2  # bbr_bw_rtts: the max filter's window, in rounds
MIN_RTT_WIN = 10.0  # bbr_min_rtt_win_sec
PROBE_RTT_TIME = 0.2  # bbr_probe_rtt_mode_ms
CWND_MIN_SEGS = 4  # bbr_cwnd_min_target
INIT_CWND_SEGS = 10  # TCP_INIT_CWND
FULL_BW_THRESH = 1.25  # bbr_full_bw_thresh
FULL_BW_CNT = 3  # bbr_full_bw_cnt
PACING_MARGIN = 0.99  # bbr_pacing_margin_percent = 1
MIN_TSO_RATE = 1_200_000 / 8  # bbr_min_tso_rate (bytes/s): below, 1-seg bursts
PACING_SHIFT_TIME = 1 / 1024  # sk_pacing_shift 10: ~1 ms of data per burst
GSO_MAX = 65536
# Long-term (policer) sampling, bbr_lt_*.
LT_INTVL_MIN_RTTS = 4
LT_LOSS_THRESH = 50 / 256
LT_BW_RATIO = 1 / 8
LT_BW_DIFF = 4000 / 8  # bytes/s
LT_BW_MAX_RTTS = 48
# ACK aggregation (bbr_extra_acked_*, Linux 4.19+).
EXTRA_ACKED_GAIN = 1.0
EXTRA_ACKED_WIN_RTTS = 5
EXTRA_ACKED_MAX = 0.1  # seconds of bw
ACK_EPOCH_RESET = 1 << 20  # segments, in Linux; here scaled by mss

_rng = random.Random()


def seed_phase_rng(seed: int) -> None:
    """Make the gain cycle's random start phase (bbr_cycle_rand) repeatable:
    virtual-time tests seed it so that a run does not depend on test order."""
    _rng.seed(seed)


class MaxFilter:
    """Windowed running maximum over rounds (Linux lib/minmax.c, Kathleen
    Nichols' algorithm): the best, second and third best samples."""

    __slots__ = ("t", "v")

    def __init__(self) -> None:
        self.t = [0, 0, 0]
        self.v = [0.0, 0.0, 0.0]

    def get(self) -> float:
        return self.v[0]

    def reset(self, t: int, v: float) -> None:
        self.t = [t, t, t]
        self.v = [v, v, v]

    def update(self, win: int, t: int, v: float) -> None:
        tt, vv = self.t, self.v
        if v >= vv[0] or t - tt[2] > win:
            self.reset(t, v)
            return
        if v >= vv[1]:
            tt[1] = tt[2] = t
            vv[1] = vv[2] = v
        elif v >= vv[2]:
            tt[2], vv[2] = t, v
        # Age out samples older than the window (minmax_subwin_update).
        dt = t - tt[0]
        if dt > win:
            tt[0], vv[0] = tt[1], vv[1]
            tt[1], vv[1] = tt[2], vv[2]
            tt[2], vv[2] = t, v
            if t - tt[0] > win:
                tt[0], vv[0] = tt[1], vv[1]
                tt[1], vv[1] = tt[2], vv[2]
        elif tt[1] == tt[0] and dt > win / 4:
            tt[1] = tt[2] = t
            vv[1] = vv[2] = v
        elif tt[2] == tt[1] and dt > win / 2:
            tt[2], vv[2] = t, v


class Bbr(CongestionControl):
    name = "bbr"
    model_based = True
    reacts_to_ecn = False
    sampler: RateSampler
    __slots__ = (
        "sampler",
        "mode",
        "bw_filter",
        "min_rtt",
        "min_rtt_stamp",
        "probe_rtt_done",
        "probe_rtt_round_done",
        "rtt_cnt",
        "next_rtt_delivered",
        "round_start",
        "packet_conservation",
        "prev_ca_state",
        "idle_restart",
        "pacing_gain",
        "cwnd_gain",
        "pacing_rate",
        "has_seen_rtt",
        "cycle_idx",
        "cycle_stamp",
        "full_bw",
        "full_bw_cnt",
        "full_bw_reached",
        "lt_is_sampling",
        "lt_use_bw",
        "lt_bw",
        "lt_rtt_cnt",
        "lt_last_delivered",
        "lt_last_lost",
        "lt_last_stamp",
        "extra_acked",
        "extra_acked_idx",
        "extra_acked_rtts",
        "ack_epoch_stamp",
        "ack_epoch_acked",
    )

    def __init__(self, mss: int, cwnd: int) -> None:
        super().__init__(mss, cwnd)
        self.sampler = RateSampler()  # fed by loss recovery on every ACK
        self.mode = STARTUP
        self.bw_filter = MaxFilter()
        self.min_rtt = math.inf
        self.min_rtt_stamp = 0.0
        self.probe_rtt_done: float | None = None
        self.probe_rtt_round_done = False
        self.rtt_cnt = 0  # rounds so far
        self.next_rtt_delivered = 0
        self.round_start = False
        self.packet_conservation = False
        self.prev_ca_state = 0
        self.idle_restart = False
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        self.pacing_rate = 0.0  # bytes/s; 0 until the first RTT is known
        self.has_seen_rtt = False
        self.cycle_idx = 0
        self.cycle_stamp = 0.0
        self.full_bw = 0.0
        self.full_bw_cnt = 0
        self.full_bw_reached = False
        self.lt_is_sampling = False
        self.lt_use_bw = False
        self.lt_bw = 0.0
        self.lt_rtt_cnt = 0
        self.lt_last_delivered = 0
        self.lt_last_lost = 0
        self.lt_last_stamp = 0.0
        self.extra_acked = [0, 0]
        self.extra_acked_idx = 0
        self.extra_acked_rtts = 0
        self.ack_epoch_stamp = 0.0
        self.ack_epoch_acked = 0

    # ----- the model

    @property
    def max_bw(self) -> float:
        return self.bw_filter.get()

    @property
    def bw(self) -> float:
        """bbr_bw: the policer's long-term rate when one was found."""
        return self.lt_bw if self.lt_use_bw else self.bw_filter.get()

    def bdp(self, bw: float, gain: float) -> int:
        """bbr_bdp: gain * bw * min_rtt, the initial window before an RTT."""
        if self.min_rtt == math.inf:
            return INIT_CWND_SEGS * self.mss
        return math.ceil(bw * self.min_rtt * gain)

    def tso_goal(self) -> int:
        """bbr_tso_segs_goal in bytes: ~1 ms of the pacing rate per burst."""
        mss = self.mss
        min_segs = 1 if self.pacing_rate < MIN_TSO_RATE else 2
        burst = min(int(self.pacing_rate * PACING_SHIFT_TIME), GSO_MAX)
        return max(min_segs, min(burst // mss, 0x7F)) * mss

    def quantization_budget(self, cwnd: int) -> int:
        """bbr_quantization_budget: room for 3 bursts in flight at the
        sender, receiver and a delayed ACK; an even count; +2 while probing."""
        mss = self.mss
        cwnd += 3 * self.tso_goal()
        segs = -(-cwnd // mss)
        segs = (segs + 1) & ~1
        if self.mode == PROBE_BW and self.cycle_idx == 0:
            segs += 2
        return segs * mss

    def inflight(self, bw: float, gain: float) -> int:
        return self.quantization_budget(self.bdp(bw, gain))

    # ----- the ACK path (bbr_main)

    def on_sample(
        self, rs: RateSample, now: float, in_flight: int, ca_state: int
    ) -> None:
        """bbr_main: one ACK's rate sample updates the model, then the
        pacing rate and cwnd follow from it."""
        sampler = self.sampler
        self.round_start = False
        if rs.delivered >= 0 and rs.interval > 0:
            self._update_bw(rs, sampler, now)
            self._update_ack_aggregation(rs, now)
        if self.mode == PROBE_BW:
            self._update_cycle_phase(rs, now)
        self._check_full_bw_reached(rs)
        self._check_drain(in_flight, now)
        self._update_min_rtt(rs, sampler, now, in_flight)
        self._update_gains()
        bw = self.bw
        self._set_pacing_rate(bw, self.pacing_gain)
        self._set_cwnd(rs, bw, in_flight, ca_state)

    def _update_bw(self, rs: RateSample, sampler: RateSampler, now: float) -> None:
        if rs.prior_delivered >= self.next_rtt_delivered:
            # A round ends when what was sent at its start is delivered.
            self.next_rtt_delivered = sampler.delivered
            self.rtt_cnt += 1
            self.round_start = True
            self.packet_conservation = False
        self._lt_sampling(rs, sampler, now)
        bw = rs.delivered / rs.interval
        # App-limited samples only count when they raise the estimate.
        if not rs.is_app_limited or bw >= self.bw_filter.get():
            self.bw_filter.update(BW_RTTS, self.rtt_cnt, bw)

    def _update_ack_aggregation(self, rs: RateSample, now: float) -> None:
        """bbr_update_ack_aggregation: how much more than bw * time arrived
        in bursts of ACKs (delayed, stretched or aggregated ACKs), kept as
        the max of the last 5-10 rounds and added to the cwnd target."""
        if rs.acked_sacked <= 0:
            return
        if self.round_start:
            self.extra_acked_rtts = min(0x1F, self.extra_acked_rtts + 1)
            if self.extra_acked_rtts >= EXTRA_ACKED_WIN_RTTS:
                self.extra_acked_rtts = 0
                self.extra_acked_idx ^= 1
                self.extra_acked[self.extra_acked_idx] = 0
        expected = int(self.bw * (now - self.ack_epoch_stamp))
        if (
            self.ack_epoch_acked <= expected
            or self.ack_epoch_acked + rs.acked_sacked >= ACK_EPOCH_RESET * self.mss
        ):
            self.ack_epoch_acked = 0
            self.ack_epoch_stamp = now
            expected = 0
        self.ack_epoch_acked += rs.acked_sacked
        extra = min(self.ack_epoch_acked - expected, self.cwnd)
        if extra > self.extra_acked[self.extra_acked_idx]:
            self.extra_acked[self.extra_acked_idx] = extra

    def _ack_aggregation_cwnd(self) -> int:
        if not self.full_bw_reached:
            return 0
        cap = int(self.bw * EXTRA_ACKED_MAX)
        return min(int(EXTRA_ACKED_GAIN * max(self.extra_acked)), cap)

    def _update_cycle_phase(self, rs: RateSample, now: float) -> None:
        """bbr_is_next_cycle_phase: a phase lasts min_rtt; the probing phase
        also waits until inflight reached pacing_gain * BDP (or losses), the
        draining one ends early once inflight fell to one BDP. As Linux, the
        targets are from the max filter (bbr_max_bw, not the policer's
        lt_bw; the same here, since with lt_bw in use the gain is 1) and
        inflight is the prior inflight as it will be at the next paced
        departure (bbr_packets_in_net_at_edt)."""
        full_length = now - self.cycle_stamp > self.min_rtt
        gain = self.pacing_gain
        if gain == 1.0:
            advance = full_length
        else:
            inflight = self._packets_in_net_at_edt(rs.prior_in_flight, now)
            bw = self.max_bw
            if gain > 1.0:
                advance = full_length and (
                    rs.losses > 0 or inflight >= self.inflight(bw, gain)
                )
            else:
                advance = full_length or inflight <= self.inflight(bw, 1.0)
        if advance:
            self._advance_cycle_phase(now)

    def _packets_in_net_at_edt(self, inflight_now: int, now: float) -> int:
        """bbr_packets_in_net_at_edt: of what is in flight, what will still
        be in the network when the next paced burst is due (its earliest
        departure time, the pacer's next_send): what the path delivers at
        bw until then comes off. When raising inflight (gain > 1) the burst
        departing then counts too (bbr_tso_segs_goal)."""
        edt = self.sampler.next_departure(now)
        left = self.bw * (edt - now)
        at_edt = inflight_now
        if self.pacing_gain > 1.0:
            at_edt += self.tso_goal()
        if left >= at_edt:
            return 0
        return math.ceil(at_edt - left)

    def _advance_cycle_phase(self, now: float) -> None:
        self.cycle_idx = (self.cycle_idx + 1) % CYCLE_LEN
        self.cycle_stamp = now

    def _check_full_bw_reached(self, rs: RateSample) -> None:
        """Startup ends after FULL_BW_CNT rounds without 25% growth."""
        if self.full_bw_reached or not self.round_start or rs.is_app_limited:
            return
        max_bw = self.max_bw
        if max_bw >= self.full_bw * FULL_BW_THRESH:
            self.full_bw = max_bw
            self.full_bw_cnt = 0
            return
        self.full_bw_cnt += 1
        self.full_bw_reached = self.full_bw_cnt >= FULL_BW_CNT

    def _check_drain(self, in_flight: int, now: float) -> None:
        if self.mode == STARTUP and self.full_bw_reached:
            self.mode = DRAIN
            self.ssthresh = self.inflight(self.max_bw, 1.0)
        # bbr_check_drain: inflight as it will be at the next departure.
        if self.mode == DRAIN and self._packets_in_net_at_edt(
            in_flight, now
        ) <= self.inflight(self.max_bw, 1.0):
            self._enter_probe_bw(now)

    def _enter_probe_bw(self, now: float) -> None:
        """bbr_reset_probe_bw_mode: a random phase other than the 0.75 one."""
        self.mode = PROBE_BW
        self.cycle_idx = CYCLE_LEN - 1 - _rng.randrange(CYCLE_RAND)
        self._advance_cycle_phase(now)

    def _reset_mode(self, now: float) -> None:
        if self.full_bw_reached:
            self._enter_probe_bw(now)
        else:
            self.mode = STARTUP

    def _update_min_rtt(
        self, rs: RateSample, sampler: RateSampler, now: float, in_flight: int
    ) -> None:
        """bbr_update_min_rtt: a sample as low as the minimum refreshes it;
        once the 10 s window expired any sample replaces it, except one
        from an ACK that was probably delayed (rs.is_ack_delayed, tcp_rate.c
        FLAG_ACK_MAYBE_DELAYED): its RTT includes the receiver's delayed-ACK
        timer, not the path."""
        expired = now > self.min_rtt_stamp + MIN_RTT_WIN
        if rs.rtt >= 0 and (
            rs.rtt <= self.min_rtt or (expired and not rs.is_ack_delayed)
        ):
            self.min_rtt = rs.rtt
            self.min_rtt_stamp = now
        if expired and not self.idle_restart and self.mode != PROBE_RTT:
            self.mode = PROBE_RTT
            self._save_cwnd()
            self.probe_rtt_done = None
        if self.mode == PROBE_RTT:
            # Samples while the window is held down say nothing of the path.
            sampler.app_limited = (sampler.delivered + in_flight) or 1
            if self.probe_rtt_done is None and in_flight <= CWND_MIN_SEGS * self.mss:
                self.probe_rtt_done = now + PROBE_RTT_TIME
                self.probe_rtt_round_done = False
                self.next_rtt_delivered = sampler.delivered
            elif self.probe_rtt_done is not None:
                if self.round_start:
                    self.probe_rtt_round_done = True
                if self.probe_rtt_round_done:
                    self._check_probe_rtt_done(now)
        if rs.delivered > 0:
            self.idle_restart = False

    def _check_probe_rtt_done(self, now: float) -> None:
        if self.probe_rtt_done is None or now <= self.probe_rtt_done:
            return
        self.min_rtt_stamp = now  # wait another 10 s before probing again
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        self._reset_mode(now)

    def _update_gains(self) -> None:
        mode = self.mode
        if mode == STARTUP:
            self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        elif mode == DRAIN:
            self.pacing_gain, self.cwnd_gain = DRAIN_GAIN, HIGH_GAIN
        elif mode == PROBE_BW:
            self.pacing_gain = 1.0 if self.lt_use_bw else PACING_GAIN[self.cycle_idx]
            self.cwnd_gain = CWND_GAIN
        else:
            self.pacing_gain = self.cwnd_gain = 1.0

    def on_rtt(self, rtt: float, now: float) -> None:
        if not self.has_seen_rtt:
            # bbr_init_pacing_rate_from_rtt: high_gain * cwnd / RTT.
            self.has_seen_rtt = True
            self.pacing_rate = HIGH_GAIN * self.cwnd / rtt * PACING_MARGIN

    def _set_pacing_rate(self, bw: float, gain: float) -> None:
        rate = bw * gain * PACING_MARGIN
        # Never lower the rate in startup: the model is still growing.
        if self.full_bw_reached or rate > self.pacing_rate:
            self.pacing_rate = rate

    def pacing_rate_for(self, srtt: float | None, now: float) -> float:
        if self.pacing_rate <= 0:
            # No RTT yet: the initial window over 1 ms, as Linux bbr_init.
            return HIGH_GAIN * self.cwnd / (srtt or 0.001)
        return self.pacing_rate

    def _set_cwnd(
        self, rs: RateSample, bw: float, in_flight: int, ca_state: int
    ) -> None:
        acked = rs.acked_sacked
        mss = self.mss
        cwnd = self.cwnd
        if acked:
            conserving, cwnd = self._recover_or_restore(rs, in_flight, ca_state)
            if not conserving:
                target = self.quantization_budget(
                    self.bdp(bw, self.cwnd_gain) + self._ack_aggregation_cwnd()
                )
                if self.full_bw_reached:
                    cwnd = min(cwnd + acked, target)
                elif cwnd < target or self.sampler.delivered < INIT_CWND_SEGS * mss:
                    cwnd += acked
                cwnd = max(cwnd, CWND_MIN_SEGS * mss)
        if self.mode == PROBE_RTT:
            cwnd = min(cwnd, CWND_MIN_SEGS * mss)
        self.cwnd = cwnd

    def _recover_or_restore(
        self, rs: RateSample, in_flight: int, ca_state: int
    ) -> tuple[bool, int]:
        """bbr_set_cwnd_to_recover_or_restore: losses come off cwnd; the first
        round of recovery conserves packets (send one per one delivered);
        leaving recovery restores the window from before it."""
        cwnd = self.cwnd
        acked = rs.acked_sacked
        if rs.losses > 0:
            cwnd = max(cwnd - rs.losses, self.mss)
        prev = self.prev_ca_state
        if ca_state == CA_RECOVERY and prev != CA_RECOVERY:
            self.packet_conservation = True
            self.next_rtt_delivered = self.sampler.delivered  # a round starts now
            cwnd = in_flight + acked
        elif prev >= CA_RECOVERY and ca_state < CA_RECOVERY:
            cwnd = max(cwnd, self.prior_cwnd)
            self.packet_conservation = False
        self.prev_ca_state = ca_state
        if self.packet_conservation:
            return True, max(cwnd, in_flight + acked)
        return False, cwnd

    def _save_cwnd(self) -> None:
        if self.prev_ca_state < CA_RECOVERY and self.mode != PROBE_RTT:
            self.prior_cwnd = self.cwnd
        else:
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)

    # ----- long-term bandwidth (policers), bbr_lt_bw_sampling

    def _lt_reset_interval(self, sampler: RateSampler) -> None:
        self.lt_last_stamp = sampler.delivered_time
        self.lt_last_delivered = sampler.delivered
        self.lt_last_lost = sampler.lost_total
        self.lt_rtt_cnt = 0

    def _lt_reset(self, sampler: RateSampler) -> None:
        self.lt_bw = 0.0
        self.lt_use_bw = False
        self.lt_is_sampling = False
        self._lt_reset_interval(sampler)

    def _lt_sampling(self, rs: RateSample, sampler: RateSampler, now: float) -> None:
        if self.lt_use_bw:
            if self.mode == PROBE_BW and self.round_start:
                self.lt_rtt_cnt += 1
                if self.lt_rtt_cnt >= LT_BW_MAX_RTTS:
                    self._lt_reset(sampler)  # time to probe the real rate again
                    self._enter_probe_bw(now)
            return
        if not self.lt_is_sampling:
            if not rs.losses:
                return
            self._lt_reset_interval(sampler)  # the first loss opens an interval
            self.lt_is_sampling = True
        if rs.is_app_limited:
            self._lt_reset(sampler)
            return
        if self.round_start:
            self.lt_rtt_cnt += 1
        if self.lt_rtt_cnt < LT_INTVL_MIN_RTTS:
            return
        if self.lt_rtt_cnt > 4 * LT_INTVL_MIN_RTTS:
            self._lt_reset(sampler)
            return
        if not rs.losses:
            return  # intervals end at a loss, as a policer's token run does
        lost = sampler.lost_total - self.lt_last_lost
        delivered = sampler.delivered - self.lt_last_delivered
        if not delivered or lost < LT_LOSS_THRESH * delivered:
            return
        t = sampler.delivered_time - self.lt_last_stamp
        if t < 0.001:
            return
        self._lt_interval_done(delivered / t, sampler)

    def _lt_interval_done(self, bw: float, sampler: RateSampler) -> None:
        if self.lt_bw:
            diff = abs(bw - self.lt_bw)
            if diff <= LT_BW_RATIO * self.lt_bw or diff <= LT_BW_DIFF:
                # Two intervals agree: a policer. Use their mean.
                self.lt_bw = (bw + self.lt_bw) / 2
                self.lt_use_bw = True
                self.pacing_gain = 1.0
                self.lt_rtt_cnt = 0
                return
        self.lt_bw = bw
        self._lt_reset_interval(sampler)

    # ----- events from loss recovery

    def ssthresh_after_loss(self, now: float) -> int:
        """bbr_ssthresh: remember cwnd for after recovery; no cut."""
        self._save_cwnd()
        return self.ssthresh

    def remember_for_undo(self) -> None:
        pass  # BBR keeps its own prior_cwnd (_save_cwnd)

    def on_rto(self, now: float) -> None:
        """tcp_enter_loss sets cwnd to one segment; bbr_set_state(Loss) ends
        the round and restarts the full-bandwidth check."""
        self._save_cwnd()
        self.cwnd = self.mss
        self.prev_ca_state = CA_LOSS
        self.full_bw = 0.0
        self.round_start = True
        rs = RateSample()
        rs.losses = 1  # the timeout is a loss for the policer detector
        self._lt_sampling(rs, self.sampler, now)

    def on_recovery_done(self, now: float) -> None:
        pass  # the window is restored on the next ACK (_recover_or_restore)

    def undo(self, now: float) -> None:
        """bbr_undo_cwnd: keep cwnd, but a spurious loss may have stopped
        startup early or started a policer interval: start those over."""
        self.full_bw = 0.0
        self.full_bw_cnt = 0
        self.lt_bw = 0.0
        self.lt_use_bw = False
        self.lt_is_sampling = False
        self.lt_rtt_cnt = 0

    def on_idle(self, now: float, idle: float) -> None:
        """CA_EVENT_TX_START after app-limited idle: pace at 1.0 x bw."""
        self.idle_restart = True
        self.ack_epoch_stamp = now
        self.ack_epoch_acked = 0
        if self.mode == PROBE_BW:
            self._set_pacing_rate(self.bw, 1.0)
        elif self.mode == PROBE_RTT:
            self._check_probe_rtt_done(now)

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "bw": round(self.bw),
            "mrtt": None if self.min_rtt == math.inf else round(self.min_rtt, 6),
            "pacing_gain": round(self.pacing_gain, 3),
            "cwnd_gain": round(self.cwnd_gain, 3),
            "lt_bw": round(self.lt_bw) if self.lt_use_bw else None,
        }
