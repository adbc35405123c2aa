"""TIME_WAIT as rows of a compact table instead of full TCBs (RFC 9293 3.6.1).

A connection that reached TIME_WAIT only has to (1) ACK a retransmitted FIN
and restart its 2MSL timer, (2) keep the 4-tuple from being reused by an old
duplicate, (3) ignore RSTs (RFC 1337) and (4) let a new SYN reopen the tuple
when it provably belongs to a new incarnation (RFC 6191). That takes a few
integers per connection, so the table keeps them in parallel typed arrays
(about 45 bytes a row) and maps a packed 48-bit key to a row number: about
150 bytes per entry in all, where a slotted object per record cost 440.

Every record lasts 2*MSL from its last (re)start, so rows are appended in
deadline order and expire from the front; a restart moves its row to the
back. Rows left behind (restarted, reopened) are dead and skipped.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterator

from ustack.counters import Counters
from ustack.tcp.seq import MASK, seq_gt, seq_lt
from ustack.tcp.state import State
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment

Key = tuple[bytes, int, int]  # (remote ip, remote port, local port)

_TS_OK = 1  # the old incarnation used timestamps (RFC 7323)
_COMPACT_AT = 4096  # expired rows at the front before the arrays are trimmed


def pack_key(remote_ip: bytes, remote_port: int, local_port: int) -> int:
    """A 4-tuple as one 48-bit int (our address is the stack's, implicit)."""
    return int.from_bytes(remote_ip, "big") << 32 | remote_port << 16 | local_port


def _unpack_key(packed: int) -> Key:
    return ((packed >> 32).to_bytes(4, "big"), (packed >> 16) & 0xFFFF, packed & 0xFFFF)


class TimeWait:
    """A read-only snapshot of one TIME_WAIT row (for `ss`, traces, tests);
    `state` and the address fields read like a TCB's."""

    state = State.TIME_WAIT
    __slots__ = (
        "key",
        "local_ip",
        "local_port",
        "remote_ip",
        "remote_port",
        "snd_nxt",
        "rcv_nxt",
        "window",
        "deadline",
        "ts_recent",
    )

    def __init__(
        self,
        key: Key,
        local_ip: bytes,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        deadline: float,
        ts_recent: int | None,
    ) -> None:
        self.key = key
        self.local_ip = local_ip
        self.remote_ip, self.remote_port, self.local_port = key
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.window = window  # raw 16-bit field we last advertised
        self.deadline = deadline
        self.ts_recent = ts_recent  # None: the connection had no timestamps


class TimeWaitTable:
    """Every TIME_WAIT record of one stack (sans-IO: `now` is passed in)."""

    __slots__ = (
        "local_ip",
        "counters",
        "_rows",
        "_base",
        "_head",
        "_keys",
        "_snd_nxt",
        "_rcv_nxt",
        "_window",
        "_deadline",
        "_last_ack",
        "_ts_recent",
        "_ts_base",
        "_flags",
    )

    def __init__(self, local_ip: bytes, counters: Counter[str] | None = None) -> None:
        self.local_ip = local_ip
        self.counters: Counter[str] = Counters() if counters is None else counters
        self.clear()

    def clear(self) -> None:
        self._rows: dict[int, int] = {}  # packed key -> row id (index + _base)
        self._base = 0
        self._head = 0  # index of the first row not yet expired
        self._keys = array("Q")
        self._snd_nxt = array("I")
        self._rcv_nxt = array("I")
        self._window = array("H")
        self._deadline = array("d")
        self._last_ack = array("d")  # when we last sent a rate-limited ACK
        self._ts_recent = array("I")  # TS.Recent: the peer's last TSval
        self._ts_base = array("I")  # our TSval = int(now * 1000) + base
        self._flags = array("B")

    # -- the table as a collection -------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __contains__(self, key: Key) -> bool:
        return pack_key(*key) in self._rows

    def find(self, key: Key) -> int | None:
        """The row id for `key`, or None."""
        return self._rows.get(pack_key(*key))

    def uses_local_port(self, port: int) -> bool:
        return any(packed & 0xFFFF == port for packed in self._rows)

    def records(self) -> Iterator[TimeWait]:
        return (self.record(row) for row in list(self._rows.values()))

    def record(self, row: int) -> TimeWait:
        i = row - self._base
        return TimeWait(
            _unpack_key(self._keys[i]),
            self.local_ip,
            self._snd_nxt[i],
            self._rcv_nxt[i],
            self._window[i],
            self._deadline[i],
            self._ts_recent[i] if self._flags[i] & _TS_OK else None,
        )

    def pending_rows(self) -> int:
        """Rows still waiting to expire, live or dead (for leak checks)."""
        return len(self._keys) - self._head

    def next_deadline(self) -> float:
        """The earliest deadline (maybe of a dead row: a harmless early wake-up)."""
        return self._deadline[self._head] if self._head < len(self._keys) else math.inf

    # -- entering, leaving ------------------------------------------------------

    def add(
        self,
        key: Key,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        deadline: float,
        timestamps: tuple[int, int] | None = None,
    ) -> None:
        """A connection enters TIME_WAIT. `timestamps` is (TS.Recent, our
        TSval base) when it used them: our TSval at time t is
        int(t * 1000) + base, as the TCB's 1 ms clock."""
        self._append(pack_key(*key), snd_nxt, rcv_nxt, window, deadline, -math.inf)
        if timestamps is not None:
            self._ts_recent[-1], self._ts_base[-1] = timestamps
            self._flags[-1] = _TS_OK

    def _append(
        self,
        packed: int,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        deadline: float,
        last_ack: float,
    ) -> None:
        self._rows[packed] = self._base + len(self._keys)
        self._keys.append(packed)
        self._snd_nxt.append(snd_nxt)
        self._rcv_nxt.append(rcv_nxt)
        self._window.append(window)
        self._deadline.append(deadline)
        self._last_ack.append(last_ack)
        self._ts_recent.append(0)
        self._ts_base.append(0)
        self._flags.append(0)

    def _is_live(self, i: int) -> bool:
        return self._rows.get(self._keys[i]) == i + self._base

    def expire(self, now: float) -> list[TimeWait]:
        """Remove every record whose 2MSL ran out; return them (for observers)."""
        gone: list[TimeWait] = []
        deadlines = self._deadline
        n = len(deadlines)
        i = self._head
        while i < n and deadlines[i] <= now:
            if self._is_live(i):
                gone.append(self.record(i + self._base))
                del self._rows[self._keys[i]]
            i += 1
        self._head = i
        if i >= _COMPACT_AT and i * 2 >= n:
            self._trim()
        return gone

    def _trim(self) -> None:
        head = self._head
        for column in (
            self._keys,
            self._snd_nxt,
            self._rcv_nxt,
            self._window,
            self._deadline,
            self._last_ack,
            self._ts_recent,
            self._ts_base,
            self._flags,
        ):
            del column[:head]
        self._base += head
        self._head = 0

    def _restart(self, row: int, deadline: float) -> int:
        """Move a row to the back with a new deadline (keeps deadline order)."""
        i = row - self._base
        ts_recent, ts_base, flags = self._ts_recent[i], self._ts_base[i], self._flags[i]
        self._append(
            self._keys[i],
            self._snd_nxt[i],
            self._rcv_nxt[i],
            self._window[i],
            deadline,
            self._last_ack[i],
        )
        self._ts_recent[-1], self._ts_base[-1], self._flags[-1] = (
            ts_recent,
            ts_base,
            flags,
        )
        return self._base + len(self._keys) - 1

    # -- segments -----------------------------------------------------------------

    def on_segment(
        self,
        row: int,
        seg: TcpSegment,
        now: float,
        duration: float,
        ratelimit: float,
    ) -> tuple[TcpSegment | None, int | None]:
        """Process one segment for a TIME_WAIT row: (reply to send or None,
        the ISS for a new incarnation when a SYN may reopen the 4-tuple, which
        the caller then hands to the listener; the row is gone then)."""
        i = row - self._base
        flags = seg.flags
        if flags & RST:
            return None, None  # RFC 1337: a RST must not cut TIME_WAIT short
        rcv_nxt = self._rcv_nxt[i]
        ts = seg.timestamp if self._flags[i] & _TS_OK else None
        # PAWS (RFC 7323 5): an older TSval marks an old duplicate.
        paws_reject = ts is not None and seq_lt(ts[0], self._ts_recent[i])
        if paws_reject:
            self.counters["PAWSEstabRejected"] += 1
        if flags & SYN and not flags & ACK and not paws_reject:
            # RFC 6191 2 (as Linux's tcp_timewait_state_process): a SYN with
            # a newer timestamp, or without timestamps a higher sequence
            # number, starts a new incarnation. RFC 1122 4.2.2.13: its ISS
            # must lie above the old SND.NXT (Linux: SND.NXT + 65537).
            newer_ts = ts is not None and seq_gt(ts[0], self._ts_recent[i])
            if seq_gt(seg.seq, rcv_nxt) or newer_ts:
                iss = (self._snd_nxt[i] + 65537) & MASK
                del self._rows[self._keys[i]]
                return None, iss or 1
        fin_at = (seg.seq + len(seg.payload)) & MASK
        if flags & FIN and not flags & SYN and not paws_reject:
            if (fin_at + 1) & MASK == rcv_nxt:
                # RFC 9293 3.10.7.4: the peer's FIN again (it lost our ACK):
                # ACK it and restart 2MSL. Only this FIN restarts the timer.
                if ts is not None:
                    self._ts_recent[i] = ts[0]
                row = self._restart(row, now + duration)
                return self._ack(row, now), None
        elif (
            not seg.payload
            and not flags & (SYN | FIN)
            and not paws_reject
            and seg.seq == rcv_nxt
        ):
            return None, None  # an in-window bare ACK: nothing to say
        # Anything else is unacceptable: ACK it (RFC 9293 3.10.7.4). As Linux
        # (tcp_oow_rate_limited), at most one ACK per `ratelimit` for segments
        # that occupy no sequence space or are SYNs: no 1:1 ACK reflector.
        if not (seg.payload or flags & FIN) or flags & SYN:
            if now - self._last_ack[i] < ratelimit:
                self.counters["TCPACKSkippedTimeWait"] += 1
                return None, None
            self._last_ack[i] = now
        return self._ack(row, now), None

    def _ack(self, row: int, now: float) -> TcpSegment:
        i = row - self._base
        packed = self._keys[i]
        seg = TcpSegment(
            packed & 0xFFFF,
            (packed >> 16) & 0xFFFF,
            self._snd_nxt[i],
            self._rcv_nxt[i],
            ACK,
            self._window[i],
        )
        if self._flags[i] & _TS_OK:
            tsval = (int(now * 1000) + self._ts_base[i]) & MASK
            seg.timestamp = (tsval, self._ts_recent[i])
        return seg
