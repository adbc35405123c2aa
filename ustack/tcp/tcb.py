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
from ustack.counters import Counters
from ustack.errors import os_error
from ustack.tcp import cc as congestion
from ustack.tcp import ecn
from ustack.tcp.cc.base import INITIAL_SSTHRESH
from ustack.tcp.pacing import Pacer
from ustack.tcp.ratelimit import RateLimiter
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.recovery import CaState, LossRecovery
from ustack.tcp.rto import RtoEstimator
from ustack.tcp.rtxq import RetransmitQueue, Sent
from ustack.tcp.seq import HALF, MASK, seq_diff, seq_ge, seq_gt, seq_in, seq_le, seq_lt
from ustack.tcp.state import RECEIVING, State
from ustack.tcp.syncookie import decode_options as decode_cookie_options
from ustack.wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, TcpSegment

# RFC 9293 3.7.1: MSS assumed when the peer sends no MSS option.
DEFAULT_MSS = 536
# RFC 7323 2.3: the largest window shift.
MAX_WSCALE = 14
# RFC 6928: the initial window, in segments.
INITIAL_WINDOW = 10
# RFC 2018 3: SACK option bytes (with two NOPs) for n blocks is 4 + 8 n.
SACK_OPTION_BASE = 4
# NOP, NOP, kind 8, length 10 (RFC 7323 3.2, Appendix A layout).
TS_OPTION_LEN = 12
# RFC 7323 5.5: TS.Recent older than this is too stale for PAWS (24 days).
PAWS_IDLE = 24 * 24 * 3600.0

# What rtx_deadline stands for when the persist timer is not running:
# Linux's ICSK_TIME_RETRANS, ICSK_TIME_LOSS_PROBE, ICSK_TIME_REO_TIMEOUT.
RTX_RTO = 0
RTX_PTO = 1
RTX_REO = 2

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
_OPEN = CaState.OPEN
# A shared -inf: "never" costs no float per TCB.
_NEVER = -math.inf
# Until data is queued, the send and receive buffers are this one shared
# empty bytearray (the receive buffer is made by the first data and kept;
# the send buffer is dropped again once everything is acknowledged). Nothing
# may ever append to it; `clear()` and `del buf[:0]` on it are no-ops.
_EMPTY_BUF = bytearray()
# What `Tcb.ooo` shows while no out-of-order data is held.
_NO_OOO = Reassembly(0)
_KEEPALIVE_STATES = frozenset({_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2})
# A handshake that times out ends silently, as on Linux: after a SYN flood
# from spoofed sources, RSTs for the given-up SYN-ACKs would hit third parties.
_OPENING = frozenset({_SYN_SENT, _SYN_RECEIVED})
# States in which queued data (and our FIN) may still go out.
_OUTPUT_STATES = frozenset(
    {_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK}
)


class Tcb:
    # The output pass's shortcut when there is nothing to send
    # (`_output_data`); tests turn it off to compare it with the full pass.
    fast_output = True

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
        "fin_received",
        "read_closed",
        "app_closed",
        "error",
        "soft_error",
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
        "una_off",
        "rtx_kind",
        "last_send",
        "dsack",
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
        # Side objects, created on first use (None until then) so that an
        # idle connection carries only the state it uses, as Linux and
        # smoltcp keep idle sockets small (docs/architecture.md "TCB layout").
        # A new optional per-connection mechanism adds ONE slot here.
        "_cc",  # congestion controller (cc/): with _rec, at the first send
        "_rec",  # LossRecovery (its queue, RACK, PRR): at the first send
        "_ooo",  # Reassembly: when out-of-order data arrives; dropped when empty
        "_challenge_limiter",  # RateLimiter: at the first challenge ACK
        "ecn_flags",  # RFC 3168 state: ustack.tcp.ecn's bits (a small int)
        "pacer",  # Pacer: made at the start when the sender paces (BBR)
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
        self.counters: Counter[str] = counters if counters is not None else Counters()
        self._challenge_limiter = challenge_limiter
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
        self.sndbuf = _EMPTY_BUF
        self.sndbuf_seq = (iss + 1) & MASK
        self.snd_buf_size = settings.snd_buf
        self.fin_seq: int | None = None  # sequence number of our FIN, once queued
        self.fin_pending = False  # FIN asked for before ESTABLISHED
        self.rcvbuf = _EMPTY_BUF
        self.rcv_buf_size = settings.rcv_buf
        self._ooo: Reassembly | None = None
        self.fin_received = False
        self.read_closed = False
        self.app_closed = False
        self.error: OSError | None = None
        # Last ICMP soft error (errno, 0 = none), reported if we time out
        # (Linux's sk_err_soft).
        self.soft_error = 0
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
        # Congestion control (cc/) and loss recovery (recovery.py), made by
        # _sender() when the first data or FIN goes out. They see stream
        # offsets: una_off is SND.UNA's distance from the ISS.
        self._cc: congestion.CongestionControl | None = None
        self._rec: LossRecovery | None = None
        self.una_off = 0
        self.rtx_kind = RTX_RTO  # what rtx_deadline is (when not persist)
        self.last_send = now  # when data last went out (restart after idle)
        self.dsack: tuple[int, int] | None = None  # D-SACK block owed (RFC 2883)
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
        self.last_oow_ack = _NEVER  # when we last ACKed an invalid segment
        self.owner: Any = None  # the stack's bookkeeping (listener, waiters)
        self.ecn_flags = 0  # RFC 3168 state: ustack.tcp.ecn's bits
        self.pacer: Pacer | None = None  # pacing state, when the sender paces
        self._init_pacing(self.settings.congestion)

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
        if ecn.server_accepts(self.settings.ecn, syn.flags, syn.ecn):
            self.ecn_flags = ecn.OK
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
        MSS from the cookie, and with timestamps window scaling, SACK and ECN
        from the low bits of the TSecr (syncookie.add_synack_options; Linux
        cookie_timestamp_decode, cookie_ecn_ok); without, all three are off.
        """
        self.clock = now
        self.passive = True
        self.irs = (ack.seq - 1) & MASK
        self.rcv_nxt = self.last_ack_sent = ack.seq
        self.rcv_adv = (ack.seq + min(self.rcv_buf_size, 0xFFFF)) & MASK
        self.iss = (ack.ack - 1) & MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.sndbuf_seq = ack.ack
        self.una_off = 1
        ts = ack.timestamp if self.settings.timestamps else None
        opts = decode_cookie_options(ts[1]) if ts is not None else None
        # The SYN as the cookie remembers it, for the usual option rules.
        syn = TcpSegment(self.remote_port, self.local_port, self.irs, 0, SYN, 0,
                         mss=mss)
        if opts is not None and ts is not None:
            syn.timestamp = (ts[0], 0)
            syn.wscale, syn.sack_permitted = opts.wscale, opts.sack
            if opts.ecn and self.settings.ecn:
                self.ecn_flags = ecn.OK
        self._take_syn_timestamp(syn, now)
        self._take_syn_sack(syn)
        self._take_syn_options(syn, offered_wscale=syn.wscale is not None)
        self.snd_wnd = self.max_snd_wnd = ack.window << self.snd_wscale
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
        self._init_cc()
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
        if self._rec is not None:
            self._rec.sack_ok = self.sack_ok

    def _take_syn_timestamp(self, syn: TcpSegment, now: float) -> None:
        """RFC 7323 3.2: timestamps are on only if both SYNs carry them."""
        if self._timestamps_agreed(syn) and syn.timestamp is not None:
            self.ts_ok = True
            self.ts_recent = syn.timestamp[0]
            self.ts_recent_age = now

    def _tsval(self) -> int:
        return (int(self.clock * 1000) + self.ts_offset) & MASK  # 1 ms ticks

    def _init_cc(self) -> None:
        """The MSS is known: size the initial window (RFC 6928). A
        controller made later starts from the same window (`cc`)."""
        cc = self._cc
        if cc is not None:
            cc.set_mss(self.mss)
            cc.cwnd = cc.prior_cwnd = INITIAL_WINDOW * self.mss

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: switch algorithm, keeping the current window."""
        old = self._cc
        if name == (old.name if old is not None else self.settings.congestion):
            return
        cwnd = old.cwnd if old is not None else INITIAL_WINDOW * self.mss
        new = congestion.create(name, self.mss, cwnd)
        if old is not None:
            new.ssthresh = old.ssthresh
        self._cc = new
        if self._rec is not None:
            self._rec.cc = new
        self._init_pacing(name)

    def _init_pacing(self, algorithm: str) -> None:
        """`pacing` setting: "auto" paces for controllers that ask for it
        (BBR: Linux's SK_PACING_NEEDED), "on" for every one, "off" never.
        Decided from the algorithm's class, so the controller itself can
        still be made on first use."""
        mode = self.settings.pacing
        wanted = mode == "on" or (
            mode == "auto" and congestion.ALGORITHMS[algorithm].model_based
        )
        if not wanted:
            self.pacer = None
        elif self.pacer is None:
            self.pacer = Pacer()

    # ------------------------------------------------------------------
    # Side objects made on first use (see __slots__)

    @property
    def cc(self) -> congestion.CongestionControl:
        """The congestion controller, made on first use with the initial
        window of the current MSS (RFC 6928), as the handshake sized it."""
        cc = self._cc
        if cc is None:
            cc = self._cc = congestion.create(
                self.settings.congestion, self.mss, INITIAL_WINDOW * self.mss
            )
        return cc

    @property
    def rec(self) -> LossRecovery:
        """Loss recovery (and the congestion controller it drives), made when
        the first data or FIN is sent: until then nothing is in flight."""
        rec = self._rec
        if rec is None:
            rec = self._rec = LossRecovery(
                self.cc, self.counters, self.sack_ok, frto=self.settings.frto
            )
            # Offset 1 is ISS + 1: nothing but the SYN was sent before this.
            rec.reset(max(self.una_off, 1))
        return rec

    @property
    def ooo(self) -> Reassembly:
        """The out-of-order queue, or a shared empty one (read-only!) while
        no out-of-order data is held."""
        q = self._ooo
        return q if q is not None else _NO_OOO

    def _ooo_queue(self) -> Reassembly:
        q = self._ooo
        if q is None:
            q = self._ooo = Reassembly(self.settings.ooo_max_bytes, self.counters)
        return q

    @property
    def challenge_limiter(self) -> RateLimiter:
        limiter = self._challenge_limiter
        if limiter is None:
            limiter = self._challenge_limiter = RateLimiter(
                self.settings.challenge_ack_limit
            )
        return limiter

    @property
    def cc_if_made(self) -> congestion.CongestionControl | None:
        """The congestion controller if it exists yet (observers use this,
        so that looking at an idle connection does not grow it)."""
        return self._cc

    @property
    def congestion_name(self) -> str:
        """The congestion control algorithm's name (made or not yet)."""
        cc = self._cc
        if cc is not None:
            return cc.name
        return congestion.ALGORITHMS[self.settings.congestion].name

    @property
    def ca_state(self) -> CaState:
        """Linux's tcp_ca_state (OPEN until loss recovery exists)."""
        rec = self._rec
        return rec.state if rec is not None else CaState.OPEN

    # cwnd and ssthresh belong to the congestion controller.
    @property
    def cwnd(self) -> int:
        cc = self._cc
        return cc.cwnd if cc is not None else INITIAL_WINDOW * self.mss

    @cwnd.setter
    def cwnd(self, value: int) -> None:
        self.cc.cwnd = value

    @property
    def ssthresh(self) -> int:
        cc = self._cc
        return cc.ssthresh if cc is not None else INITIAL_SSTHRESH

    @ssthresh.setter
    def ssthresh(self, value: int) -> None:
        self.cc.ssthresh = value

    @property
    def recover(self) -> int | None:
        """The recovery point while in fast recovery or loss recovery."""
        rec = self._rec
        if rec is None or rec.state is CaState.OPEN:
            return None
        return (self.iss + rec.high_seq) & MASK

    def _off(self, seq: int) -> int:
        """A sequence number near the send window as a stream offset."""
        return self.una_off + seq_diff(seq, self.snd_una)

    def _emit_syn(self, now: float) -> None:
        flags = SYN | ACK if self.state is _SYN_RECEIVED else SYN
        if flags & ACK:
            if self.ecn_flags:
                flags |= ECE  # RFC 3168 6.1.1: the ECN-setup SYN-ACK
        elif self.settings.ecn == 1 and not self.syn_retransmitted:
            # Linux tcp_ecn_send_syn (tcp_ecn=1): an ECN-setup SYN. Resent
            # SYNs go without, in case a middlebox drops ECN SYNs (RFC 3168
            # 6.1.1.1; Linux tcp_ecn_clear_syn with tcp_ecn_fallback), but
            # a SYN-ACK with ECE (to the first SYN) still turns ECN on.
            flags |= ecn.SETUP_SYN
            self.ecn_flags = ecn.OK
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
        buf = self.sndbuf
        if buf:
            buf += data
        else:  # never append to the shared empty buffer
            self.sndbuf = bytearray(data)
        return len(data)

    def send_space(self) -> int:
        return max(0, self.snd_buf_size - len(self.sndbuf))

    def read(self, max_bytes: int) -> bytes:
        """Take up to max_bytes of in-order received data."""
        buf = self.rcvbuf
        if len(buf) <= max_bytes:
            data = bytes(buf)
            # Keep the buffer once made: the allocator reuses its memory
            # (swapping in a new one per read cost page faults in bulk).
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        st = self.state
        # `is` first: an enum's hash is a Python-level call (per read).
        if data and (st is _ESTABLISHED or st in RECEIVING):
            # Window update once the window has grown enough (RFC 1122 4.2.3.3);
            # seq_diff and _sws_threshold inlined (per read).
            offered = (self.rcv_adv - self.rcv_nxt) & MASK
            if offered & HALF:
                offered -= 1 << 32
            rcv_buf_size = self.rcv_buf_size
            free = rcv_buf_size - len(buf)
            sws = rcv_buf_size // 2
            mss = self.mss_local
            if free - offered >= (sws if sws < mss else mss) and free >= 2 * offered:
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
    # ICMP errors about our segments (RFC 1122 4.2.3.9, RFC 5927, RFC 1191)

    def icmp_acceptable(self, seq: int) -> bool:
        """RFC 5927 4.1: believe an ICMP error only if the segment it quotes
        could be in flight (SND.UNA <= SEG.SEQ <= SND.MAX), as Linux does."""
        if self.state in (_CLOSED, _TIME_WAIT) or not seq_in(
            seq, self.snd_una, (self.snd_max + 1) & MASK
        ):
            self.counters["OutOfWindowIcmps"] += 1
            return False
        return True

    def on_icmp_error(self, code: int, hard: bool, now: float) -> None:
        """An unreachable/time exceeded/parameter problem about our segment.

        During the handshake it ends the attempt at once with `code` (Linux
        tcp_v4_err: EHOSTUNREACH, ENETUNREACH, ECONNREFUSED, ...). Once
        synchronized every error is soft (RFC 1122 4.2.3.9 allows giving up
        only on protocol/port unreachable; Linux does not): it is remembered
        and reported instead of ETIMEDOUT if the connection then times out.
        """
        self.clock = now
        if self.state in (_SYN_SENT, _SYN_RECEIVED):
            self._drop(code, "an ICMP error came back during the handshake")
        elif self.state is not _CLOSED:
            self.soft_error = code
        self._update_deadline()

    def on_path_mtu(self, mtu: int, now: float) -> None:
        """Fragmentation needed (RFC 1191 6.1): segments for a path MTU of
        `mtu`, never below min_pmtu; what is in flight is sent again at the
        new size, like Linux's tcp_simple_retransmit (cwnd untouched: this is
        not congestion)."""
        self.clock = now
        if self.state in (_CLOSED, _TIME_WAIT):
            return
        options = TS_OPTION_LEN if self.ts_ok else 0
        mtu = max(mtu, self.settings.min_pmtu)
        self.mss_local = min(self.mss_local, mtu - 40)
        mss = max(64, mtu - 40 - options)
        if mss >= self.mss:
            return
        cc = self.cc  # made now if need be, with the window of the old MSS
        self.mss = mss
        cc.set_mss(mss)
        self.counters["TCPPMTUReduced"] += 1
        if self.state in _OUTPUT_STATES and self.snd_max != self.snd_una:
            self.rec.on_mtu_reduced(mss)  # the big segments were dropped
            self.flush(now)
        self._update_deadline()

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
        # `now` may be the segment's arrival time (Stack._input_stamped),
        # before a timer or send this TCB already ran: ACK processing uses
        # it (RTT and delivery-rate clocks), the TSval clock never goes back.
        if now > self.clock:
            self.clock = now
        st = self.state
        if st is _ESTABLISHED and self._on_segment_predicted(seg, now):
            pass
        elif st is _SYN_SENT:
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
        if self.ecn_flags and not (
            ecn.synack_agrees(flags)
            if ack_ok
            else flags & ecn.SETUP_SYN == ecn.SETUP_SYN  # simultaneous open
        ):
            self.ecn_flags = 0  # Linux tcp_ecn_rcv_synack / tcp_ecn_rcv_syn
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
        self.una_off = 1
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

    def _on_segment_predicted(self, seg: TcpSegment, now: float) -> bool:
        """Header prediction (Van Jacobson; Linux tcp_rcv_established's fast
        path), in ESTABLISHED: the next in-order segment, flags ACK or
        ACK|PSH, no SACK blocks, a timestamp PAWS accepts, an ACK within
        [SND.UNA, SND.MAX], text that fits the offered window, nothing out of
        order held and no FIN of ours queued. Such a segment passes the
        checks of RFC 9293 3.10.7.4 steps one to five whatever they are, so
        they are skipped; what it changes is what the slow path
        (_on_segment_synchronized) would change. False, with nothing
        changed, for any other segment."""
        seq = seg.seq
        rcv_nxt = self.rcv_nxt
        if (
            seq != rcv_nxt
            or seg.flags | PSH != ACK | PSH
            or seg.sack_blocks
            or self._ooo is not None
            or self.fin_seq is not None
        ):
            return False
        ts = seg.timestamp if self.ts_ok else None
        if ts is not None:
            tsval = ts[0]
            ts_recent = self.ts_recent
            if tsval != ts_recent and (tsval - ts_recent) & MASK >= HALF:
                return False  # older than TS.Recent: PAWS decides (slow path)
        ack = seg.ack
        una = self.snd_una
        if (ack - una) & MASK > (self.snd_max - una) & MASK:
            return False  # acknowledges nothing sent, or is old
        payload = seg.payload
        n = len(payload)
        if n:
            room = (self.rcv_adv - rcv_nxt) & MASK
            if self.app_closed or room & HALF or n > room:
                return False
        # Step five (_process_ack), for an ACK that is in range.
        if self.keepalive:
            self.ka_probes = 0
            self.ka_deadline = now + self.ka_idle
        self.persist_probes = 0
        self.soft_error = 0
        wnd = seg.window << self.snd_wscale
        if una != self.snd_max:
            rec = self._rec
            if (
                ack != una
                and rec is not None
                and rec.state is _OPEN
                and rec.tlp_high is None
                and rec.fast_ack
                and rec.cc.sampler is None
            ):
                q = rec.queue
                if not (q.sacked or q.lost or q.retrans_out or rec.reno_sacked):
                    self._predicted_ack(rec, ack, ts, now)
                else:
                    self._sender_ack(seg, wnd, True, now)
            else:
                self._sender_ack(seg, wnd, ack != una, now)
        # _update_send_window, inlined (per segment): the SND.WL1/WL2 rule.
        wl1 = self.snd_wl1
        if wl1 != seq:
            update = (wl1 - seq) & MASK >= HALF  # SND.WL1 < SEG.SEQ
        else:
            wl2 = self.snd_wl2
            update = wl2 == ack or (wl2 - ack) & MASK >= HALF  # SND.WL2 <= SEG.ACK
        if update:
            self.snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd and self.persist:
                self.persist = False
                self.persist_backoff = 0
                self.rtx_deadline = None
                self.rto.reset_backoff()
        if ts is not None:
            # _note_ts_recent, inlined: TSval is not older than TS.Recent
            # (checked above), so only SEG.SEQ <= Last.ACK.sent is left.
            las = self.last_ack_sent
            if seq == las or (seq - las) & MASK >= HALF:
                self.ts_recent = ts[0]
                self.ts_recent_age = now
        if not n:
            self.counters["TCPHPAcks"] += 1  # Linux's names (nstat)
            return True
        self.counters["TCPHPHits"] += 1
        # Step seven, in order and in window: _receive_text's common case.
        if self.ecn_flags:
            self._ecn_receive(seg.flags, seg.ecn)
        if not self.read_closed:
            buf = self.rcvbuf  # _deliver, inlined
            if buf is not _EMPTY_BUF:
                buf += payload
            else:  # never append to the shared empty buffer
                self.rcvbuf = bytearray(payload)
        self.rcv_nxt = (rcv_nxt + n) & MASK
        self.segs_unacked += 1
        if self.segs_unacked >= 2:
            self.ack_now = True
        elif self.delack_deadline is None:
            self.delack_deadline = now + self.settings.delack
        return True

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
            self._on_paws_failed(seg, ts[0], now)
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
                if payload and self.sack_ok:
                    self._note_duplicate(seq, (seq + len(payload)) & MASK)
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
        if ts is not None:
            self._note_ts_recent(seq, ts[0], now)
        # Seventh: segment text.
        if payload and self.state in RECEIVING:
            if self.app_closed:
                # Nobody will read it: reset, as Linux does.
                self.counters["TCPAbortOnData"] += 1
                self.abort(now)
                return
            if self.ecn_flags:
                self._ecn_receive(flags, seg.ecn)
            self._receive_text(seq, payload, now)
        # Eighth: FIN.
        if flags & FIN:
            fin_at = (seq + len(payload)) & MASK
            if fin_at == self.rcv_nxt:
                self._on_fin(now)
            elif seq_gt(fin_at, self.rcv_nxt):
                self._ooo_queue().fin_seq = fin_at

    def _on_paws_failed(self, seg: TcpSegment, tsval: int, now: float) -> None:
        """A segment older than TS.Recent, as Linux's tcp_validate_incoming:
        a disordered duplicate ACK is still used, an old pure ACK is dropped
        silently, anything else is dropped and answered."""
        if self._disordered_ack(seg, tsval):
            self.counters["PAWSDisorderedAck"] += 1
            self._on_disordered_ack(seg, now)
            return
        if (
            seg.flags & (ACK | SYN | FIN) == ACK
            and not seg.payload
            and seq_lt(seg.seq, self.rcv_nxt)
        ):
            # An ACK overtaken by later segments is common (Linux >= 6.14,
            # TCP_RFC7323_PAWS_ACK): no PAWSEstab and no duplicate ACK for it.
            self.counters["PAWSOldAck"] += 1
            return
        self.counters["PAWSEstab"] += 1
        if seg.payload:
            self._emit(ACK, self.snd_max)
        else:  # rate-limited, or a blind 1:1 reflector (Linux: same)
            self._rate_limited_ack(now, "TCPACKSkippedPAWS")

    def _disordered_ack(self, seg: TcpSegment, tsval: int) -> bool:
        """Linux tcp_disordered_ack_check: PAWS would drop a duplicate ACK
        that a reordering path delivered after a newer one, and with it the
        SACK blocks it carries. Accept a pure ACK at RCV.NXT that acknowledges
        nothing new (SEG.ACK = SND.UNA), would not update the send window
        (tcp_may_update_window) and is at most about one RTO older than
        TS.Recent (tcp_tsval_replay: RTO at a peer clock of up to 1200 Hz)."""
        seq = seg.seq
        if (
            seg.flags & (ACK | SYN | FIN) != ACK
            or seg.payload
            or seq != self.rcv_nxt
            or seg.ack != self.snd_una
            or self.state is _SYN_RECEIVED
        ):
            return False
        wnd = seg.window << self.snd_wscale
        wl1 = self.snd_wl1
        if seq_gt(seq, wl1) or (seq == wl1 and (wnd > self.snd_wnd or not wnd)):
            return False  # it would update the window: not a duplicate
        return seq_diff(self.ts_recent, tsval) <= int(self.rto.rto * 1200)

    def _on_disordered_ack(self, seg: TcpSegment, now: float) -> None:
        """Step five for a disordered duplicate ACK: its SACK blocks (and
        ECE) reach loss recovery; it moves neither SND.UNA nor the send
        window, and TS.Recent stays (RFC 7323 5.3 R3 takes no older TSval;
        Linux tcp_replace_ts_recent)."""
        if self.keepalive:
            self.ka_probes = 0
            self.ka_deadline = now + self.ka_idle
        self.persist_probes = 0
        self.soft_error = 0
        if self.snd_una != self.snd_max:
            self._sender_ack(seg, self.snd_wnd, False, now)

    def _note_ts_recent(self, seq: int, tsval: int, now: float) -> None:
        """RFC 7323 5.3 R3 (and 4.3): TS.Recent from a segment that starts
        at or before Last.ACK.sent, when its TSval is not older."""
        if seq_le(seq, self.last_ack_sent) and seq_ge(tsval, self.ts_recent):
            self.ts_recent = tsval
            self.ts_recent_age = now

    def _ecn_receive(self, flags: int, codepoint: int) -> None:
        """RFC 3168 6.1.3 for a data segment: CWR ends our ECE echo (Linux
        tcp_ecn_accept_cwr), then a CE mark starts it again (tcp_ecn_check_ce;
        a CWR segment that is itself CE-marked echoes again). Like Linux, a
        CWR or a new CE mark gets an immediate ACK (the sender's window may be
        small), and so does a non-ECT segment after ECT ones (a retransmission)."""
        ef = self.ecn_flags
        if flags & CWR:
            ef &= ~ecn.DEMAND_CWR
            self.ack_now = True
        if codepoint == ecn.CE:
            if not ef & ecn.DEMAND_CWR:
                self.ack_now = True
            ef |= ecn.DEMAND_CWR | ecn.SEEN
        elif codepoint:
            ef |= ecn.SEEN
        elif ef & ecn.SEEN:
            self.ack_now = True
        self.ecn_flags = ef

    def _note_duplicate(self, left: int, right: int) -> None:
        """RFC 2883: report data received twice in the next ACK's first SACK
        block, so the sender can tell a spurious retransmission (undo) from
        a loss. Only for data at most one window old (Linux tcp_dsack_set)."""
        if seq_gt(right, self.rcv_nxt):
            right = self.rcv_nxt
        if seq_lt(left, right) and seq_diff(self.rcv_nxt, left) <= self.rcv_buf_size:
            self.dsack = (left, right)
            self.counters["TCPDSACKOldSent"] += 1

    def _note_ofo_duplicate(self, dup: tuple[int, int]) -> None:
        """RFC 2883 4.1.3, 4.2: data received twice above RCV.NXT (or queued
        there and received again in order): its first duplicate part goes
        in the next ACK's first SACK block, before the block that holds it
        (Linux tcp_data_queue_ofo -> tcp_dsack_set, TCPDSACKOfoSent)."""
        self.dsack = dup
        self.counters["TCPDSACKOfoSent"] += 1

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
        self.soft_error = 0  # something got through (Linux clears sk_err_soft)
        wnd = seg.window << self.snd_wscale
        advanced = seq_gt(ack, una)
        if una != self.snd_max:
            self._sender_ack(seg, wnd, advanced, now)
        if seq_ge(ack, una):
            self._update_send_window(seg.seq, ack, wnd)
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

    def _update_send_window(self, seq: int, ack: int, wnd: int) -> None:
        """Send window update (RFC 9293 3.10.7.4, SND.WL1/WL2 rule), for an
        ACK at or above the SND.UNA it arrived with."""
        wl1 = self.snd_wl1
        # seq_le(SND.WL2, SEG.ACK) / seq_lt(SND.WL1, SEG.SEQ), inlined (per ACK).
        if wl1 == seq:
            wl2 = self.snd_wl2
            if wl2 != ack and (wl2 - ack) & MASK < HALF:
                return
        elif (wl1 - seq) & MASK < HALF:
            return
        self.snd_wnd = wnd
        self.snd_wl1, self.snd_wl2 = seq, ack
        if wnd > self.max_snd_wnd:
            self.max_snd_wnd = wnd
        if wnd and self.persist:
            self.persist = False
            self.persist_backoff = 0
            self.rtx_deadline = None
            # The probes' backoff says nothing about the path (Linux
            # clears it too): do not let it delay the next retransmission.
            self.rto.reset_backoff()

    def _sender_ack(
        self, seg: TcpSegment, wnd: int, advanced: bool, now: float
    ) -> None:
        """Hand an ACK for outstanding data to loss recovery (recovery.py).

        Per ACK: seq_diff, bytes_in_flight and the SACK conversion are
        inlined or skipped when they cannot matter (no blocks, no ECN)."""
        rec = self._rec or self.rec
        ack = seg.ack
        d = (ack - self.snd_una) & MASK
        ack_off = self.una_off + (d - (1 << 32) if d & HALF else d)  # _off(ack)
        blocks: list[tuple[int, int]] = []
        dsack: tuple[int, int] | None = None
        if seg.sack_blocks and self.sack_ok:
            dsack = self._sack_spans(seg.sack_blocks, ack_off, rec.queue.nxt, blocks)
        # RFC 5681 2: a duplicate ACK carries no data and no window change.
        is_dupack = (
            not advanced
            and not seg.payload
            and not seg.flags & (FIN | SYN)
            and wnd == self.snd_wnd
        )
        ts = seg.timestamp
        tsecr = ts[1] if ts is not None and self.ts_ok else None
        rto = self.rto
        ef = self.ecn_flags
        prior_state, prior_high, prior_tlp = rec.state, rec.high_seq, rec.tlp_reductions
        # RFC 3168 6.1.2: ECE on an ACK (never the SYN-ACK's) asks for a
        # reduction, once per window (Linux tcp_ecn_rcv_ecn_echo).
        ece = bool(ef and seg.flags & ECE)
        rtt = rec.on_ack(
            ack_off, blocks, dsack, is_dupack, now, tsecr, rto.srtt or 0.0, ece
        )
        if ef and (rec.state is not prior_state or rec.high_seq != prior_high):
            self._ecn_after_reduction(prior_state)
        if self.ecn_flags and rec.tlp_reductions != prior_tlp:
            self.ecn_flags |= ecn.QUEUE_CWR  # a probe-repaired loss (RFC 3168 6.1.2)
        if advanced:
            self._on_ack_advance(ack)
        pacer = self.pacer
        if pacer is not None:
            pacer.rate = self.cc.pacing_rate_for(rto.srtt, now)
        # One RTT sample per ACK (RFC 7323 Appendix G): from send times when
        # Karn's rule allows (Linux prefers them), else from the echo (RTTM).
        if rtt is None and advanced and tsecr:
            rtt_ms = (self._tsval() - tsecr) & MASK
            if rtt_ms < 1_000_000:  # ignore echoes that are not ours
                rtt = rtt_ms / 1000
        if rtt is not None:
            # ~one ACK per two segments: weight samples by the window's count.
            per_rtt = ((self.snd_max - self.snd_una) & MASK) // (2 * self.mss)
            rto.sample(rtt, per_rtt if per_rtt > 1 else 1)
        self._arm_sender_timer(now, advanced)

    def _predicted_ack(
        self,
        rec: LossRecovery,
        ack: int,
        ts: tuple[int, int] | None,
        now: float,
    ) -> None:
        """`_sender_ack` for a predicted segment whose ACK advances SND.UNA
        when loss recovery would take its common-ACK path (state OPEN,
        nothing SACKed, lost or retransmitted, no loss probe out, no rate
        sampler): Linux tcp_rcv_established's fast path going to tcp_ack
        without FLAG_SLOWPATH. Header prediction already ruled out SACK
        blocks and ECE, so the D-SACK, duplicate-ACK and ECN-echo work of
        the full path cannot apply; the rest is the same, in the same order
        (_on_ack_advance, the RTT sample, _arm_sender_timer inlined), so the
        TCB ends in the same state (tests/unit/test_sender_fastpath.py)."""
        una = self.snd_una
        d = (ack - una) & MASK  # 0 < d < 2**31: an advance within SND.MAX
        rto = self.rto
        rtt = rec._on_cumulative_ack(self.una_off + d, now, rto.srtt or 0.0)
        if self.ecn_flags and rec.state is not _OPEN:
            self._ecn_after_reduction(_OPEN)  # RACK found a loss: recovery
        # _on_ack_advance, inlined.
        sndbuf_seq = self.sndbuf_seq
        n_data = (ack - sndbuf_seq) & MASK
        if n_data and not n_data & HALF:  # seq_diff(ack, SND buffer start) > 0
            buf = self.sndbuf
            if n_data >= len(buf):
                n_data = len(buf)
                self.sndbuf = _EMPTY_BUF  # all acknowledged: hold no buffer
            else:
                del buf[:n_data]
            self.sndbuf_seq = (sndbuf_seq + n_data) & MASK
        self.snd_una = ack
        self.una_off += d
        snd_nxt = self.snd_nxt
        if snd_nxt != ack and (snd_nxt - ack) & MASK >= HALF:
            self.snd_nxt = ack  # a timeout rewound SND.NXT below the ACK
        self.retries = 0
        pacer = self.pacer
        if pacer is not None:
            pacer.rate = self.cc.pacing_rate_for(rto.srtt, now)
        # One RTT sample per ACK, as _sender_ack.
        if rtt is None and ts is not None:
            tsecr = ts[1]
            if tsecr:
                rtt_ms = (self._tsval() - tsecr) & MASK
                if rtt_ms < 1_000_000:
                    rtt = rtt_ms / 1000
        snd_max = self.snd_max
        if rtt is not None:
            per_rtt = ((snd_max - ack) & MASK) // (2 * self.mss)
            rto.sample(rtt, per_rtt if per_rtt > 1 else 1)
        # _arm_sender_timer(now, advanced=True), inlined.
        if self.persist:
            return
        if ack == snd_max:
            self.rtx_deadline = None  # RFC 6298 5.2: all data acknowledged
        elif rec.reo_deadline is not None:
            self.rtx_deadline, self.rtx_kind = rec.reo_deadline, RTX_REO
        else:
            pto = rec.pto(rto.srtt, rto.rto) if self.settings.tlp else None
            if pto is not None:
                self.rtx_deadline, self.rtx_kind = now + pto, RTX_PTO
            else:
                self.rtx_deadline, self.rtx_kind = now + rto.rto, RTX_RTO

    def _sack_spans(
        self,
        sack_blocks: tuple[tuple[int, int], ...],
        ack_off: int,
        top: int,
        blocks: list[tuple[int, int]],
    ) -> tuple[int, int] | None:
        """An ACK's SACK blocks as stream offsets: the valid ones are put in
        `blocks` (above the cumulative ACK, below SND.MAX); returns the
        D-SACK range, if the first block reports one."""
        dsack: tuple[int, int] | None = None
        spans = [(self._off(lo), self._off(hi)) for lo, hi in sack_blocks]
        first_lo, first_hi = spans[0]
        # RFC 2883 4: the first block reports a duplicate when it lies
        # below the cumulative ACK or inside the second block.
        if first_lo < first_hi and (
            first_hi <= ack_off
            or (len(spans) > 1 and spans[1][0] <= first_lo and first_hi <= spans[1][1])
        ):
            dsack = (first_lo, first_hi)
            spans = spans[1:]
        for lo, hi in spans:
            if ack_off < hi <= top and lo < hi:  # ignore invalid blocks
                blocks.append((lo, hi))
        return dsack

    def _ecn_after_reduction(self, prior: CaState) -> None:
        """RFC 3168 6.1.2: after a window reduction (ECE or fast retransmit
        here; timeouts in _on_rtx_timeout) the first new data segment carries
        CWR (Linux tcp_init_cwnd_reduction / tcp_enter_loss -> tcp_ecn_queue_cwr).
        Moving from CWR into recovery is no new reduction; CWR ending and a
        new one starting on the same ACK is (a new window)."""
        state = self.rec.state
        if state is not CaState.OPEN and (
            prior is CaState.OPEN or state is prior is CaState.CWR
        ):
            self.ecn_flags |= ecn.QUEUE_CWR

    def _on_ack_advance(self, ack: int) -> None:
        """SND.UNA moves to `ack`: free what the peer now holds."""
        acked = (ack - self.snd_una) & MASK  # an advance: 0 < acked < 2**31
        n_data = seq_diff(ack, self.sndbuf_seq)
        if n_data > 0:
            buf = self.sndbuf
            if n_data >= len(buf):
                n_data = len(buf)
                self.sndbuf = _EMPTY_BUF  # all acknowledged: hold no buffer
            else:
                del buf[:n_data]
            self.sndbuf_seq = (self.sndbuf_seq + n_data) & MASK
        self.snd_una = ack
        self.una_off += acked
        if self.snd_nxt != ack and (self.snd_nxt - ack) & MASK >= HALF:
            self.snd_nxt = ack  # a timeout rewound SND.NXT below the ACK
        self.retries = 0

    def _arm_sender_timer(self, now: float, advanced: bool) -> None:
        """RFC 6298 5.2-5.3, with RACK's reorder timer and the tail loss
        probe taking the retransmission timer's place (Linux tcp_set_xmit_timer)."""
        if self.persist:
            return
        if self.snd_una == self.snd_max:
            self.rtx_deadline = None  # RFC 6298 5.2: all data acknowledged
            return
        rec = self._rec or self.rec
        if rec.reo_deadline is not None:
            self.rtx_deadline, self.rtx_kind = rec.reo_deadline, RTX_REO
        elif advanced or self.rtx_deadline is None or self.rtx_kind != RTX_RTO:
            self._arm_probe_or_rto(now)

    def _pto(self) -> float | None:
        rec = self._rec
        if not self.settings.tlp or rec is None:
            return None  # no loss recovery yet: nothing was ever in flight
        return rec.pto(self.rto.srtt, self.rto.rto)

    def _arm_probe_or_rto(self, now: float) -> None:
        """The tail loss probe's timer if one applies (RFC 8985 7.2), else
        the RTO (RFC 6298 5.1)."""
        rto = self.rto
        rec = self._rec
        # _pto(), inlined (after every ACK and every send).
        pto = (
            rec.pto(rto.srtt, rto.rto)
            if rec is not None and self.settings.tlp
            else None
        )
        if pto is not None:
            self.rtx_deadline, self.rtx_kind = now + pto, RTX_PTO
        else:
            self.rtx_deadline, self.rtx_kind = now + rto.rto, RTX_RTO

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
            if self.sack_ok:
                self._note_duplicate(seq, rcv_nxt)
                self.ack_now = True
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
            dup = self._ooo_queue().add(rcv_nxt, seq, payload)
            if dup is not None and self.sack_ok:
                self._note_ofo_duplicate(dup)
            self._emit(ACK, self.snd_max)  # duplicate ACK tells the sender now
            return
        if not self.read_closed:
            buf = self.rcvbuf
            if buf is not _EMPTY_BUF:
                buf += payload
            else:  # the first data: never append to the shared empty buffer
                self.rcvbuf = bytearray(payload)
        ooo = self._ooo
        if ooo is not None and ooo.size and offset <= 0 and self.sack_ok:
            # In-order text over queued text: only if nothing below RCV.NXT
            # was reported first (RFC 2883 4.2.2: the first duplicate only).
            dup = ooo.first_held(rcv_nxt, seq, (seq + len(payload)) & MASK)
            if dup is not None:
                self._note_ofo_duplicate(dup)
        rcv_nxt = (rcv_nxt + len(payload)) & MASK
        if ooo is not None:
            if ooo.size:
                more = ooo.pop_ready(rcv_nxt)
                if more:
                    if not self.read_closed:
                        self._deliver(more)
                    rcv_nxt = (rcv_nxt + len(more)) & MASK
                self.ack_now = True  # a hole was filled: ACK at once (RFC 5681 4.2)
            self.rcv_nxt = rcv_nxt
            if ooo.fin_seq == rcv_nxt and not self.fin_received:
                self._on_fin(now)
                return
            if not ooo.size and ooo.fin_seq is None:
                self._ooo = None  # empty again: an empty queue holds no state
        self.rcv_nxt = rcv_nxt
        # Delayed ACK: at least every second segment (RFC 1122 4.2.3.2).
        self.segs_unacked += 1
        if self.segs_unacked >= 2:
            self.ack_now = True
        elif self.delack_deadline is None:
            self.delack_deadline = now + self.settings.delack

    def _deliver(self, data: bytes) -> None:
        buf = self.rcvbuf
        if buf is not _EMPTY_BUF:
            buf += data
        else:  # never append to the shared empty buffer
            self.rcvbuf = bytearray(data)

    def _on_fin(self, now: float) -> None:
        """Step eight."""
        if self.fin_received:
            self._emit(ACK, self.snd_max)
            return
        self.fin_received = True
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self._ooo = None
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
        self.sndbuf = _EMPTY_BUF

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
        self.sndbuf = _EMPTY_BUF
        self._ooo = None
        self.deadline = None

    def _drop(self, code: int, why: str, rst: bool = False) -> None:
        if rst:
            self._emit(RST | ACK, self.snd_max)
        self.error = os_error(code, why)
        self.rcvbuf.clear()  # a no-op on the shared empty one
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
        kind = self.rtx_kind
        self.rtx_kind = RTX_RTO
        if kind == RTX_REO and st in _OUTPUT_STATES:
            # RFC 8985 6.3: the reordering window passed with no ACK.
            prior_state = self.rec.state
            self.rec.on_reorder_timer(now, self.rto.srtt or 0.0)
            if self.ecn_flags and self.rec.state is not prior_state:
                self._ecn_after_reduction(prior_state)
            self._arm_after_early_timer(now)
            return
        if kind == RTX_PTO and st in _OUTPUT_STATES:
            self._send_loss_probe(now)
            self._arm_after_early_timer(now)
            return
        s = self.settings
        if st is _SYN_SENT:
            limit = s.syn_retries
        elif st is _SYN_RECEIVED:
            limit = s.synack_retries
        else:
            limit = s.orphan_retries if self.app_closed else s.retries2
        if self.retries >= limit:
            why = "connection timed out"
            self._drop(self.soft_error or errno.ETIMEDOUT, why, rst=st not in _OPENING)
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
            # RFC 6298 5.4-5.6, RFC 5681 (4): the loss window of one segment;
            # recovery resends everything unSACKed, in slow start (flush).
            self.rec.on_rto(now, first=self.retries == 1)
            if self.ecn_flags:
                self.ecn_flags |= ecn.QUEUE_CWR
            if self.snd_wnd == 0:
                # The peer shrank its window to zero with data outstanding:
                # probe it like any zero window (RFC 9293 3.8.6.1), do not
                # burn retries on retransmissions the window forbids.
                self.persist = True
        self.rtx_deadline = now + self.rto.rto

    def _arm_after_early_timer(self, now: float) -> None:
        """After a reorder timeout or a probe: the next reorder deadline, or
        a full RTO from now (RFC 8985 7.3; Linux tcp_rearm_rto)."""
        rec = self.rec
        if rec.reo_deadline is not None:
            self.rtx_deadline, self.rtx_kind = rec.reo_deadline, RTX_REO
        elif self.snd_una != self.snd_max:
            self.rtx_deadline, self.rtx_kind = now + self.rto.rto, RTX_RTO

    def _send_loss_probe(self, now: float) -> None:
        """RFC 8985 7.3: one segment to elicit an ACK that shows a tail loss:
        new data if the peer's window allows it, else the last segment again."""
        rec = self.rec
        q = rec.queue
        if self._send_new_data(now, probe=True):
            rec.on_probe_sent(retransmitted=False)
            return
        last = q.last()
        if last is None:
            return
        if last.end - last.start > self.mss:
            last = q.split_last(self.mss)
        self._send_record(last, now)
        rec.on_retransmit(last, now, self._tsval())
        rec.on_probe_sent(retransmitted=True)

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
        # The earliest timer; unrolled, as it runs after every call.
        best = self.rtx_deadline
        d = self.close_deadline
        if d is not None and (best is None or d < best):
            best = d
        d = self.delack_deadline
        if d is not None and (best is None or d < best):
            best = d
        d = self.ka_deadline
        if d is not None and (best is None or d < best):
            best = d
        pacer = self.pacer
        if pacer is not None:
            d = pacer.deadline
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
        st = self.state
        # `is` first: an enum's hash is a Python-level call (every flush).
        if st is _ESTABLISHED or st in _OUTPUT_STATES:
            self._output_data(now)
        if self.ack_now and self.state is not _CLOSED:
            self._emit(ACK, self.snd_max)
        self._update_deadline()

    def _output_data(self, now: float) -> None:
        """RFC 6675 NextSeg: lost segments first, then new data, while the
        pipe is below cwnd; then our FIN; then the persist timer if the
        peer's window is shut."""
        rec = self._rec
        if rec is None:
            if not self.sndbuf and self.fin_seq is None:
                return  # never sent anything and nothing to send
            rec = self.rec
        q = rec.queue
        cwnd = rec.cc
        if (
            self.fast_output
            and not q.pending
            and not rec.send_new_first
            and self.pacer is None
            and self.una_off + seq_diff(self.sndbuf_seq, self.snd_una)
            + len(self.sndbuf) <= q.nxt
            and (self.fin_seq is None or self.snd_max != self.fin_seq)
        ):
            # Nothing to resend, no new data, no FIN (most flushes after an
            # ACK): only the bookkeeping of an output pass that sent nothing.
            flight = rec.in_flight()
            rec.on_send(flight, flight >= cwnd.cwnd)
            if cwnd.sampler is not None:
                rec.check_app_limited(self._unsent())
            self._arm_after_output(now, False)
            return
        if (
            self.fast_output
            and not q.recs
            and not q.pending
            and not rec.send_new_first
            and self.pacer is None
            and self.fin_seq is None
            and self._send_one_small(rec, q, cwnd, now)
        ):
            return
        if rec.send_new_first and not self._new_data_allowed():
            rec.send_new_first = rec.frto = False  # F-RTO: nothing new to send
        seg_max = self._seg_max() if q.pending else 0
        blocked = False
        # Pacing: -1 = no limit; else the bytes this pass may send.
        pacer = self.pacer
        budget = -1
        if pacer is not None:
            budget = self._pacing_budget(pacer, now)
            if cwnd.sampler is not None:
                cwnd.sampler.pacer = pacer  # send times from the schedule
        paced = 0
        while q.pending:
            if rec.in_flight() >= cwnd.cwnd:
                blocked = True
                break
            if budget >= 0 and paced >= budget:
                break
            r = rec.next_retransmission(seg_max)
            if r is None:
                break
            paced += r.end - r.start
            self._send_record(r, now)
            rec.on_retransmit(r, now, self._tsval())
            if r is q.recs[0] and not self.persist:
                # Resending the head restarts the RTO (Linux
                # tcp_xmit_retransmit_queue): give the repair an RTT.
                self.rtx_deadline, self.rtx_kind = now + self.rto.rto, RTX_RTO
        sent = False
        flight = -1  # not known yet
        if not blocked and (budget < 0 or paced < budget):
            new = self._send_new_data(now, limit=budget - paced if budget >= 0 else -1)
            paced += new
            sent = new > 0
            flight = q.in_flight() - rec.reno_sacked  # rec.in_flight()
            blocked = flight >= cwnd.cwnd
        if pacer is not None:
            self._after_paced_burst(pacer, paced, budget, now)
        fin_seq = self.fin_seq
        if fin_seq is not None and self.snd_max == fin_seq:
            # Our FIN alone (it rode on no data segment): one sequence number.
            fin_off = self._off(fin_seq)
            self._emit(FIN | ACK, fin_seq)
            q.append(fin_off, fin_off + 1, now, fin=True)
            self.snd_nxt = self.snd_max = (fin_seq + 1) & MASK
            sent = True
            flight = -1
        rec.on_send(flight if flight >= 0 else rec.in_flight(), blocked)
        if cwnd.sampler is not None:
            rec.check_app_limited(self._unsent())
        if sent:
            self.last_send = now
        self._arm_after_output(now, sent)

    def _send_one_small(
        self, rec: LossRecovery, q: RetransmitQueue,
        cwnd: congestion.CongestionControl, now: float,
    ) -> bool:
        """The output pass of a request/response turn: nothing in flight,
        nothing to repair, no FIN or pacing, and what the application wrote
        fits in one segment and the peer's window. Sends it as the full pass
        would (`_send_new_data`, then the pass's bookkeeping) and returns
        True, or returns False having changed nothing. Nothing outstanding,
        so Nagle (RFC 896) cannot hold it and it carries PSH."""
        sndbuf = self.sndbuf
        una_off = self.una_off
        buf_off = una_off + seq_diff(self.sndbuf_seq, self.snd_una)  # _off()
        nxt = q.nxt
        start = nxt - buf_off
        n = len(sndbuf) - start
        if (
            n <= 0
            or n > self.mss
            or nxt > una_off
            or una_off + self.snd_wnd - nxt < n
        ):
            return False
        self._restart_after_idle(cwnd, now)  # nothing in flight (q.recs empty)
        if cwnd.cwnd - (q.in_flight() - rec.reno_sacked) > 0:
            seq = self.snd_max
            self._emit(
                ACK | PSH, seq, bytes(memoryview(sndbuf)[start:]) if start
                else bytes(sndbuf),
            )
            end = nxt + n
            rec.on_new_data(n, q.append(nxt, end, now, False), now)
            self.snd_nxt = self.snd_max = (seq + n) & MASK
            sent = True
        else:
            sent = False  # cwnd shut (as _send_new_data, which sends nothing)
        flight = q.in_flight() - rec.reno_sacked  # rec.in_flight()
        rec.on_send(flight, flight >= cwnd.cwnd)
        if cwnd.sampler is not None:
            rec.check_app_limited(self._unsent())
        if sent:
            self.last_send = now
        self._arm_after_output(now, sent)
        return True

    def _arm_after_output(self, now: float, sent: bool) -> None:
        """The sender's timer after an output pass (RFC 6298 5.1, RFC 8985
        7.2, RFC 9293 3.8.6.1)."""
        if sent:
            if self.rtx_deadline is None or self.persist or self.rtx_kind == RTX_PTO:
                self.persist = False
                self._arm_probe_or_rto(now)
            elif self.rtx_kind == RTX_RTO:
                # New data went out: a tail loss probe may now come before
                # the running RTO (Linux tcp_schedule_loss_probe).
                pto = self._pto()
                if pto is not None and now + pto < self.rtx_deadline:
                    self.rtx_deadline, self.rtx_kind = now + pto, RTX_PTO
        elif self.rtx_deadline is not None:
            return  # a timer runs: nothing below applies
        elif self.snd_wnd == 0 and self.snd_una == self.snd_max and self.sndbuf:
            self.persist = True  # zero window: start probing (RFC 9293 3.8.6.1)
            self.rtx_deadline = now + self.rto.rto
        elif self.snd_una != self.snd_max:
            self._arm_probe_or_rto(now)

    def _pacing_budget(self, pacer: Pacer, now: float) -> int:
        """Bytes pacing lets out now: 0 before the next send time (and the
        pacing deadline is armed for it when something waits to go)."""
        budget = pacer.budget(now, self.mss)
        if not budget and (self.rec.queue.pending or self._unsent() > 0):
            pacer.deadline = pacer.next_send
        return budget

    def _after_paced_burst(
        self, pacer: Pacer, paced: int, budget: int, now: float
    ) -> None:
        pacer.end_burst()
        if paced:
            pacer.on_sent(paced, -(-paced // self.mss), now)
        if budget >= 0 and paced >= budget and budget:
            # The burst used its allowance: come back at the next send time.
            pacer.deadline = pacer.next_send

    def _unsent(self) -> int:
        """Bytes queued by the application and never sent."""
        return seq_diff(self.sndbuf_seq, self.snd_max) + len(self.sndbuf)

    def _seg_max(self) -> int:
        """Largest segment to hand the link: one MSS, or many with offload."""
        mss = self.mss
        return max(mss, self.tso_limit // mss * mss)

    def _new_data_allowed(self) -> bool:
        end = seq_diff(self.sndbuf_seq, self.snd_max) + len(self.sndbuf)
        room = seq_diff(self.snd_una, self.snd_max) + self.snd_wnd
        return end > 0 and room > 0

    def _send_new_data(self, now: float, probe: bool = False, limit: int = -1) -> int:
        """Send unsent data as cwnd, the peer's window, Nagle (RFC 896) and
        silly-window avoidance (RFC 1122 4.2.3.4) allow, at most `limit`
        bytes when pacing (-1: no limit); returns the bytes sent. A loss
        probe sends one segment whatever cwnd says (RFC 8985 7.3)."""
        rec = self._rec or self.rec
        q = rec.queue
        sndbuf = self.sndbuf
        una_off = self.una_off
        buf_off = una_off + seq_diff(self.sndbuf_seq, self.snd_una)  # _off()
        buf_len = len(sndbuf)
        end_off = buf_off + buf_len
        if end_off <= q.nxt:
            return 0  # nothing unsent (most flushes after an ACK)
        cc = rec.cc
        mss = self.mss
        fin_seq = self.fin_seq
        wnd_end = una_off + self.snd_wnd
        sent = 0
        while True:
            nxt = q.nxt
            unsent = end_off - nxt
            if unsent <= 0:
                break
            if 0 <= limit <= sent:
                break  # pacing: the rest waits for the next send time
            if not q.recs:
                self._restart_after_idle(cc, now)
            room = cc.cwnd - (q.in_flight() - rec.reno_sacked)  # rec.in_flight()
            if probe:
                room = mss
            elif room <= 0:
                break
            usable = wnd_end - nxt
            n = unsent if unsent < mss else mss
            outstanding = nxt > una_off
            if usable < n:
                if usable <= 0 or (outstanding and usable < self.max_snd_wnd // 2):
                    break
                n = usable
            elif n < mss and outstanding and not self.nodelay and fin_seq is None:
                break  # Nagle: one small segment in flight at a time
            elif n == mss and not probe and self.tso_limit >= 2 * mss:
                # Offload: as many whole MSS as cwnd (rounded up) and the
                # window allow, up to the link's limit (_seg_max()).
                n = min(unsent, usable, self._seg_max(), -(-room // mss) * mss)
                if limit >= 0:
                    n = min(n, max(mss, (limit - sent) // mss * mss))
            start = nxt - buf_off
            if start == 0 and n == buf_len:
                payload = bytes(sndbuf)  # all of it (a small write)
            else:
                payload = bytes(memoryview(sndbuf)[start : start + n])
            flags = ACK | PSH if start + n == buf_len else ACK
            seq = self.snd_max
            nxt_seq = (seq + n) & MASK
            end = nxt + n
            fin = fin_seq is not None and nxt_seq == fin_seq
            if fin:
                flags |= FIN  # FIN rides on the last data segment
                nxt_seq = (nxt_seq + 1) & MASK
                end += 1
            self._emit(flags, seq, payload)
            rec.on_new_data(n, q.append(nxt, end, now, fin), now)
            self.snd_nxt = self.snd_max = nxt_seq
            sent += n
            if probe or fin:
                break
        return sent

    def _send_record(self, r: Sent, now: float) -> None:
        """(Re)transmit one queued segment."""
        buf_off = self._off(self.sndbuf_seq)
        end = r.end - 1 if r.fin else r.end
        payload = bytes(memoryview(self.sndbuf)[r.start - buf_off : end - buf_off])
        flags = ACK | FIN if r.fin else ACK
        if payload and r.start - buf_off + len(payload) == len(self.sndbuf):
            flags |= PSH
        self.counters["RetransSegs"] += 1
        self._emit(flags, (self.iss + r.start) & MASK, payload)

    def _restart_after_idle(self, cc: congestion.CongestionControl, now: float) -> None:
        """Nothing in flight and new data to send. RFC 5681 4.1 / RFC 2861
        (Linux tcp_cwnd_restart): after more than an RTO of silence the
        window is stale; halve it per idle RTO, down to the initial window.
        The controller hears of every restart (RFC 9438 5.8: CUBIC shifts
        its epoch by the idle time, as Linux's CA_EVENT_TX_START)."""
        idle = now - self.last_send
        cc.on_idle(now, idle)
        rto = self.rto.rto
        if idle <= rto or not self.settings.slow_start_after_idle:
            return  # the usual case (request/response): not idle for an RTO
        restart = min(INITIAL_WINDOW * self.mss, cc.cwnd)
        cc.ssthresh = max(cc.ssthresh, cc.cwnd * 3 // 4)
        cwnd = cc.cwnd
        idle -= rto
        while idle > 0 and cwnd > restart:
            cwnd //= 2
            idle -= rto
        cc.cwnd = max(cwnd, restart)
        self.last_send = now

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
            rcv_adv = self.rcv_adv
            wscale = self.rcv_wscale
            # Receiver window, never shrinking the right edge (RFC 9293 3.8.6.2.2).
            offered = seq_diff(rcv_adv, ack_no)
            size = self.rcv_buf_size
            free = size - len(self.rcvbuf)
            # _sws_threshold() and _window_field(free), inlined (per segment).
            sws = self.mss_local
            if size // 2 < sws:
                sws = size // 2
            if free - offered >= sws:
                field = (free + (1 << wscale) - 1) >> wscale
                if field > 0xFFFF:
                    field = 0xFFFF
            elif offered > 0:
                # Keep the edge already offered (RFC 1122 4.2.3.3 receiver SWS
                # avoidance), rounded up so it does not move left (RFC 9293
                # 3.8.6.2.2), unless that would take it more than one scale
                # unit past the buffer: rounding up again from each new
                # RCV.NXT can push the edge out by up to 2**wscale - 1 bytes
                # per ACK. Then it is rounded down instead (a retreat of less
                # than one unit, RFC 7323 2.4); data up to rcv_adv is still
                # accepted, so nothing the sender already sent is dropped.
                field = (offered + (1 << wscale) - 1) >> wscale  # _window_field
                if field > 0xFFFF:
                    field = 0xFFFF
                if field << wscale > free + (1 << wscale) - 1:
                    field = min(offered >> wscale, 0xFFFF)
            else:
                field = 0
            edge = (ack_no + (field << wscale)) & MASK
            if seq_gt(edge, rcv_adv):
                self.rcv_adv = edge
            self.ack_now = False
            self.segs_unacked = 0
            self.delack_deadline = None
            self.last_ack_sent = ack_no
        else:
            ack_no = 0
            field = 0
        codepoint = 0
        ef = self.ecn_flags
        if ef and not flags & RST:
            # RFC 3168 6.1.3: echo CE until CWR, on every segment.
            if ef & ecn.DEMAND_CWR:
                flags |= ECE
            # Linux tcp_ecn_send: only new data is ECT, never a pure ACK,
            # a window probe or a retransmission (RFC 3168 6.1.4, 6.1.5);
            # the first new data after a reduction carries CWR (6.1.2).
            if payload and seq == self.snd_max:
                codepoint = ecn.ECT_0
                if ef & ecn.QUEUE_CWR:
                    flags |= CWR
                    self.ecn_flags = ef & ~ecn.QUEUE_CWR
        # Positional: keyword arguments cost more on this per-segment call.
        segment = TcpSegment(
            self.local_port,
            self.remote_port,
            seq,
            ack_no,
            flags,
            field,
            payload,
            None,
            None,
            False,
            (),
            # our TSval (_tsval, inlined) and TS.Recent (RFC 7323 3.2)
            ((int(self.clock * 1000) + self.ts_offset) & MASK, self.ts_recent)
            if self.ts_ok and not flags & RST
            else None,
            0,
            codepoint,
        )
        ooo = self._ooo
        held = ooo is not None and ooo.size
        if self.sack_ok and flags & ACK and (held or self.dsack):
            # RFC 2018 3: room for 3 blocks beside timestamps, else 4; a data
            # segment carries what fits beside its payload (RFC 2018 4).
            limit = 3 if self.ts_ok else 4
            if payload:
                limit = min(limit, (self.mss - len(payload) - SACK_OPTION_BASE) // 8)
            if limit > 0:
                blocks = (
                    ooo.sack_blocks(self.rcv_nxt, limit)
                    if held and ooo is not None
                    else ()
                )
                if self.dsack is not None:
                    # RFC 2883 4: the duplicate first, then the usual blocks.
                    blocks = (self.dsack, *blocks[: limit - 1])
                    self.dsack = None
                segment.sack_blocks = blocks
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
