"""The link interface: how the stack exchanges raw IPv4 packets.

A link is anything that can hand the stack whole IPv4 packets and take them
back: a TUN device (`ustack.link.tun.TunLink`) or the in-memory pair used by
the simulator (`ustack.link.memory`).
"""

from __future__ import annotations

from typing import Protocol


class Link(Protocol):
    """Packet I/O for one stack. All methods but `wait_readable` never block."""

    mtu: int

    async def wait_readable(self) -> None:
        """Return when `read_batch` may have packets (spurious wake-ups allowed)."""

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        """Return the packets available now (possibly none); never blocks."""

    def write(self, packet: bytes) -> None:
        """Send one IPv4 packet; a full device drops it (counted), never blocks."""

    def close(self) -> None:
        """Release the device. Idempotent."""
