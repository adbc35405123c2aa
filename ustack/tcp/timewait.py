"""TIME_WAIT as a compact record instead of a full TCB (RFC 9293 3.6.1).

A connection that reached TIME_WAIT only has to (1) ACK a retransmitted FIN
and restart its 2MSL timer, (2) keep the 4-tuple from being reused, and (3)
ignore RSTs (RFC 1337). That takes a handful of integers, so many thousands
of them cost little.
"""

from __future__ import annotations

from ustack.tcp.seq import seq_gt
from ustack.tcp.state import State
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment


class TimeWait:
    """The remains of a connection in TIME_WAIT; `state` reads like a TCB's."""

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
    )

    def __init__(
        self,
        key: tuple[bytes, int, int],
        local_ip: bytes,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        deadline: float,
    ) -> None:
        self.key = key
        self.local_ip = local_ip
        self.remote_ip, self.remote_port, self.local_port = key
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.window = window  # raw 16-bit field we last advertised
        self.deadline = deadline

    def on_segment(
        self, seg: TcpSegment, now: float, duration: float
    ) -> tuple[TcpSegment | None, bool]:
        """Process one segment: (reply to send or None, whether a new SYN may
        reopen the 4-tuple)."""
        flags = seg.flags
        if flags & RST:
            return None, False  # RFC 1337: a RST must not cut TIME_WAIT short
        if flags & SYN and not flags & ACK:
            # RFC 9293 3.10.7.4 MAY-2 / RFC 6191: a SYN above everything we
            # saw starts a new incarnation of the connection.
            if seq_gt(seg.seq, self.rcv_nxt):
                return None, True
            return self._ack(), False
        if flags & FIN:
            self.deadline = now + duration  # the peer lost our ACK: restart 2MSL
            return self._ack(), False
        if seg.payload:
            return self._ack(), False
        return None, False

    def _ack(self) -> TcpSegment:
        return TcpSegment(
            self.local_port,
            self.remote_port,
            self.snd_nxt,
            self.rcv_nxt,
            ACK,
            self.window,
        )
