#!/usr/bin/env python3
"""Benchmarks: ustack against the kernel, each run in a fresh network namespace.

    sudo .venv/bin/python tools/bench.py [--runs 3] [--mb 100] [--json out.json]

Scenarios (each repeated --runs times; median and spread reported):
- bulk-out: curl downloads N MB from ustack's http service (/bytes/N)
- bulk-in:  a kernel client sends N MB to ustack's discard service
Figures are wall-clock throughput measured by the client side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import UstackProcess, start_ustack, temp_netns  # noqa: E402

USTACK_IP = "10.203.0.2"

BULK_IN_CLIENT = """
import socket, sys, time
n = int(sys.argv[1])
chunk = bytes(range(256)) * 256
s = socket.create_connection(("10.203.0.2", 9))
start = time.perf_counter()
sent = 0
while sent < n:
    sent += s.send(chunk[: n - sent])
s.shutdown(socket.SHUT_WR)
s.recv(1)  # discard closes after EOF: everything was received
print(time.perf_counter() - start)
"""


def bulk_out(stack: UstackProcess, nbytes: int) -> float:
    out = stack.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
        f"http://{USTACK_IP}/bytes/{nbytes}", timeout=300,
    ).stdout.decode().split()
    size, seconds = int(out[0]), float(out[1])
    if size != nbytes:
        raise RuntimeError(f"bulk-out: got {size} bytes, expected {nbytes}")
    return nbytes / seconds / 1e6


def bulk_in(stack: UstackProcess, nbytes: int) -> float:
    seconds = float(
        stack.python(BULK_IN_CLIENT, str(nbytes), timeout=300).stdout.decode()
    )
    return nbytes / seconds / 1e6


SCENARIOS: dict[str, tuple[str, Callable[[UstackProcess, int], float]]] = {
    "bulk-out": ("MB/s", bulk_out),
    "bulk-in": ("MB/s", bulk_in),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100, help="transfer size in MB")
    parser.add_argument("--json", type=Path, help="also write results here")
    parser.add_argument("--only", help="comma-separated scenario names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCENARIOS)
    nbytes = args.mb * 1024 * 1024
    results: dict[str, dict[str, object]] = {}
    for name in names:
        unit, fn = SCENARIOS[name]
        samples = []
        for _ in range(args.runs):
            with temp_netns("ustack-bench-") as ns:
                stack = start_ustack(ns)
                try:
                    samples.append(fn(stack, nbytes))
                finally:
                    stack.stop()
        results[name] = {
            "unit": unit,
            "median": statistics.median(samples),
            "min": min(samples),
            "max": max(samples),
            "samples": samples,
        }
        print(
            f"{name:10} median {statistics.median(samples):8.1f} {unit}"
            f"  (min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})",
            flush=True,
        )
    if args.json:
        meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "mb": args.mb}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
