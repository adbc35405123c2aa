"""Proportional Rate Reduction (RFC 6937): how fast to send during recovery.

While pipe is above ssthresh, PRR sends in proportion to what is delivered,
so that by the end of recovery cwnd has come down to ssthresh smoothly
instead of in one cliff (RFC 5681) or not at all. Once pipe falls below
ssthresh, the slow-start reduction bound (PRR-SSRB) rebuilds it, at most one
MSS beyond what was delivered per ACK.
"""

from __future__ import annotations


class Prr:
    __slots__ = ("ssthresh", "recover_fs", "delivered", "out")

    def __init__(self) -> None:
        self.ssthresh = 0
        self.recover_fs = 1
        self.delivered = 0  # prr_delivered: bytes delivered since recovery began
        self.out = 0  # prr_out: bytes sent since recovery began

    def start(self, ssthresh: int, flight: int) -> None:
        """RFC 6937 3: at the start of recovery."""
        self.ssthresh = ssthresh
        self.recover_fs = max(flight, 1)
        self.delivered = 0
        self.out = 0

    def cwnd(self, delivered: int, pipe: int, mss: int) -> int:
        """RFC 6937 3 "on every ACK": the cwnd that allows sndcnt more bytes."""
        self.delivered += delivered
        if pipe > self.ssthresh:
            # Proportional part: ceil(prr_delivered * ssthresh / RecoverFS) - prr_out.
            sndcnt = -(-self.delivered * self.ssthresh // self.recover_fs) - self.out
        else:
            # PRR-SSRB: rebuild towards ssthresh, one MSS beyond what arrived.
            limit = max(self.delivered - self.out, delivered) + mss
            sndcnt = min(self.ssthresh - pipe, limit)
        # Linux tcp_cwnd_reduction: the first ACK of recovery may always send
        # one segment (the fast retransmit itself).
        sndcnt = max(sndcnt, 0 if self.out else mss)
        return pipe + sndcnt

    def on_sent(self, n: int) -> None:
        self.out += n
