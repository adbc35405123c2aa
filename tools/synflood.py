#!/usr/bin/env python3
"""A bounded, spoofed SYN flood into a TUN device, for testing ustack's SYN
queue and SYN cookies. Only for use inside a throwaway network namespace.

    ip netns exec NS python tools/synflood.py --count 20000 --rate 5000

Writes IPv4 SYNs straight into the TUN device (AF_PACKET, SOCK_DGRAM,
ETH_P_IP, bound to --iface), so ustack reads them as if the kernel had routed
them. Sources are random addresses of --subnet other than --exclude, source
ports and sequence numbers random. Guards: it refuses to run outside a named
network namespace (`ip netns`), refuses sources outside private address space, and caps
--count at 20,000 and --rate at 50,000 packets per second.

Prints one JSON line: {"sent": N, "seconds": T, "sources": K}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import sys
import time

from ustack.wire.ipv4 import build_tcp_packet
from ustack.wire.tcp import SYN, TcpSegment

MAX_COUNT = 20_000
MAX_RATE = 50_000
ETH_P_IP = 0x0800


def in_named_netns() -> bool:
    """True inside a namespace made by `ip netns add` (tools/netns.py does)."""
    try:
        mine = os.stat("/proc/self/ns/net")
        entries = os.listdir("/run/netns")
    except OSError:
        return False
    for entry in entries:
        try:
            st = os.stat(os.path.join("/run/netns", entry))
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
            return True
    return False


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iface", default="ustack0")
    p.add_argument("--dst", default="10.203.0.2")
    p.add_argument("--dport", type=int, default=80)
    p.add_argument("--subnet", default="10.203.0.0/24")
    p.add_argument(
        "--exclude",
        default="10.203.0.1,10.203.0.2",
        help="comma-separated addresses never used as sources",
    )
    p.add_argument("--count", type=int, default=MAX_COUNT)
    p.add_argument("--rate", type=float, default=5000.0, help="packets per second")
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not in_named_netns():
        print(
            "synflood: refusing to run outside a network namespace "
            "(use tools/netns.py or ip netns exec)",
            file=sys.stderr,
        )
        return 2
    subnet = ipaddress.IPv4Network(args.subnet)
    if not subnet.is_private:
        print(f"synflood: {subnet} is not private address space", file=sys.stderr)
        return 2
    if not 0 < args.count <= MAX_COUNT or not 0 < args.rate <= MAX_RATE:
        print(
            f"synflood: --count must be 1..{MAX_COUNT}, --rate 1..{MAX_RATE}",
            file=sys.stderr,
        )
        return 2
    exclude = {ipaddress.IPv4Address(a) for a in args.exclude.split(",") if a}
    sources = [a.packed for a in subnet.hosts() if a not in exclude]
    if not sources:
        print("synflood: no source addresses left", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    dst = ipaddress.IPv4Address(args.dst).packed
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((args.iface, socket.htons(ETH_P_IP)))
    used: set[bytes] = set()
    start = time.monotonic()
    batch = max(1, int(args.rate // 100))  # pace in 10 ms slices
    sent = 0
    while sent < args.count:
        for _ in range(min(batch, args.count - sent)):
            src = rng.choice(sources)
            used.add(src)
            seg = TcpSegment(
                rng.randrange(1024, 65536),
                args.dport,
                rng.getrandbits(32),
                0,
                SYN,
                64240,
                mss=1460,
                wscale=7,
            )
            packet = build_tcp_packet(src, dst, seg, rng.getrandbits(16))
            try:
                sock.send(packet)
            except BlockingIOError:
                continue  # TUN queue full: the packet is lost, as on a wire
            sent += 1
        due = start + sent / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - start
    print(
        json.dumps({"sent": sent, "seconds": round(elapsed, 3), "sources": len(used)})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
