#!/usr/bin/env python3
"""Ways in, side by side: the trio API, the blocking socket, and the bridge.

    sudo .venv/bin/python tools/bench.py ways-in [--runs N] [--mb MB]
                                                 [--rr-count N] [--json FILE]

One stack (`ustack.sync.open_tun_stack`, offload on as `ustack up` has it)
in a fresh network namespace, and the kernel-side services of
tools/bench_kserver.py (discard 9, chargen 19, echo 7 on 10.203.0.1) in a
second process in the same namespace. Each run measures, in rotating order,
the same work through three ways in:

- trio: `TcpStream` code running in the stack's own trio thread;
- sync: `SyncSocket` from the main thread (one cross-thread call per
  send/recv, carried by `trio.from_thread`);
- bridge: `SyncSocket.bridge()`, the kernel socketpair that `select` and
  `ssl` need (two more copies through the kernel per byte).

Scenarios: bulk-out (MB/s sent into discard, until its EOF), bulk-in (MB/s
read from chargen), rr (1-byte echo ping-pong, p50/p99 us); each also reports
the CPU time this process spent (ms per MB, us per exchange). Medians over
runs; ratios are against trio in the same run set.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS.parent))

from netns import temp_netns  # noqa: E402

HOST = "10.203.0.1"  # the kernel side, where bench_kserver listens
ECHO, DISCARD, CHARGEN = 7, 9, 19
CHUNK = 256 * 1024
MODES = ("trio", "sync", "bridge")
WARMUP = 200


# --------------------------------------------------------------------------
# trio: runs inside the stack's thread (SyncStack.call)
async def trio_bulk_out(stack: Any, nbytes: int) -> float:
    t0 = time.perf_counter()
    stream = await stack.connect((HOST, DISCARD))
    block = bytes(CHUNK)
    left = nbytes
    while left > 0:
        await stream.send_all(block[: min(left, CHUNK)])
        left -= CHUNK
    await stream.send_eof()
    while await stream.receive_some(CHUNK):
        pass
    await stream.aclose()
    return time.perf_counter() - t0


async def trio_bulk_in(stack: Any, nbytes: int) -> float:
    t0 = time.perf_counter()
    stream = await stack.connect((HOST, CHARGEN))
    got = 0
    while got < nbytes:
        data = await stream.receive_some(CHUNK)
        if not data:
            raise RuntimeError("chargen closed early")
        got += len(data)
    await stream.aclose()
    return time.perf_counter() - t0


async def trio_rr(stack: Any, count: int) -> list[int]:
    stream = await stack.connect((HOST, ECHO))
    stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter_ns
    lat = []
    for i in range(WARMUP + count):
        t0 = clock()
        await stream.send_all(b"x")
        if not await stream.receive_some(1):
            raise RuntimeError("echo closed")
        if i >= WARMUP:
            lat.append(clock() - t0)
    await stream.aclose()
    return lat


# --------------------------------------------------------------------------
# blocking: SyncSocket, or the bridged kernel socket (same methods)
def open_blocking(st: Any, port: int, bridged: bool) -> Any:
    sock = st.create_connection((HOST, port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock.bridge() if bridged else sock


def blocking_bulk_out(st: Any, nbytes: int, bridged: bool) -> float:
    t0 = time.perf_counter()
    sock = open_blocking(st, DISCARD, bridged)
    block = memoryview(bytes(CHUNK))
    left = nbytes
    while left > 0:
        sock.sendall(block[: min(left, CHUNK)])
        left -= CHUNK
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(CHUNK):
        pass
    sock.close()
    return time.perf_counter() - t0


def blocking_bulk_in(st: Any, nbytes: int, bridged: bool) -> float:
    t0 = time.perf_counter()
    sock = open_blocking(st, CHARGEN, bridged)
    got = 0
    while got < nbytes:
        data = sock.recv(CHUNK)
        if not data:
            raise RuntimeError("chargen closed early")
        got += len(data)
    sock.close()
    return time.perf_counter() - t0


def blocking_rr(st: Any, count: int, bridged: bool) -> list[int]:
    sock = open_blocking(st, ECHO, bridged)
    clock = time.perf_counter_ns
    lat = []
    for i in range(WARMUP + count):
        t0 = clock()
        sock.sendall(b"x")
        if not sock.recv(1):
            raise RuntimeError("echo closed")
        if i >= WARMUP:
            lat.append(clock() - t0)
    sock.close()
    return lat


def measure(
    st: Any, mode: str, scenario: str, p: argparse.Namespace
) -> dict[str, float]:
    """The scenario's figures, plus this process's CPU time (all threads: the
    stack's and the caller's, user + system) per MB or per exchange, which a
    loaded machine disturbs less than wall-clock figures."""
    cpu0 = time.process_time()
    values = _measure(st, mode, scenario, p)
    cpu = time.process_time() - cpu0
    if scenario == "rr":
        values["cpu_us/rr"] = cpu * 1e6 / (p.rr_count + WARMUP)
    else:
        values["cpu_ms/MB"] = cpu * 1e3 / p.mb
    return values


def _measure(
    st: Any, mode: str, scenario: str, p: argparse.Namespace
) -> dict[str, float]:
    nbytes = p.mb * 1_000_000
    if scenario == "rr":
        if mode == "trio":
            lat = st.call(trio_rr, st.stack, p.rr_count)
        else:
            lat = blocking_rr(st, p.rr_count, mode == "bridge")
        lat.sort()
        n = len(lat)
        return {"p50_us": lat[n // 2] / 1000, "p99_us": lat[(n * 99) // 100] / 1000}
    trio_fn: Callable[..., Any] = (
        trio_bulk_out if scenario == "bulk-out" else trio_bulk_in
    )
    blocking_fn = blocking_bulk_out if scenario == "bulk-out" else blocking_bulk_in
    if mode == "trio":
        seconds = st.call(trio_fn, st.stack, nbytes)
    else:
        seconds = blocking_fn(st, nbytes, mode == "bridge")
    return {"MB/s": nbytes / seconds / 1e6}


def worker(p: argparse.Namespace) -> int:
    """Inside the namespace: bring the stack up, run every mode, print JSON."""
    import ustack.sync

    with ustack.sync.open_tun_stack(offload=not p.no_offload, mtu=p.mtu) as st:
        kserver = subprocess.Popen(
            [sys.executable, str(TOOLS / "bench_kserver.py"), "--ip", HOST],
            stdout=subprocess.PIPE,
        )
        try:
            assert kserver.stdout is not None
            if b"ready" not in kserver.stdout.readline():
                raise RuntimeError("bench_kserver did not start")
            for run in range(p.runs):
                modes = MODES[run % 3 :] + MODES[: run % 3]
                for scenario in ("bulk-out", "bulk-in", "rr"):
                    for mode in modes:
                        values = measure(st, mode, scenario, p)
                        row = {"run": run, "mode": mode, "scenario": scenario}
                        print(json.dumps({**row, "values": values}), flush=True)
        finally:
            kserver.terminate()
            kserver.wait(10)
    return 0


# --------------------------------------------------------------------------
# Report
def summarize(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for scenario in ("bulk-out", "bulk-in", "rr"):
        metrics = {m for s in samples if s["scenario"] == scenario for m in s["values"]}
        for metric in sorted(metrics):
            medians = {}
            for mode in MODES:
                vals = [
                    s["values"][metric]
                    for s in samples
                    if s["scenario"] == scenario and s["mode"] == mode
                ]
                medians[mode] = statistics.median(vals) if vals else None
            rows.append({"scenario": scenario, "metric": metric, **medians})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | metric | trio | sync | bridge | sync/trio | bridge/trio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = r["trio"]

        def ratio(v: float | None, base: float | None = base) -> str:
            return f"{v / base:.2f}" if v and base else "-"

        lines.append(
            f"| {r['scenario']} | {r['metric']} | {r['trio']:,.1f} | {r['sync']:,.1f}"
            f" | {r['bridge']:,.1f} | {ratio(r['sync'])} | {ratio(r['bridge'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=50, help="bulk size, MB (10^6 bytes)")
    ap.add_argument("--rr-count", type=int, default=5000)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--no-offload", action="store_true")
    ap.add_argument("--json", type=Path, help="write samples and summary here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p = ap.parse_args(argv)
    if p.worker:
        return worker(p)
    if os.geteuid() != 0:
        print("bench ways-in: needs root (network namespace, TUN)", file=sys.stderr)
        return 1
    args = [
        "--worker",
        f"--runs={p.runs}",
        f"--mb={p.mb}",
        f"--rr-count={p.rr_count}",
        f"--mtu={p.mtu}",
    ] + (["--no-offload"] if p.no_offload else [])
    t0 = time.monotonic()
    with temp_netns("ustack-b-") as ns:
        out = ns.run(sys.executable, __file__, *args, timeout=600 + 60 * p.runs)
    samples = [json.loads(line) for line in out.stdout.decode().splitlines()]
    for s in samples:
        shown = ", ".join(f"{v:,.1f} {m}" for m, v in s["values"].items())
        print(f"[ways-in] {s['scenario']:8} {s['mode']:6} run {s['run']}: {shown}")
    rows = summarize(samples)
    print(table(rows))
    print(
        f"(medians of {p.runs} runs, {time.monotonic() - t0:.0f} s, load "
        f"{os.getloadavg()[0]:.2f})"
    )
    if p.json:
        p.json.write_text(json.dumps({"rows": rows, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
