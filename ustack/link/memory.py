"""In-memory links: two stacks wired back to back, for the simulator."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

# A filter sees each packet on its way out and returns the packets to deliver
# (none to drop it, two to duplicate it).
PacketFilter = Callable[[bytes], list[bytes]]


class MemoryLink:
    """One end of a point-to-point link held in memory."""

    def __init__(self, mtu: int = 1500) -> None:
        self.mtu = mtu
        self.peer: MemoryLink | None = None
        self.inbox: deque[bytes] = deque()
        self.sent: list[bytes] | None = None  # set to a list to capture output
        self.filter: PacketFilter | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False

    async def wait_readable(self) -> None:
        if self.inbox:
            await trio.lowlevel.checkpoint()
            return
        await self._lot.park()

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        inbox = self.inbox
        n = min(len(inbox), max_packets)
        return [inbox.popleft() for _ in range(n)]

    def write(self, packet: bytes) -> None:
        if self.sent is not None:
            self.sent.append(packet)
        peer = self.peer
        if peer is None or peer.closed or self.closed:
            return
        packets = self.filter(packet) if self.filter is not None else [packet]
        if packets:
            peer.inbox.extend(packets)
            peer._lot.unpark_all()

    def inject(self, packet: bytes) -> None:
        """Deliver a packet to this end as if the peer had sent it."""
        self.inbox.append(packet)
        self._lot.unpark_all()

    def close(self) -> None:
        self.closed = True


def memory_link_pair(mtu: int = 1500) -> tuple[MemoryLink, MemoryLink]:
    a, b = MemoryLink(mtu), MemoryLink(mtu)
    a.peer, b.peer = b, a
    return a, b
