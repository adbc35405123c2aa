"""The stack's side of UDP: bound ports, demultiplexing, receive queues.

One `UdpBinding` per socket, one socket per port (no SO_REUSEADDR/PORT). A
datagram goes to the socket bound to its port, unless that socket is
connected to another peer; nobody means port unreachable (RFC 1122 4.1.3.1).
Receive queues are bounded in bytes like Linux's SO_RCVBUF: a datagram that
does not fit is dropped and counted (UdpRcvbufErrors), so a slow reader
cannot make the stack grow.
"""

from __future__ import annotations

import errno
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator

import trio

from ustack.config import Settings
from ustack.errors import os_error
from ustack.ip.icmp_errors import IcmpError
from ustack.wire.udp import PROTO_UDP, WireError, build_udp, parse_udp

# What one queued datagram costs beyond its payload, standing in for the
# sk_buff overhead Linux charges against SO_RCVBUF (skb->truesize).
DATAGRAM_OVERHEAD = 256

Address = tuple[bytes, int]  # (IPv4 address, port)


class UdpBinding:
    """One UDP socket as the stack sees it."""

    __slots__ = ("port", "peer", "queue", "queued", "rcvbuf", "lot", "error", "closed")

    def __init__(self, port: int, rcvbuf: int) -> None:
        self.port = port
        self.peer: Address | None = None  # set by connect()
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.queued = 0  # bytes charged against rcvbuf
        self.rcvbuf = rcvbuf
        self.lot = trio.lowlevel.ParkingLot()
        self.error: int = 0  # pending errno from an ICMP error (connected only)
        self.closed = False

    def take(self) -> tuple[bytes, Address] | None:
        if not self.queue:
            return None
        data, source = self.queue.popleft()
        self.queued -= len(data) + DATAGRAM_OVERHEAD
        return data, source


class UdpTable:
    """Ports, demultiplexing and queues; `send_ip(dst, proto, payload)`
    hands finished datagrams to the IP layer."""

    def __init__(
        self,
        ip: bytes,
        settings: Settings,
        counters: Counter[str],
        send_ip: Callable[[bytes, int, bytes], None],
    ) -> None:
        self.ip = ip
        self.settings = settings
        self.counters = counters
        self._send_ip = send_ip
        self._ports: dict[int, UdpBinding] = {}
        self._rng = random.SystemRandom()

    # -- ports --------------------------------------------------------------

    def bind(self, port: int) -> UdpBinding:
        """A binding on `port` (0: a free ephemeral port, RFC 6056 3.3.1)."""
        if port == 0:
            port = self._ephemeral_port()
        elif port in self._ports:
            raise os_error(errno.EADDRINUSE, f"UDP port {port} is in use")
        binding = UdpBinding(port, self.settings.udp_rcvbuf)
        self._ports[port] = binding
        return binding

    def unbind(self, binding: UdpBinding) -> None:
        binding.closed = True
        if self._ports.get(binding.port) is binding:
            del self._ports[binding.port]
        binding.queue.clear()
        binding.queued = 0
        binding.lot.unpark_all()

    def _ephemeral_port(self) -> int:
        low, high = self.settings.port_low, self.settings.port_high
        span = high - low + 1
        start = self._rng.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if port not in self._ports:
                return port
        raise os_error(errno.EADDRNOTAVAIL, "no free ephemeral UDP port")

    def bindings(self) -> Iterator[UdpBinding]:
        return iter(list(self._ports.values()))

    # -- input --------------------------------------------------------------

    def input(self, src: bytes, payload: bytes | memoryview, verify: bool) -> bool:
        """One datagram for us; False when no socket wants it (the caller
        answers port unreachable)."""
        counters = self.counters
        try:
            datagram = parse_udp(payload, src, self.ip, verify)
        except WireError as exc:
            counters["UdpInErrors"] += 1
            if exc.reason == "bad_udp_csum":
                counters["UdpInCsumErrors"] += 1
            return True  # malformed: dropped, never answered (RFC 1122 3.2.2)
        binding = self._lookup(src, datagram.src_port, datagram.dst_port)
        if binding is None:
            counters["UdpNoPorts"] += 1
            return False
        cost = len(datagram.payload) + DATAGRAM_OVERHEAD
        if binding.queued + cost > binding.rcvbuf:
            counters["UdpRcvbufErrors"] += 1
            counters["UdpInErrors"] += 1
            return True
        binding.queue.append((datagram.payload, (src, datagram.src_port)))
        binding.queued += cost
        counters["UdpInDatagrams"] += 1
        binding.lot.unpark_all()
        return True

    def _lookup(self, src: bytes, sport: int, dport: int) -> UdpBinding | None:
        binding = self._ports.get(dport)
        if binding is None or binding.peer not in (None, (src, sport)):
            return None  # a connected socket hears only its peer
        return binding

    def on_icmp_error(self, err: IcmpError) -> None:
        """Linux (__udp4_lib_err): a connected socket learns hard errors
        (e.g. ECONNREFUSED from port unreachable) on its next call."""
        transport = err.quoted.transport
        sport = int.from_bytes(transport[0:2], "big")
        dport = int.from_bytes(transport[2:4], "big")
        binding = self._ports.get(sport)
        if binding is not None and err.hard and binding.peer == (err.quoted.dst, dport):
            binding.error = err.errno
            binding.lot.unpark_all()

    # -- output -------------------------------------------------------------

    def send(self, binding: UdpBinding, data: bytes, dst: Address) -> None:
        packet = build_udp(binding.port, dst[1], data, self.ip, dst[0])
        self._send_ip(dst[0], PROTO_UDP, packet)
        self.counters["UdpOutDatagrams"] += 1
