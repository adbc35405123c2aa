"""echo (RFC 862) and discard (RFC 863) over UDP, on the public API:
`stack.udp_bind(port)` gives a trio Channel of datagrams."""

from __future__ import annotations

import contextlib
from typing import Any

import trio

# Services that also exist over UDP, and their well-known ports.
UDP_SERVICES: dict[str, int] = {"echo": 7, "discard": 9}
# Sources never answered: port 0, and the small services that would answer
# back (echo, discard, daytime, qotd, chargen): one spoofed datagram between
# two such services would otherwise bounce forever (as inetd's loop check).
_NO_REPLY_PORTS = frozenset({0, 7, 9, 13, 17, 19})


async def serve_udp_echo(endpoint: trio.abc.Channel[Any]) -> None:
    """Send every datagram back to where it came from (RFC 862)."""
    async for datagram in endpoint:
        if datagram[1][1] in _NO_REPLY_PORTS:
            continue
        # An error for one client (none expected: the socket is unconnected)
        # must not stop the service, nor cost a log line per datagram.
        with contextlib.suppress(OSError):
            await endpoint.send(datagram)


async def serve_udp_discard(endpoint: trio.abc.Channel[Any]) -> None:
    """Read and drop every datagram (RFC 863)."""
    async for _ in endpoint:
        pass


async def run_udp_services(
    stack: Any,
    names: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bind the UDP side of each named service that has one; serve until
    cancelled."""
    serve = {"echo": serve_udp_echo, "discard": serve_udp_discard}
    async with trio.open_nursery() as nursery:
        for name in names:
            if name in UDP_SERVICES:
                endpoint = await stack.udp_bind(UDP_SERVICES[name])
                nursery.start_soon(serve[name], endpoint)
        task_status.started()
