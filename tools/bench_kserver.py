#!/usr/bin/env python3
"""The kernel baseline for tools/bench.py: ustack's own services on kernel TCP.

The same handlers `ustack up` runs (ustack.services: echo 7, discard 9,
chargen 19, http 80), served by trio on the kernel's TCP sockets
(trio.open_tcp_listeners, backlog 128 as `ustack up` uses), so the kernel
baseline differs from ustack only in the TCP/IP stack underneath. Run in the
server namespace; prints `kserver ready` when listening.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ustack.services import SERVICES, make_handler  # noqa: E402


async def serve(ip: str, keepalive: bool) -> None:
    async with trio.open_nursery() as nursery:
        for name, port in SERVICES.items():
            listeners = await trio.open_tcp_listeners(port, host=ip, backlog=128)
            handler = make_handler(name, keepalive=keepalive)
            await nursery.start(trio.serve_listeners, handler, listeners)
        print("kserver ready", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ip", default="10.203.0.2")
    p.add_argument("--keepalive", action="store_true")
    a = p.parse_args()
    # As many sockets as the hard limit allows (raising it needs CAP_SYS_RESOURCE).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(serve, a.ip, a.keepalive)  # until SIGTERM ends the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
