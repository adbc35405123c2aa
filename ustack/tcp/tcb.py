"""The transmission control block: one TCP connection, sans-IO (RFC 9293).

The TCB never reads a clock or touches a socket. Every entry point takes
`now` (seconds, float). Segments to send are appended to `outbox`; the
earliest timer is in `deadline`. The stack drains the outbox, calls
`on_timer(now)` when the deadline passes and `flush(now)` after a batch of
input, which is when pending data and delayed ACKs go out.

Segment arrival follows RFC 9293 3.10.7 step by step; the methods are named
after the steps so the code can be read beside the RFC.
"""

from __future__ import annotations

import errno
import math
from collections import Counter
from typing import Any

from ustack.config import Settings
from ustack.errors import os_error
from ustack.tcp.ratelimit import RateLimiter
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.rto import RtoEstimator
from ustack.tcp.scoreboard import Scoreboard
from ustack.tcp.seq import MASK, seq_diff, seq_ge, seq_gt, seq_in, seq_le, seq_lt
from ustack.tcp.state import RECEIVING, State
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment

# RFC 9293 3.7.1: MSS assumed when the peer sends no MSS option.
DEFAULT_MSS = 536
# RFC 7323 2.3: the largest window shift.
MAX_WSCALE = 14
# RFC 5681 3.2: duplicate ACKs that trigger fast retransmit.
DUPACK_THRESHOLD = 3
# NOP, NOP, kind 8, length 10 (RFC 7323 3.2, Appendix A layout).
TS_OPTION_LEN = 12
# RFC 7323 5.5: TS.Recent older than this is too stale for PAWS (24 days).
PAWS_IDLE = 24 * 24 * 3600.0

_CLOSED = State.CLOSED
_SYN_SENT = State.SYN_SENT
_SYN_RECEIVED = State.SYN_RECEIVED
_ESTABLISHED = State.ESTABLISHED
_FIN_WAIT_1 = State.FIN_WAIT_1
_FIN_WAIT_2 = State.FIN_WAIT_2
_CLOSE_WAIT = State.CLOSE_WAIT
_CLOSING = State.CLOSING
_LAST_ACK = State.LAST_ACK
_TIME_WAIT = State.TIME_WAIT
_KEEPALIVE_STATES = frozenset({_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2})
# A handshake that times out ends silently, as on Linux: after a SYN flood
# from spoofed sources, RSTs for the given-up SYN-ACKs would hit third parties.
_OPENING = frozenset({_SYN_SENT, _SYN_RECEIVED})
# States in which queued data (and our FIN) may still go out.
_OUTPUT_STATES = frozenset(
    {_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK}
)


class Tcb:
    __slots__ = (
        "settings",
        "local_ip",
        "local_port",
        "remote_ip",
        "remote_port",
        "state",
        "iss",
        "irs",
        "snd_una",
        "snd_nxt",
        "snd_max",
        "snd_wnd",
        "snd_wl1",
        "snd_wl2",
        "max_snd_wnd",
        "snd_wscale",
        "rcv_nxt",
        "rcv_adv",
        "rcv_wscale",
        "mss",
        "mss_local",
        "sndbuf",
        "sndbuf_seq",
        "snd_buf_size",
        "fin_seq",
        "fin_pending",
        "rcvbuf",
        "rcv_buf_size",
        "ooo",
        "fin_received",
        "read_closed",
        "app_closed",
        "error",
        "rto",
        "rtt_seq",
        "rtt_time",
        "retries",
        "rtx_deadline",
        "persist",
        "close_deadline",
        "delack_deadline",
        "ka_deadline",
        "deadline",
        "ack_now",
        "segs_unacked",
        "cwnd",
        "ssthresh",
        "dupacks",
        "recover",
        "nodelay",
        "keepalive",
        "ka_idle",
        "ka_intvl",
        "ka_cnt",
        "ka_probes",
        "outbox",
        "passive",
        "owner",
        "syn_retransmitted",
        "counters",
        "challenge_limiter",
        "persist_probes",
        "persist_backoff",
        "tso_limit",
        "ts_ok",
        "ts_recent",
        "ts_recent_age",
        "last_ack_sent",
        "ts_offset",
        "clock",
        "sack_ok",
        "last_oow_ack",
        "scoreboard",
        "rexmit_high",
    )

    def __init__(
        self,
        settings: Settings,
        local: tuple[bytes, int],
        remote: tuple[bytes, int],
        iss: int,
        mss_local: int,
        now: float,
        counters: Counter[str] | None = None,
        challenge_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        # Shared with the stack (netstat -s style); private when standalone.
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.challenge_limiter = challenge_limiter or RateLimiter(
            settings.challenge_ack_limit
        )
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote
        self.state = _CLOSED
        self.iss = iss
        self.irs = 0
        # Send sequence space (RFC 9293 3.3.1). snd_max is the highest
        # sequence ever sent: after a timeout snd_nxt rewinds to snd_una.
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        # Receive sequence space; rcv_adv is the right edge we advertised.
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_wscale = 0
        self.mss = DEFAULT_MSS
        self.mss_local = mss_local
        # Unacknowledged and unsent data; sndbuf[0] has sequence sndbuf_seq.
        self.sndbuf = bytearray()
        self.sndbuf_seq = (iss + 1) & MASK
        self.snd_buf_size = settings.snd_buf
        self.fin_seq: int | None = None  # sequence number of our FIN, once queued
        self.fin_pending = False  # FIN asked for before ESTABLISHED
        self.rcvbuf = bytearray()
        self.rcv_buf_size = settings.rcv_buf
        self.ooo = Reassembly(settings.ooo_max_bytes, self.counters)
        self.fin_received = False
        self.read_closed = False
        self.app_closed = False
        self.error: OSError | None = None
        self.rto = RtoEstimator(
            settings.rto_min, settings.rto_max, settings.rto_initial
        )
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.retries = 0
        self.syn_retransmitted = False
        # Timers as deadlines (None = not running).
        self.rtx_deadline: float | None = None  # retransmission or persist
        self.persist = False
        self.persist_probes = 0  # unanswered probes (Linux icsk_probes_out)
        # Probes since the window closed, answered or not (Linux icsk_backoff).
        self.persist_backoff = 0
        self.close_deadline: float | None = None  # TIME_WAIT or orphan FIN_WAIT_2
        self.delack_deadline: float | None = None
        self.ka_deadline: float | None = None
        self.deadline: float | None = None
        self.ack_now = False
        self.segs_unacked = 0
        # Congestion control (RFC 5681, NewReno RFC 6582).
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self.dupacks = 0
        self.recover: int | None = None
        self.nodelay = False
        self.keepalive = False
        self.ka_idle = settings.keepalive_time
        self.ka_intvl = settings.keepalive_intvl
        self.ka_cnt = settings.keepalive_probes
        self.ka_probes = 0
        self.outbox: list[TcpSegment] = []
        self.passive = False
        # Segmentation offload: the link accepts segments up to this many
        # bytes and cuts them into MSS-sized ones (0 = no offload).
        self.tso_limit = 0
        # Timestamps (RFC 7323): negotiated flag, TS.Recent and when it was
        # taken, Last.ACK.sent, and a per-connection offset for our clock.
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = now
        self.last_ack_sent = 0
        # The stack sets the offset from the address pair and its system
        # clock (tcp/isn.py); a standalone TCB derives one from the ISS.
        self.ts_offset = (iss * 2654435761) & MASK
        self.clock = now  # the latest `now` we were given
        self.sack_ok = False  # both SYNs carried SACK-permitted (RFC 2018)
        self.last_oow_ack = -math.inf  # when we last ACKed an invalid segment
        # What the peer SACKed, and how far fast recovery has resent holes.
        self.scoreboard = Scoreboard()
        self.rexmit_high = iss
        self.owner: Any = None  # the stack's bookkeeping (listener, waiters)

    # ------------------------------------------------------------------
    # Opening (RFC 9293 3.10.1 OPEN; 3.10.7.2 LISTEN state)

    def open_active(self, now: float) -> None:
        """CLOSED -> SYN_SENT: send SYN."""
        self.clock = now
        self.state = _SYN_SENT
        self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
        self._emit_syn(now)
        self._arm_rtx(now)
        self._update_deadline()

    def open_passive(self, syn: TcpSegment, now: float) -> None:
        """LISTEN -> SYN_RECEIVED on a SYN: send SYN-ACK."""
        self.clock = now
        self.passive = True
        self._take_syn_timestamp(syn, now)
        self._take_syn_sack(syn)
        self.state = _SYN_RECEIVED
        self.irs = syn.seq
        self.rcv_nxt = self.rcv_adv = (syn.seq + 1) & MASK
        self._take_syn_options(syn, offered_wscale=syn.wscale is not None)
        self.snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1 = syn.seq
        self.snd_wl2 = self.iss
        self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
        self._emit_syn(now)
        self._arm_rtx(now)
        self._update_deadline()

    def open_from_cookie(self, ack: TcpSegment, mss: int, now: float) -> None:
        """LISTEN -> ESTABLISHED from the ACK of a SYN cookie (RFC 4987 3.6).

        The SYN was never stored: ISS and IRS come from the ACK itself, the
        MSS from the cookie; window scaling is off (the SYN's options are lost).
        """
        self.clock = now
        self.passive = True
        self.irs = (ack.seq - 1) & MASK
        self.rcv_nxt = ack.seq
        self.rcv_adv = (ack.seq + min(self.rcv_buf_size, 0xFFFF)) & MASK
        self.iss = (ack.ack - 1) & MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.sndbuf_seq = ack.ack
        self.mss = max(64, min(mss, self.mss_local))
        self.cwnd = self._initial_cwnd()
        self.snd_wscale = self.rcv_wscale = 0
        self.snd_wnd = self.max_snd_wnd = ack.window
        self.snd_wl1, self.snd_wl2 = ack.seq, ack.ack
        self.state = _ESTABLISHED
        self._after_established(now)
        self._update_deadline()

    def _take_syn_options(self, syn: TcpSegment, offered_wscale: bool) -> None:
        peer_mss = syn.mss if syn.mss else DEFAULT_MSS
        # The MSS counts no TCP options (RFC 6691): leave room for the
        # timestamp option that every segment will carry.
        options = TS_OPTION_LEN if self._timestamps_agreed(syn) else 0
        self.mss = max(64, min(peer_mss, self.mss_local) - options)
        self.cwnd = self._initial_cwnd()
        if offered_wscale and syn.wscale is not None:
            self.snd_wscale = min(syn.wscale, MAX_WSCALE)
            self.rcv_wscale = min(self.settings.wscale, MAX_WSCALE)
        else:
            self.snd_wscale = self.rcv_wscale = 0

    def _timestamps_agreed(self, syn: TcpSegment) -> bool:
        return self.settings.timestamps and syn.timestamp is not None

    def _take_syn_sack(self, syn: TcpSegment) -> None:
        """We send SACK blocks only if both SYNs said SACK-permitted."""
        self.sack_ok = self.settings.sack and syn.sack_permitted

    def _take_syn_timestamp(self, syn: TcpSegment, now: float) -> None:
        """RFC 7323 3.2: timestamps are on only if both SYNs carry them."""
        if self._timestamps_agreed(syn) and syn.timestamp is not None:
            self.ts_ok = True
            self.ts_recent = syn.timestamp[0]
            self.ts_recent_age = now

    def _tsval(self) -> int:
        return (int(self.clock * 1000) + self.ts_offset) & MASK  # 1 ms ticks

    def _initial_cwnd(self) -> int:
        return 10 * self.mss  # RFC 6928 initial window

    def _emit_syn(self, now: float) -> None:
        flags = SYN | ACK if self.state is _SYN_RECEIVED else SYN
        window = min(max(0, self.rcv_buf_size - len(self.rcvbuf)), 0xFFFF)
        seg = TcpSegment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt if flags & ACK else 0,
            flags,
            window,
            mss=self.mss_local,
        )
        if flags & ACK:
            self.rcv_adv = (self.rcv_nxt + window) & MASK
            self.last_ack_sent = self.rcv_nxt
        # Offer window scaling in SYN; in SYN-ACK only if the peer offered it.
        if self.state is _SYN_SENT or self.rcv_wscale or self.snd_wscale:
            seg.wscale = min(self.settings.wscale, MAX_WSCALE)
        # Offer timestamps in SYN; in SYN-ACK only if the peer offered them.
        if self.state is _SYN_SENT and self.settings.timestamps or self.ts_ok:
            seg.timestamp = (self._tsval(), self.ts_recent if flags & ACK else 0)
        # We can receive SACK blocks (and ignore them); we send them if agreed.
        if self.state is _SYN_SENT and self.settings.sack or self.sack_ok:
            seg.sack_permitted = True
        self.outbox.append(seg)
        if self.rtt_seq is None and not self.syn_retransmitted:
            self.rtt_seq, self.rtt_time = self.iss, now

    # ------------------------------------------------------------------
    # User calls (RFC 9293 3.10.2 - 3.10.6)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how many bytes fitted in the send buffer."""
        if self.fin_seq is not None or self.fin_pending:
            return 0  # after our FIN nothing more may be sent (RFC 9293 3.10.2)
        room = self.snd_buf_size - len(self.sndbuf)
        if room <= 0:
            return 0
        if len(data) > room:
            data = data[:room]
        self.sndbuf += data
        return len(data)

    def send_space(self) -> int:
        return max(0, self.snd_buf_size - len(self.sndbuf))

    def read(self, max_bytes: int) -> bytes:
        """Take up to max_bytes of in-order received data."""
        buf = self.rcvbuf
        if len(buf) <= max_bytes:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        if data and self.state in RECEIVING:
            # Window update once the window has grown enough (RFC 1122 4.2.3.3).
            offered = seq_diff(self.rcv_adv, self.rcv_nxt)
            free = self.rcv_buf_size - len(buf)
            if free - offered >= self._sws_threshold() and free >= 2 * offered:
                self.ack_now = True
        return data

    def shutdown_write(self, now: float) -> None:
        """Queue our FIN after all queued data (CLOSE call, RFC 9293 3.10.4)."""
        st = self.state
        if self.fin_seq is not None or self.fin_pending:
            return
        if st in (_SYN_SENT, _SYN_RECEIVED):
            self.fin_pending = True
        elif st is _ESTABLISHED:
            self._queue_fin(_FIN_WAIT_1)
        elif st is _CLOSE_WAIT:
            self._queue_fin(_LAST_ACK)
        self._update_deadline()

    def _queue_fin(self, next_state: State) -> None:
        self.fin_seq = (self.sndbuf_seq + len(self.sndbuf)) & MASK
        self.state = next_state

    def close(self, now: float) -> None:
        """The application is done with the connection in both directions."""
        self.app_closed = True
        self.read_closed = True
        st = self.state
        if self.rcvbuf:
            # RFC 2525 2.17: closing with unread data aborts the connection.
            self.counters["TCPAbortOnClose"] += 1
            self.abort(now)
            return
        if st is _SYN_SENT:
            self._enter_closed()
        else:
            self.shutdown_write(now)
            if self.state is _FIN_WAIT_2:
                self.close_deadline = now + self.settings.fin_timeout
        self._update_deadline()

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): send RST where the peer holds state."""
        if self.state in (
            _SYN_RECEIVED,
            _ESTABLISHED,
            _FIN_WAIT_1,
            _FIN_WAIT_2,
            _CLOSE_WAIT,
        ):
            self._emit(RST | ACK, self.snd_max)
        self._enter_closed()

    def set_keepalive(self, enabled: bool, now: float) -> None:
        self.keepalive = enabled
        self.ka_probes = 0
        self.ka_deadline = now + self.ka_idle if enabled else None
        self._update_deadline()

    def advertised_window_field(self) -> int:
        """The raw window field matching the right edge we last advertised."""
        return self._window_field(max(0, seq_diff(self.rcv_adv, self.rcv_nxt)))

    def _window_field(self, wnd: int) -> int:
        """The scaled window field for `wnd` bytes, rounded up as Linux does:
        rounding down would move the right edge left (RFC 9293 3.8.6.2.2
        SHOULD NOT shrink); the excess is under 2**wscale bytes."""
        field = (wnd + (1 << self.rcv_wscale) - 1) >> self.rcv_wscale
        return field if field < 0xFFFF else 0xFFFF

    def detach_time_wait(self) -> None:
        """The stack now holds TIME_WAIT as a compact record: this TCB is done.
        (As on Linux, a socket still held by the application reads CLOSED.)"""
        self.state = _CLOSED
        self.rtx_deadline = self.delack_deadline = self.ka_deadline = None
        self.close_deadline = self.deadline = None
        self.outbox.clear()

    # ------------------------------------------------------------------
    # Application's view

    @property
    def readable(self) -> bool:
        return bool(self.rcvbuf) or self.fin_received or self.state is _CLOSED

    @property
    def is_orphan(self) -> bool:
        return self.app_closed and self.state is not _CLOSED

    def bytes_in_flight(self) -> int:
        return seq_diff(self.snd_max, self.snd_una)

    # ------------------------------------------------------------------
    # SEGMENT ARRIVES (RFC 9293 3.10.7)

    def on_segment(self, seg: TcpSegment, now: float) -> None:
        self.clock = now
        st = self.state
        if st is _SYN_SENT:
            self._on_segment_syn_sent(seg, now)
        elif st is _TIME_WAIT:
            self._on_segment_time_wait(seg, now)
        elif st is not _CLOSED:
            self._on_segment_synchronized(seg, now)
        self._update_deadline()

    def _on_segment_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        ack_ok = False
        if flags & ACK:
            # First: an ACK that does not cover our SYN gets a RST.
            if seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max):
                if not flags & RST:
                    self._emit(RST, seg.ack)
                return
            ack_ok = True
        if flags & RST:
            # Second: RST acceptable only if it acknowledges our SYN.
            if ack_ok:
                self._drop(errno.ECONNREFUSED, "connection refused by peer")
            return
        if not flags & SYN:
            return
        # Fourth: SYN.
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & MASK
        # Our SYN offered an unscaled window: text on the SYN-ACK may use it.
        self.rcv_adv = (self.rcv_nxt + min(self.rcv_buf_size, 0xFFFF)) & MASK
        self._take_syn_options(seg, offered_wscale=True)
        self._take_syn_timestamp(seg, now)
        self._take_syn_sack(seg)
        if ack_ok:
            self._on_handshake_ack(seg, now)
            self.snd_wnd = seg.window  # a SYN's window is never scaled
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.max_snd_wnd = self.snd_wnd
            self.state = _ESTABLISHED
            if seg.payload:
                self._receive_text(self.rcv_nxt, seg.payload, now)
            self.ack_now = True
            self._after_established(now)
            # RFC 9293 3.10.7.3: "continue processing at the sixth step": a
            # FIN on the SYN-ACK closes the peer's side at once.
            if flags & FIN and (seg.seq + 1 + len(seg.payload)) & MASK == self.rcv_nxt:
                self._on_fin(now)
        else:
            # Simultaneous open: SYN_SENT -> SYN_RECEIVED, answer SYN-ACK.
            self.state = _SYN_RECEIVED
            self.snd_wnd = seg.window
            self.snd_wl1 = seg.seq
            self._emit_syn(now)

    def _on_handshake_ack(self, seg: TcpSegment, now: float) -> None:
        self.snd_una = seg.ack
        self.retries = 0
        if self.rtt_seq is not None and not self.syn_retransmitted:
            self.rto.sample(now - self.rtt_time)
        elif self.syn_retransmitted and self.rto.srtt is None:
            self.rto.rto = 3.0  # RFC 6298 5.7: lost SYN, no sample yet
        self.rtt_seq = None
        self.rtx_deadline = None

    def _after_established(self, now: float) -> None:
        if self.keepalive:
            self.ka_deadline = now + self.ka_idle
        if self.fin_pending:
            self.fin_pending = False
            self._queue_fin(_FIN_WAIT_1)

    def _on_segment_time_wait(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        if flags & RST:
            return  # RFC 1337: do not let a RST cut TIME_WAIT short
        if flags & FIN and (seg.seq + len(seg.payload) + 1) & MASK == self.rcv_nxt:
            # The peer's FIN again: it lost our last ACK. ACK again and
            # restart 2MSL (3.10.7.4); no other segment may restart it.
            self._emit(ACK, self.snd_max)
            self.close_deadline = now + 2 * self.settings.msl
        elif seg.seg_len or flags & SYN:
            # Anything else is out of window: a rate-limited ACK, so a blind
            # sender cannot use TIME_WAIT as a 1:1 reflector (Linux
            # tcp_timewait_check_oow_rate_limit).
            self._rate_limited_ack(now, "TCPACKSkippedTimeWait")

    def _on_segment_synchronized(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        payload = seg.payload
        seq = seg.seq
        ts = seg.timestamp if self.ts_ok else None
        # PAWS (RFC 7323 5.3 R1): a timestamp older than TS.Recent marks an
        # old duplicate from an earlier wrap of the sequence space.
        if (
            ts is not None
            and not flags & RST
            and seq_lt(ts[0], self.ts_recent)
            and now - self.ts_recent_age < PAWS_IDLE
        ):
            self.counters["PAWSEstab"] += 1
            if seg.payload:
                self._emit(ACK, self.snd_max)
            else:  # rate-limited, or a blind 1:1 reflector (Linux: same)
                self._rate_limited_ack(now, "TCPACKSkippedPAWS")
            return
        # First: sequence number acceptability (RFC 9293 3.10.7.4 table).
        seg_len = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_nxt = self.rcv_nxt
        rcv_wnd = seq_diff(self.rcv_adv, rcv_nxt)
        if rcv_wnd < 0:
            rcv_wnd = 0
        if seq == rcv_nxt:
            acceptable = True
        elif seg_len == 0:
            acceptable = (rcv_wnd == 0 and seq == rcv_nxt) or (
                rcv_wnd > 0 and seq_in(seq, rcv_nxt, rcv_nxt + rcv_wnd)
            )
        elif rcv_wnd == 0:
            acceptable = False
        else:
            end = (seq + seg_len - 1) & MASK
            acceptable = seq_in(seq, rcv_nxt, rcv_nxt + rcv_wnd) or seq_in(
                end, rcv_nxt, rcv_nxt + rcv_wnd
            )
        if not acceptable:
            # A retransmitted SYN means our SYN-ACK was lost: send it again. A
            # SYN-ACK (simultaneous open) gets the plain ACK below, which
            # completes the peer's handshake; answering SYN-ACK would ping-pong.
            if (
                self.state is _SYN_RECEIVED
                and flags & SYN
                and not flags & ACK
                and seq == self.irs
            ):
                self._emit_syn(now)
            elif not flags & RST:
                self._dupack_for_invalid(seg, now)
            return
        # Second: RST (RFC 5961 3.2: exact match resets, otherwise challenge).
        if flags & RST:
            if seq == rcv_nxt:
                self._on_rst()
            else:
                self._challenge_ack(now)
            return
        # Fourth: SYN in a synchronized state gets a challenge ACK (RFC 5961 4).
        if flags & SYN:
            self._challenge_ack(now)
            return
        # Fifth: ACK.
        if not flags & ACK:
            return
        if self.keepalive:
            self.ka_probes = 0
            self.ka_deadline = now + self.ka_idle
        if self.state is _SYN_RECEIVED:
            if seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max):
                self._on_handshake_ack(seg, now)
                self.state = _ESTABLISHED
                self.snd_wnd = seg.window << self.snd_wscale
                self.snd_wl1, self.snd_wl2 = seq, seg.ack
                self.max_snd_wnd = self.snd_wnd
                self._after_established(now)
            else:
                self._emit(RST, seg.ack)
                return
        if not self._process_ack(seg, now):
            return
        # RFC 7323 5.3 R3: remember the timestamp to echo. Only now, after the
        # RST, SYN and ACK checks (as Linux): a blind in-window SYN must not
        # move TS.Recent, or PAWS would then reject the real peer.
        if (
            ts is not None
            and seq_le(seq, self.last_ack_sent)
            and seq_ge(ts[0], self.ts_recent)
        ):
            self.ts_recent = ts[0]
            self.ts_recent_age = now
        # Seventh: segment text.
        if payload and self.state in RECEIVING:
            if self.app_closed:
                # Nobody will read it: reset, as Linux does.
                self.counters["TCPAbortOnData"] += 1
                self.abort(now)
                return
            self._receive_text(seq, payload, now)
        # Eighth: FIN.
        if flags & FIN:
            fin_at = (seq + len(payload)) & MASK
            if fin_at == self.rcv_nxt:
                self._on_fin(now)
            elif seq_gt(fin_at, self.rcv_nxt):
                self.ooo.fin_seq = fin_at

    def _dupack_for_invalid(self, seg: TcpSegment, now: float) -> None:
        """ACK an unacceptable segment (RFC 9293 3.10.7.4), at most once per
        `invalid_ratelimit` for segments without data: two ends that disagree
        about the sequence space (e.g. after a spoofed segment) would
        otherwise ACK each other forever (RFC 5961 10; Linux does the same)."""
        probe = seg.seq == (self.rcv_nxt - 1) & MASK  # keepalive / window probe
        if not seg.payload and not seg.flags & (SYN | FIN) and not probe:
            self._rate_limited_ack(now, "TCPACKSkippedInvalid")
        else:
            self._emit(ACK, self.snd_max)

    def _rate_limited_ack(self, now: float, skipped: str) -> None:
        """ACK at most once per `invalid_ratelimit` (Linux tcp_oow_rate_limited);
        `skipped` counts the ACKs left out."""
        if now - self.last_oow_ack < self.settings.invalid_ratelimit:
            self.counters[skipped] += 1
            return
        self.last_oow_ack = now
        self._emit(ACK, self.snd_max)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 3.2/4.2, rate-limited per RFC 5961 7."""
        if self.challenge_limiter.allow(now):
            self.counters["TCPChallengeACK"] += 1
            self._emit(ACK, self.snd_max)
        else:
            self.counters["TCPChallengeACKLimited"] += 1

    def _process_ack(self, seg: TcpSegment, now: float) -> bool:
        """Step five for synchronized states; False means drop the segment."""
        ack = seg.ack
        una = self.snd_una
        if seq_gt(ack, self.snd_max):
            self._dupack_for_invalid(seg, now)  # acks something not yet sent
            return False
        if seq_lt(ack, una - self.max_snd_wnd):
            self._challenge_ack(now)  # RFC 5961 5.2: too old
            return False
        self.persist_probes = 0  # the peer is alive
        wnd = seg.window << self.snd_wscale
        sack_news = 0
        if seg.sack_blocks and self.sack_ok:
            sack_news = self.scoreboard.update(una, self.snd_max, seg.sack_blocks)
        if seq_gt(ack, una):
            self._on_new_ack(ack, now)
            if self.ts_ok and seg.timestamp is not None and seg.timestamp[1]:
                self._rtt_from_timestamp(seg.timestamp[1])
        elif (
            ack == una
            and not seg.payload
            and not seg.flags & FIN
            and una != self.snd_max
            # RFC 5681 wants an unchanged window; with SACK, an ACK that
            # reports newly SACKed data is a duplicate ACK too (RFC 6675 2).
            and (wnd == self.snd_wnd or sack_news > 0)
        ):
            self._on_dupack(now)
        # Send window update (RFC 9293 3.10.7.4, SND.WL1/WL2 rule).
        if seq_ge(ack, una) and (
            seq_lt(self.snd_wl1, seg.seq)
            or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack))
        ):
            self.snd_wnd = wnd
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd and self.persist:
                self.persist = False
                self.persist_backoff = 0
                self.rtx_deadline = None
                # The probes' backoff says nothing about the path (Linux
                # clears it too): do not let it delay the next retransmission.
                self.rto.reset_backoff()
        st = self.state
        fin_acked = self.fin_seq is not None and seq_gt(self.snd_una, self.fin_seq)
        if fin_acked:
            if st is _FIN_WAIT_1:
                self.state = _FIN_WAIT_2
                if self.app_closed:
                    self.close_deadline = now + self.settings.fin_timeout
            elif st is _CLOSING:
                self._enter_time_wait(now)
            elif st is _LAST_ACK:
                self._enter_closed()
                return False
        return True

    def _on_new_ack(self, ack: int, now: float) -> None:
        acked = seq_diff(ack, self.snd_una)
        n_data = seq_diff(ack, self.sndbuf_seq)
        if n_data > 0:
            n_data = min(n_data, len(self.sndbuf))
            del self.sndbuf[:n_data]
            self.sndbuf_seq = (self.sndbuf_seq + n_data) & MASK
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        if self.scoreboard:
            self.scoreboard.advance(ack)
        if self.rtt_seq is not None and seq_gt(ack, self.rtt_seq):
            self.rto.sample(now - self.rtt_time)
            self.rtt_seq = None
        self.retries = 0
        mss = self.mss
        if self.recover is not None:
            if seq_ge(ack, self.recover):  # full ACK: leave fast recovery
                self.cwnd = self.ssthresh
                self.recover = None
            else:  # partial ACK (RFC 6582 3.2 step 3)
                self._retransmit_head(now)
                self._retransmit_next_hole(now)
                self.cwnd = max(mss, self.cwnd - acked + mss)
        elif self.cwnd < self.ssthresh:
            self.cwnd += min(acked, 2 * mss)  # slow start with ABC (RFC 3465)
        else:
            self.cwnd += max(1, mss * mss // self.cwnd)
        self.dupacks = 0
        if ack == self.snd_max:
            self.rtx_deadline = None
        else:
            self.rtx_deadline = now + self.rto.rto  # RFC 6298 5.3

    def _rtt_from_timestamp(self, tsecr: int) -> None:
        """RTTM (RFC 7323 4): the echoed timestamp dates the acked segment."""
        rtt_ms = (self._tsval() - tsecr) & MASK
        if rtt_ms < 1_000_000:  # ignore echoes that are not ours
            self.rto.sample(rtt_ms / 1000)
            self.rtt_seq = None  # one source of samples at a time

    def _on_dupack(self, now: float) -> None:
        self.dupacks += 1
        # RFC 6675 5(a): enter recovery on DupThresh duplicate ACKs, or once
        # more than (DupThresh - 1) * SMSS bytes above SND.UNA were SACKed.
        sacked = self.scoreboard.sacked_bytes(self.snd_una) if self.scoreboard else 0
        lost = (
            self.dupacks >= DUPACK_THRESHOLD
            or sacked > (DUPACK_THRESHOLD - 1) * self.mss
        )
        if lost and self.recover is None:
            flight = self.bytes_in_flight()
            self.ssthresh = max(flight // 2, 2 * self.mss)  # RFC 5681 (4)
            self.recover = self.snd_max
            self.rexmit_high = self.snd_una  # a new recovery resends from here
            self._retransmit_head(now)
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss
        elif self.recover is not None:
            self.cwnd += self.mss
            # With SACK, each further duplicate ACK lets one more presumed-lost
            # hole go out at once (RFC 6675 NextSeg rule 1), not one per RTT.
            self._retransmit_next_hole(now)

    def _on_rst(self) -> None:
        st = self.state
        if st is _SYN_RECEIVED and self.passive:
            self._enter_closed()  # back to LISTEN: the listener simply forgets it
        elif st in (_CLOSING, _LAST_ACK):
            self._enter_closed()
        elif st is _SYN_RECEIVED:
            self._drop(errno.ECONNREFUSED, "connection refused by peer", rst=False)
        else:
            self._drop(errno.ECONNRESET, "connection reset by peer", rst=False)

    def _receive_text(self, seq: int, payload: bytes, now: float) -> None:
        """Step seven: deliver in order, queue out of order, trim to the window."""
        rcv_nxt = self.rcv_nxt
        offset = seq_diff(rcv_nxt, seq)
        if offset > 0:  # starts before RCV.NXT: drop what we already have
            payload = payload[offset:]
            seq = rcv_nxt
        room = seq_diff(self.rcv_adv, seq)
        if len(payload) > room:
            payload = payload[: max(0, room)]
        if not payload:
            # Nothing fits, e.g. a 1-byte zero-window probe (BSD, macOS,
            # Windows): ACK it with the current window (RFC 9293 3.10.7.4,
            # 3.8.6.1), or the sender may give up during a long zero window.
            self.ack_now = True
            return
        if seq != rcv_nxt:
            self.ooo.add(rcv_nxt, seq, payload)
            self._emit(ACK, self.snd_max)  # duplicate ACK tells the sender now
            return
        if not self.read_closed:
            self.rcvbuf += payload
        rcv_nxt = (rcv_nxt + len(payload)) & MASK
        if self.ooo.size:
            more = self.ooo.pop_ready(rcv_nxt)
            if more:
                if not self.read_closed:
                    self.rcvbuf += more
                rcv_nxt = (rcv_nxt + len(more)) & MASK
            self.ack_now = True  # a hole was filled: ACK at once (RFC 5681 4.2)
        self.rcv_nxt = rcv_nxt
        if self.ooo.fin_seq == rcv_nxt and not self.fin_received:
            self._on_fin(now)
            return
        # Delayed ACK: at least every second segment (RFC 1122 4.2.3.2).
        self.segs_unacked += 1
        if self.segs_unacked >= 2:
            self.ack_now = True
        elif self.delack_deadline is None:
            self.delack_deadline = now + self.settings.delack

    def _on_fin(self, now: float) -> None:
        """Step eight."""
        if self.fin_received:
            self._emit(ACK, self.snd_max)
            return
        self.fin_received = True
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self.ooo.clear()
        st = self.state
        if st in (_SYN_RECEIVED, _ESTABLISHED):
            self.state = _CLOSE_WAIT
            # Delay the ACK briefly so it can merge with our own FIN.
            if self.delack_deadline is None:
                self.delack_deadline = now + self.settings.delack
        elif st is _FIN_WAIT_1:
            self.state = _CLOSING  # simultaneous close
            self._emit(ACK, self.snd_max)
        elif st is _FIN_WAIT_2:
            self._enter_time_wait(now)
            self._emit(ACK, self.snd_max)

    def _enter_time_wait(self, now: float) -> None:
        self.state = _TIME_WAIT
        self.rtx_deadline = self.delack_deadline = self.ka_deadline = None
        self.persist = False
        self.close_deadline = now + 2 * self.settings.msl
        self.sndbuf.clear()

    def _enter_closed(self) -> None:
        # netstat -s semantics: EstabResets counts ESTABLISHED/CLOSE_WAIT ->
        # CLOSED directly; AttemptFails counts failed handshakes.
        if self.state in (_ESTABLISHED, _CLOSE_WAIT):
            self.counters["EstabResets"] += 1
        elif self.state in (_SYN_SENT, _SYN_RECEIVED):
            self.counters["AttemptFails"] += 1
        self.state = _CLOSED
        self.rtx_deadline = self.delack_deadline = self.ka_deadline = None
        self.close_deadline = None
        self.persist = False
        self.sndbuf.clear()
        self.ooo.clear()
        self.deadline = None

    def _drop(self, code: int, why: str, rst: bool = False) -> None:
        if rst:
            self._emit(RST | ACK, self.snd_max)
        self.error = os_error(code, why)
        self.rcvbuf.clear()
        self._enter_closed()

    # ------------------------------------------------------------------
    # Timers

    def on_timer(self, now: float) -> None:
        """Run every timer whose deadline has passed, then send what is due."""
        self.clock = now
        if self.close_deadline is not None and now >= self.close_deadline:
            self.close_deadline = None
            if self.state is _TIME_WAIT:
                self._enter_closed()
                return
            if self.state is _FIN_WAIT_2 and self.app_closed:
                self.abort(now)  # orphan outlived tcp_fin_timeout
                return
        if self.rtx_deadline is not None and now >= self.rtx_deadline:
            self._on_rtx_timeout(now)
            if self.state is _CLOSED:
                return
        if self.delack_deadline is not None and now >= self.delack_deadline:
            self.ack_now = True
        if self.ka_deadline is not None and now >= self.ka_deadline:
            self._on_keepalive_timeout(now)
            if self.state is _CLOSED:
                return
        self.flush(now)

    def _on_rtx_timeout(self, now: float) -> None:
        self.rtx_deadline = None
        if self.persist:
            # Like Linux, give up after as many unanswered probes as retries.
            limit = (
                self.settings.orphan_retries
                if self.app_closed
                else (self.settings.retries2)
            )
            if self.persist_probes >= limit or self._orphan_probes_exhausted():
                self.counters["TCPAbortOnTimeout"] += 1
                self._drop(errno.ETIMEDOUT, "peer's window stayed shut", rst=True)
                return
            self.persist_probes += 1
            self.persist_backoff += 1
            self.counters["TCPWinProbe"] += 1
            # Zero-window probe: an old byte forces the peer to report its window.
            self._emit(ACK, (self.snd_una - 1) & MASK)
            self.rto.backoff()
            self.rtx_deadline = now + self.rto.rto
            return
        st = self.state
        s = self.settings
        if st is _SYN_SENT:
            limit = s.syn_retries
        elif st is _SYN_RECEIVED:
            limit = s.synack_retries
        else:
            limit = s.orphan_retries if self.app_closed else s.retries2
        if self.retries >= limit:
            self._drop(errno.ETIMEDOUT, "connection timed out", rst=st not in _OPENING)
            return
        self.retries += 1
        self.counters["TCPTimeouts"] += 1
        self.rto.backoff()  # RFC 6298 5.5
        self.rtt_seq = None  # Karn: no samples from retransmitted segments
        if st in (_SYN_SENT, _SYN_RECEIVED):
            self.syn_retransmitted = True
            self.counters["RetransSegs"] += 1
            self._emit_syn(now)
        else:
            # RFC 5681 (4) and 3.1: collapse to one segment, resend from SND.UNA.
            self.ssthresh = max(self.bytes_in_flight() // 2, 2 * self.mss)
            self.cwnd = self.mss
            self.recover = None
            self.dupacks = 0
            self.snd_nxt = self.snd_una
            self.scoreboard.clear()  # RFC 2018 8: the receiver may have reneged
            if self.snd_wnd == 0:
                # The peer shrank its window to zero with data outstanding:
                # probe it like any zero window (RFC 9293 3.8.6.1), do not
                # burn retries on retransmissions the window forbids.
                self.persist = True
        self.rtx_deadline = now + self.rto.rto

    def _orphan_probes_exhausted(self) -> bool:
        """Linux tcp_probe_timer: a peer that answers every probe but keeps
        its window shut would pin an orphan's send buffer forever, so an
        orphan is aborted once its probe backoff saturates (RTO at rto_max)
        after orphan_retries probes, answered or not (sockstress)."""
        return (
            self.app_closed
            and self.persist_backoff >= self.settings.orphan_retries
            and self.rto.rto >= self.settings.rto_max
        )

    def _on_keepalive_timeout(self, now: float) -> None:
        self.ka_deadline = None
        if not self.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        if self.snd_una != self.snd_max or self.sndbuf:
            self.ka_deadline = now + self.ka_idle  # data in flight: RTO covers it
            return
        if self.ka_probes >= self.ka_cnt:
            self._drop(errno.ETIMEDOUT, "keepalive: peer stopped answering", rst=True)
            return
        # RFC 1122 4.2.3.6: probe with SEG.SEQ = SND.NXT - 1 and no data.
        self.counters["TCPKeepAlive"] += 1
        self._emit(ACK, (self.snd_max - 1) & MASK)
        self.ka_probes += 1
        self.ka_deadline = now + self.ka_intvl

    def _update_deadline(self) -> None:
        best: float | None = None
        for d in (
            self.rtx_deadline,
            self.close_deadline,
            self.delack_deadline,
            self.ka_deadline,
        ):
            if d is not None and (best is None or d < best):
                best = d
        self.deadline = best

    def _arm_rtx(self, now: float) -> None:
        if self.rtx_deadline is None:
            self.rtx_deadline = now + self.rto.rto

    # ------------------------------------------------------------------
    # Output

    def flush(self, now: float) -> None:
        """Send queued data, our FIN and any owed ACK (RFC 9293 3.10.2, 5681)."""
        self.clock = now
        if self.state in _OUTPUT_STATES:
            self._output_data(now)
        if self.ack_now and self.state is not _CLOSED:
            self._emit(ACK, self.snd_max)
        self._update_deadline()

    def _output_data(self, now: float) -> None:
        mss = self.mss
        # Largest segment to hand the link: one MSS, or many with offload.
        seg_max = max(mss, self.tso_limit // mss * mss)
        sndbuf = self.sndbuf
        end_data = (self.sndbuf_seq + len(sndbuf)) & MASK
        fin_seq = self.fin_seq
        while True:
            unsent = seq_diff(end_data, self.snd_nxt)
            if unsent <= 0:
                break
            flight = seq_diff(self.snd_nxt, self.snd_una)
            usable = min(self.snd_wnd, self.cwnd) - flight
            n = unsent if unsent < mss else mss
            if usable < n:
                # Sender silly-window avoidance (RFC 1122 4.2.3.4).
                if usable <= 0 or (flight > 0 and usable < self.max_snd_wnd // 2):
                    break
                n = usable
            elif n < mss and flight > 0 and not self.nodelay and fin_seq is None:
                break  # Nagle (RFC 896): one small segment in flight at a time
            elif n == mss and seg_max > mss:
                n = min(unsent, usable, seg_max)  # offload: many MSS in one
            offset = seq_diff(self.snd_nxt, self.sndbuf_seq)
            payload = bytes(memoryview(sndbuf)[offset : offset + n])
            flags = ACK | PSH if offset + n == len(sndbuf) else ACK
            seq = self.snd_nxt
            nxt = (seq + n) & MASK
            if fin_seq is not None and nxt == fin_seq:
                flags |= FIN  # FIN rides on the last data segment
                nxt = (nxt + 1) & MASK
            self._emit(flags, seq, payload)
            if seq_lt(seq, self.snd_max):
                self.counters["RetransSegs"] += 1
            elif self.rtt_seq is None:
                self.rtt_seq, self.rtt_time = seq, now
            self.snd_nxt = nxt
            if seq_gt(nxt, self.snd_max):
                self.snd_max = nxt
            if self.rtx_deadline is None or self.persist:
                self.persist = False
                self.rtx_deadline = now + self.rto.rto
        if fin_seq is not None and self.snd_nxt == fin_seq:
            self._emit(FIN | ACK, fin_seq)
            self.snd_nxt = (fin_seq + 1) & MASK
            if seq_gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt
            else:
                self.counters["RetransSegs"] += 1
            if self.rtx_deadline is None:
                self.rtx_deadline = now + self.rto.rto
        elif (
            self.snd_wnd == 0
            and self.snd_una == self.snd_max
            and seq_gt(end_data, self.snd_nxt)
            and self.rtx_deadline is None
        ):
            self.persist = True  # zero window: start probing (RFC 9293 3.8.6.1)
            self.rtx_deadline = now + self.rto.rto

    def _retransmit_head(self, now: float) -> None:
        """Resend the first unacknowledged segment (fast retransmit, RFC 5681)."""
        una = self.snd_una
        offset = seq_diff(una, self.sndbuf_seq)
        if offset < 0:
            return
        n = min(self.mss, seq_diff(self.snd_max, una), len(self.sndbuf) - offset)
        payload = bytes(memoryview(self.sndbuf)[offset : offset + max(n, 0)])
        flags = ACK
        end = (una + len(payload)) & MASK
        if (
            self.fin_seq is not None
            and end == self.fin_seq
            and seq_gt(self.snd_max, self.fin_seq)
        ):
            flags |= FIN
        if payload or flags & FIN:
            self.counters["RetransSegs"] += 1
            self._emit(flags, una, payload)
        if seq_gt(end, self.rexmit_high):
            self.rexmit_high = end
        self.rtt_seq = None  # Karn's rule
        self.rtx_deadline = now + self.rto.rto

    def _retransmit_next_hole(self, now: float) -> None:
        """Resend the next SACK hole above what recovery already resent."""
        if not self.scoreboard:
            return
        start = self.rexmit_high
        if seq_lt(start, self.snd_una):
            start = self.snd_una
        hole = self.scoreboard.next_hole(start, self.snd_una)
        if hole is None:
            return
        seq, length = hole
        offset = seq_diff(seq, self.sndbuf_seq)
        n = min(self.mss, length, len(self.sndbuf) - offset)
        if offset < 0 or n <= 0:
            return
        self.counters["RetransSegs"] += 1
        self.counters["TCPSackRecovery"] += 1
        self._emit(ACK, seq, bytes(memoryview(self.sndbuf)[offset : offset + n]))
        self.rexmit_high = (seq + n) & MASK
        self.rtt_seq = None

    def _sws_threshold(self) -> int:
        return min(self.rcv_buf_size // 2, self.mss_local)

    def _emit(self, flags: int, seq: int, payload: bytes = b"") -> None:
        """Queue one segment; any ACK we send settles owed and delayed ACKs.

        Segments without data carry SEQ = SND.MAX (as BSD does), never a
        SND.NXT rewound by a timeout: the peer's RCV.NXT may already be past
        the rewound value, and it would drop such an ACK as out of window.
        """
        if flags & RST:
            self.counters["OutRsts"] += 1
        if flags & ACK:
            ack_no = self.rcv_nxt
            # Receiver window, never shrinking the right edge (RFC 9293 3.8.6.2.2).
            offered = seq_diff(self.rcv_adv, self.rcv_nxt)
            free = self.rcv_buf_size - len(self.rcvbuf)
            wnd = free if free - offered >= self._sws_threshold() else offered
            if wnd < 0:
                wnd = 0
            field = self._window_field(wnd)
            edge = (ack_no + (field << self.rcv_wscale)) & MASK
            if seq_gt(edge, self.rcv_adv):
                self.rcv_adv = edge
            self.ack_now = False
            self.segs_unacked = 0
            self.delack_deadline = None
            self.last_ack_sent = ack_no
        else:
            ack_no = 0
            field = 0
        segment = TcpSegment(
            self.local_port, self.remote_port, seq, ack_no, flags, field, payload
        )
        if self.ts_ok and not flags & RST:
            segment.timestamp = (self._tsval(), self.ts_recent)
        if self.sack_ok and self.ooo.size and flags & ACK and not payload:
            # Only on segments without data, which have room for the option.
            # RFC 2018 3: room for 3 blocks beside timestamps, else 4.
            segment.sack_blocks = self.ooo.sack_blocks(
                self.rcv_nxt, 3 if self.ts_ok else 4
            )
        self.outbox.append(segment)


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST answering a segment that has no connection (RFC 9293 3.10.7.1)."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(
        seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & MASK, RST | ACK, 0
    )
