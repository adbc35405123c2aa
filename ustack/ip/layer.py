"""The stack's IP layer beside TCP: reassembly on input, fragmenting output,
ICMP echo and errors (both ways), the path MTU cache.

The stack calls `reassemble`, `input_icmp`, `send` and `send_error`; ICMP
errors about our own packets go to `on_error(err, now)`, which the stack
sets to demultiplex them to TCP or UDP.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ustack.config import Settings
from ustack.ip.fragment import ipv4_packets
from ustack.ip.icmp_errors import IcmpError, IcmpRateLimit, PathMtuCache, classify
from ustack.ip.reassembly import Reassembler
from ustack.wire.icmp import (
    DEST_UNREACHABLE,
    ECHO_REQUEST,
    ERROR_TYPES,
    FRAGMENTATION_NEEDED,
    PARAMETER_PROBLEM,
    REASSEMBLY_TIME_EXCEEDED,
    SOURCE_QUENCH,
    TIME_EXCEEDED,
    echo_reply,
    error_message,
    parse_icmp,
    parse_quoted,
)
from ustack.wire.ipv4 import PROTO_ICMP, Ipv4Packet
from ustack.wire.tcp import WireError

# Linux's names for the ICMP types it counts (/proc/net/snmp "Icmp:").
_IN_NAMES = {
    DEST_UNREACHABLE: "IcmpInDestUnreachs",
    SOURCE_QUENCH: "IcmpInSrcQuenchs",
    TIME_EXCEEDED: "IcmpInTimeExcds",
    PARAMETER_PROBLEM: "IcmpInParmProbs",
    ECHO_REQUEST: "IcmpInEchos",
    0: "IcmpInEchoReps",
}
# ICMP queries and replies (RFC 792): echo, timestamp, information, mask.
_QUERY_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
_OUT_NAMES = {
    DEST_UNREACHABLE: "IcmpOutDestUnreachs",
    TIME_EXCEEDED: "IcmpOutTimeExcds",
}


def _ignore_error(err: IcmpError, now: float) -> None:
    pass


def _is_icmp_error(packet: bytes | memoryview) -> bool:
    """Whether `packet` carries an ICMP error (or an unknown ICMP type, which
    Linux treats the same way)."""
    if len(packet) < 21 or packet[9] != PROTO_ICMP:
        return False
    ihl = (packet[0] & 0xF) * 4
    if len(packet) <= ihl:
        return True
    return packet[ihl] not in _QUERY_TYPES


class IpLayer:
    def __init__(
        self,
        ip: bytes,
        mtu: int,
        settings: Settings,
        counters: Counter[str],
        write: Callable[[bytes], None],
        next_ident: Callable[[bytes], int],
    ) -> None:
        self.ip = ip
        self.mtu = mtu  # the link's MTU
        self.settings = settings
        self.counters = counters
        self._write = write
        self._next_ident = next_ident
        self.reassembler = Reassembler(
            counters,
            settings.ipfrag_high_thresh,
            settings.ipfrag_time,
            settings.ipfrag_max_frags,
        )
        self.pmtu = PathMtuCache(settings.min_pmtu, settings.mtu_expires)
        self.ratelimit = IcmpRateLimit(
            settings.icmp_ratelimit,
            settings.icmp_msgs_per_sec,
            settings.icmp_msgs_burst,
        )
        self.on_error: Callable[[IcmpError, float], None] = _ignore_error

    # -- path MTU -------------------------------------------------------------

    def mtu_to(self, dst: bytes, now: float) -> int:
        """The MTU to use towards `dst`: the link's, or a smaller learned one."""
        return self.pmtu.get(dst, now, self.mtu)

    def learn_mtu(self, dst: bytes, mtu: int, now: float) -> int | None:
        """Fragmentation needed (RFC 1191): the lowered path MTU, or None."""
        return self.pmtu.learn(dst, mtu, now, self.mtu)

    # -- input ------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        return self.reassembler.deadline

    def reassemble(
        self, ip: Ipv4Packet, packet: bytes | memoryview, now: float
    ) -> tuple[Ipv4Packet, bytes] | None:
        """A fragment in; the whole datagram (and the first fragment's start,
        to quote in ICMP errors) once complete."""
        key = (ip.src, ip.dst, ip.proto, ip.ident)
        start = bytes(packet[: ip.header_len + 8])
        done = self.reassembler.add(key, ip.frag, ip.payload, start, now)
        if done is None:
            return None
        payload, first = done
        whole = Ipv4Packet(
            ip.src, ip.dst, ip.proto, ip.ttl, ip.ident, payload, 20, 20 + len(payload)
        )
        return whole, first

    def expire(self, now: float) -> None:
        """Drop timed-out datagrams; RFC 1122 3.3.2 / RFC 792: say so with
        Time Exceeded (code 1) when the first fragment had come."""
        for gone in self.reassembler.expire(now):
            if gone.quote is not None:
                self.send_error(
                    gone.src, gone.quote, TIME_EXCEEDED, REASSEMBLY_TIME_EXCEEDED, now
                )

    def input_icmp(self, src: bytes, payload: bytes | memoryview, now: float) -> None:
        counters = self.counters
        counters["IcmpInMsgs"] += 1
        try:
            msg = parse_icmp(payload)
        except WireError as exc:
            counters["IcmpInErrors"] += 1
            counters["IcmpInErrors." + exc.reason] += 1
            if exc.reason == "bad_icmp_csum":
                counters["IcmpInCsumErrors"] += 1
            return
        name = _IN_NAMES.get(msg.type)
        if name is not None:
            counters[name] += 1
        if msg.type == ECHO_REQUEST:
            self.send(src, PROTO_ICMP, echo_reply(payload), now)
            counters["IcmpOutMsgs"] += 1
            counters["IcmpOutEchoReps"] += 1
            return
        if msg.type not in ERROR_TYPES:
            return
        try:
            quoted = parse_quoted(msg.data)
        except WireError as exc:
            counters["IcmpInErrors"] += 1
            counters["IcmpInErrors." + exc.reason] += 1
            return
        if quoted.src != self.ip:
            counters["IcmpInErrors"] += 1
            counters["IcmpInErrors.not_ours"] += 1
            return
        err = classify(msg.type, msg.code, msg.ident << 16 | msg.seq, quoted)
        if err is not None:
            self.on_error(err, now)

    # -- output -----------------------------------------------------------------

    def send(self, dst: bytes, proto: int, payload: bytes, now: float) -> None:
        """A datagram of `proto`, fragmented to the path MTU if need be."""
        mtu = self.mtu_to(dst, now)
        # A datagram that fits goes with DF, whose ID may be 0 (RFC 6864
        # 4.1); fragments need an ID unique towards `dst` (next_ident).
        ident = 0 if len(payload) + 20 <= mtu else self._next_ident(dst)
        packets = ipv4_packets(self.ip, dst, proto, payload, ident, mtu)
        if len(packets) > 1:
            self.counters["FragOKs"] += 1
            self.counters["FragCreates"] += len(packets)
        for packet in packets:
            self._write(packet)

    def send_error(
        self,
        dst: bytes,
        original: bytes | memoryview,
        typ: int,
        code: int,
        now: float,
        rest: int = 0,
    ) -> None:
        """An ICMP error about `original` (a packet we received), within
        Linux's rate limits; PMTU messages are never limited (as Linux)."""
        if _is_icmp_error(original):
            return  # never an error about an error (RFC 1122 3.2.2)
        pmtu = typ == DEST_UNREACHABLE and code == FRAGMENTATION_NEEDED
        if not pmtu:
            limited = self.ratelimit.check(dst, now)
            if limited is not None:
                self.counters[limited] += 1
                return
        self.send(dst, PROTO_ICMP, error_message(typ, code, rest, original), now)
        self.counters["IcmpOutMsgs"] += 1
        self.counters[_OUT_NAMES.get(typ, "IcmpOutErrors")] += 1
