"""What an ICMP error means for the transport (RFC 1122 3.2.2, 4.2.3.9) and
the path MTU it teaches (RFC 1191); rate limits for the errors we send.

Sans-IO: time is passed in.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from dataclasses import dataclass

from ustack.wire.icmp import (
    DEST_UNREACHABLE,
    FRAGMENTATION_NEEDED,
    PARAMETER_PROBLEM,
    TIME_EXCEEDED,
    QuotedPacket,
)

# Destination unreachable code -> (errno, hard), as Linux's icmp_err_convert:
# "hard" codes mean the peer or a router says the attempt cannot succeed.
_UNREACH: dict[int, tuple[int, bool]] = {
    0: (errno.ENETUNREACH, False),  # net unreachable
    1: (errno.EHOSTUNREACH, False),  # host unreachable
    2: (errno.ENOPROTOOPT, True),  # protocol unreachable
    3: (errno.ECONNREFUSED, True),  # port unreachable
    4: (errno.EMSGSIZE, False),  # fragmentation needed (path MTU)
    5: (errno.EOPNOTSUPP, False),  # source route failed
    6: (errno.ENETUNREACH, True),  # destination network unknown
    7: (errno.EHOSTDOWN, True),  # destination host unknown
    8: (errno.ENONET, True),  # source host isolated
    9: (errno.ENETUNREACH, True),  # network administratively prohibited
    10: (errno.EHOSTUNREACH, True),  # host administratively prohibited
    11: (errno.ENETUNREACH, False),  # network unreachable for TOS
    12: (errno.EHOSTUNREACH, False),  # host unreachable for TOS
    13: (errno.EHOSTUNREACH, True),  # communication administratively prohibited
    14: (errno.EHOSTUNREACH, True),  # host precedence violation
    15: (errno.EHOSTUNREACH, True),  # precedence cutoff in effect
}

# RFC 1191 7.1 plateau table: a guess when a router reports no next-hop MTU.
PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


@dataclass(slots=True)
class IcmpError:
    """An ICMP error about one of our packets, as the transport sees it."""

    errno: int
    hard: bool
    mtu: int | None  # set for fragmentation needed: the path MTU to use
    quoted: QuotedPacket


def classify(typ: int, code: int, rest: int, quoted: QuotedPacket) -> IcmpError | None:
    """The meaning of an error message, or None for those we ignore (source
    quench, RFC 6633; redirects and unknown codes)."""
    if typ == DEST_UNREACHABLE:
        entry = _UNREACH.get(code)
        if entry is None:
            return None
        mtu = None
        if code == FRAGMENTATION_NEEDED:
            mtu = next_hop_mtu(rest & 0xFFFF, quoted.total_len)
        return IcmpError(entry[0], entry[1], mtu, quoted)
    if typ == TIME_EXCEEDED:
        return IcmpError(errno.EHOSTUNREACH, False, None, quoted)
    if typ == PARAMETER_PROBLEM:
        return IcmpError(errno.EPROTO, True, None, quoted)
    return None


def next_hop_mtu(reported: int, quoted_total: int) -> int:
    """RFC 1191 4: the router's next-hop MTU; an old router sends 0 (or a
    value not below the packet it dropped): then take the next plateau."""
    if 68 <= reported < quoted_total or (reported >= 68 and quoted_total < 68):
        return reported
    for plateau in PLATEAUS:
        if plateau < quoted_total:
            return plateau
    return 68


class PathMtuCache:
    """Learned path MTUs per destination, floored at `min_pmtu` and forgotten
    after `expires` seconds (Linux's min_pmtu 552 and mtu_expires 600 s, so a
    path that grows again is used again, RFC 1191 6.3)."""

    def __init__(self, min_pmtu: int, expires: float, max_entries: int = 4096) -> None:
        self.min_pmtu = min_pmtu
        self.expires = expires
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[int, float]] = OrderedDict()

    def get(self, dst: bytes, now: float, default: int) -> int:
        entry = self._entries.get(dst)
        if entry is None:
            return default
        mtu, until = entry
        if until <= now:
            del self._entries[dst]
            return default
        return min(mtu, default)

    def learn(self, dst: bytes, mtu: int, now: float, default: int) -> int | None:
        """Record a smaller path MTU; the new value, or None if it is not
        smaller than what we use already (a larger report is ignored)."""
        mtu = max(mtu, self.min_pmtu)
        if mtu >= self.get(dst, now, default):
            return None
        self._entries[dst] = (mtu, now + self.expires)
        self._entries.move_to_end(dst)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return mtu

    def __len__(self) -> int:
        return len(self._entries)


class IcmpRateLimit:
    """Linux's limits on the ICMP errors we send: a global token bucket
    (icmp_msgs_per_sec, icmp_msgs_burst) and, per destination, one message
    per `ratelimit` seconds with a burst of six (icmp_ratelimit, XRLIM)."""

    BURST_FACTOR = 6

    def __init__(
        self,
        ratelimit: float,
        msgs_per_sec: int,
        burst: int,
        max_peers: int = 4096,
    ) -> None:
        self.ratelimit = ratelimit
        self.msgs_per_sec = msgs_per_sec
        self.burst = burst
        self.max_peers = max_peers
        self._credit = float(burst)
        self._stamp: float | None = None
        self._peers: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def check(self, dst: bytes, now: float) -> str | None:
        """None if a message to `dst` may go now, else the counter to count
        it in (Linux's IcmpOutRateLimitGlobal / IcmpOutRateLimitHost)."""
        if self._stamp is not None:
            self._credit = min(
                float(self.burst),
                self._credit + (now - self._stamp) * self.msgs_per_sec,
            )
        self._stamp = now
        if self._credit < 1.0:
            return "IcmpOutRateLimitGlobal"
        if self.ratelimit > 0:
            cap = self.BURST_FACTOR * self.ratelimit
            tokens, last = self._peers.get(dst, (cap, now))
            tokens = min(cap, tokens + (now - last))
            if tokens < self.ratelimit:
                self._peers[dst] = (tokens, now)
                return "IcmpOutRateLimitHost"
            self._peers[dst] = (tokens - self.ratelimit, now)
            self._peers.move_to_end(dst)
            while len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        self._credit -= 1.0
        return None
