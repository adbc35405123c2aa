"""IPv4 reassembly (RFC 791 3.2, RFC 815 holes), bounded like Linux.

Sans-IO: `add(...)` takes `now` and returns a whole datagram when the last
hole fills. Limits follow Linux's ipfrag sysctls: `high_thresh` bytes held
at most (new fragments are refused above it, as Linux does since 4.17),
`timeout` seconds per datagram (ipfrag_time, 30 s), and `max_frags` pieces
per datagram. A fragment that overlaps another is a reason to drop the whole
datagram (Linux for IPv4 since 2018, the reasoning of RFC 5722); an exact
duplicate is ignored, as Linux does.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

FragKey = tuple[bytes, bytes, int, int]  # src, dst, protocol, identification
# What one held fragment costs beyond its payload (its objects), charged
# against `high_thresh` as Linux charges skb->truesize, so floods of tiny
# fragments are bounded in memory, not only in payload bytes.
FRAGMENT_OVERHEAD = 128
_MF = 0x2000
_OFFSET = 0x1FFF


@dataclass(slots=True)
class _Datagram:
    deadline: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> data
    held: int = 0  # payload bytes
    total: int | None = None  # payload length, known once the last piece came
    first_packet: bytes = b""  # offset-0 fragment's start, to quote in ICMP


@dataclass(slots=True)
class Expired:
    """A datagram that timed out; `quote` is set when its first fragment had
    arrived (then RFC 792/1122 3.3.2 let us send Time Exceeded code 1)."""

    src: bytes
    quote: bytes | None


class Reassembler:
    def __init__(
        self,
        counters: Counter[str],
        high_thresh: int = 4 << 20,
        timeout: float = 30.0,
        max_frags: int = 64,
    ) -> None:
        self.counters = counters
        self.high_thresh = high_thresh
        self.timeout = timeout
        self.max_frags = max_frags
        self.held = 0  # bytes charged for all queues (payload + overhead)
        # Insertion order is deadline order (every datagram lives `timeout`).
        self._queues: OrderedDict[FragKey, _Datagram] = OrderedDict()

    def __len__(self) -> int:
        return len(self._queues)

    @property
    def deadline(self) -> float | None:
        """When the oldest incomplete datagram times out (None: nothing held)."""
        for datagram in self._queues.values():
            return datagram.deadline
        return None

    def add(
        self,
        key: FragKey,
        frag: int,
        payload: bytes | memoryview,
        packet_start: bytes,
        now: float,
    ) -> tuple[bytes, bytes] | None:
        """One fragment (`frag`: MF | offset field); when this completes the
        datagram, its payload and the first fragment's `packet_start` (its
        header and first bytes, to quote in ICMP errors), else None."""
        counters = self.counters
        counters["ReasmReqds"] += 1
        offset = (frag & _OFFSET) * 8
        more = bool(frag & _MF)
        data = bytes(payload)
        end = offset + len(data)
        queue = self._queues.get(key)
        # RFC 791: every fragment but the last carries a multiple of 8 bytes;
        # nothing may end beyond the largest IP packet.
        if (more and (len(data) % 8 or not data)) or end + 20 > 65535:
            self._fail(key, queue)
            return None
        if queue is None:
            if self.held + len(data) + FRAGMENT_OVERHEAD > self.high_thresh:
                counters["ReasmFails"] += 1  # out of room: refuse (Linux)
                return None
            queue = _Datagram(now + self.timeout)
            self._queues[key] = queue
        elif self.held + len(data) + FRAGMENT_OVERHEAD > self.high_thresh:
            self._fail(key, queue)
            return None
        if queue.pieces.get(offset) == data and (more or queue.total == end):
            return None  # an exact duplicate is ignored (Linux IPFRAG_DUP)
        if not more:
            if queue.total is not None and queue.total != end:
                self._fail(key, queue)
                return None
            queue.total = end
        if queue.total is not None and end > queue.total:
            self._fail(key, queue)
            return None
        for start, piece in queue.pieces.items():
            if start < end and offset < start + len(piece):
                self._fail(key, queue)  # overlap: the whole datagram goes
                return None
        if len(queue.pieces) >= self.max_frags:
            self._fail(key, queue)
            return None
        queue.pieces[offset] = data
        queue.held += len(data)
        self.held += len(data) + FRAGMENT_OVERHEAD
        if offset == 0:
            queue.first_packet = packet_start
        if queue.total is None or queue.held != queue.total:
            return None
        # No overlaps and the bytes add up to the total: no holes remain.
        del self._queues[key]
        self.held -= _charge(queue)
        counters["ReasmOKs"] += 1
        payload = b"".join(queue.pieces[start] for start in sorted(queue.pieces))
        return payload, queue.first_packet

    def expire(self, now: float) -> list[Expired]:
        """Drop datagrams past their deadline (ReasmTimeout, ReasmFails)."""
        gone: list[Expired] = []
        queues = self._queues
        while queues:
            key, datagram = next(iter(queues.items()))
            if datagram.deadline > now:
                break
            del queues[key]
            self.held -= _charge(datagram)
            self.counters["ReasmTimeout"] += 1
            self.counters["ReasmFails"] += 1
            gone.append(Expired(key[0], datagram.first_packet or None))
        return gone

    def _fail(self, key: FragKey, queue: _Datagram | None) -> None:
        self.counters["ReasmFails"] += 1
        if queue is not None:
            del self._queues[key]
            self.held -= _charge(queue)


def _charge(datagram: _Datagram) -> int:
    return datagram.held + len(datagram.pieces) * FRAGMENT_OVERHEAD
