#!/usr/bin/env python3
"""The kernel baseline for tools/bench.py: ustack's own services on kernel TCP.

The same protocol objects `ustack up` runs from its packet loop
(ustack.services.make_protocol_factory: echo 7, discard 9, chargen 19,
http 80), each connection driven by one trio task on a kernel TCP socket
(ustack.services.stream_driver; trio.open_tcp_listeners, backlog 128 as
`ustack up` uses), so the kernel baseline differs from ustack only in the
TCP/IP stack and the loop underneath. `--streams` serves the stream handlers
instead (make_handler, the pre-issue-11 baseline); `--busy-poll US` sets
SO_BUSY_POLL (the kernel's counterpart of ustack's `--set busy_poll=US`).
Run in the server namespace; prints `kserver ready` when listening.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ustack.services import SERVICES, make_handler, make_protocol_factory  # noqa: E402
from ustack.services.stream_driver import protocol_handler  # noqa: E402

SO_BUSY_POLL = getattr(socket, "SO_BUSY_POLL", 46)  # Linux asm-generic/socket.h


async def serve(ip: str, keepalive: bool, streams: bool, busy_poll: int) -> None:
    async with trio.open_nursery() as nursery:
        for name, port in SERVICES.items():
            listeners = await trio.open_tcp_listeners(port, host=ip, backlog=128)
            if busy_poll:
                # SO_BUSY_POLL is inherited by accepted sockets (sk_clone).
                for listener in listeners:
                    listener.socket.setsockopt(
                        socket.SOL_SOCKET, SO_BUSY_POLL, busy_poll
                    )
            if streams:
                handler = make_handler(name, keepalive=keepalive)
            else:
                factory = make_protocol_factory(name)
                handler = protocol_handler(factory, name, keepalive=keepalive)
            await nursery.start(trio.serve_listeners, handler, listeners)
        print("kserver ready", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ip", default="10.203.0.2")
    p.add_argument("--keepalive", action="store_true")
    p.add_argument("--streams", action="store_true", help="stream handlers")
    p.add_argument(
        "--busy-poll",
        type=int,
        default=0,
        metavar="US",
        help="SO_BUSY_POLL (µs) on every socket, as ustack's --set busy_poll",
    )
    a = p.parse_args()
    # As many sockets as the hard limit allows (raising it needs CAP_SYS_RESOURCE).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Until SIGTERM ends the process.
    trio.run(serve, a.ip, a.keepalive, a.streams, a.busy_poll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
