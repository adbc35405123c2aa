#!/usr/bin/env python3
"""Soak test: many connections with random lifetimes through an impaired
link, then a check that nothing leaked.

Two ustack stacks run in this process over an in-memory link wrapped in the
impairment layer (ustack.link.impair). Client A keeps --conns connections
going for --seconds: each sends a random amount (up to --max-bytes) to the
echo server on B, reads some or all of the echo back and ends in a random
style:

  fin        send_eof, read the echo to EOF (checked byte for byte), close
  shutdown   Socket.shutdown(SHUT_WR), read to EOF (checked), close
  rst        SO_LINGER (on, 0): close sends RST in mid-transfer
  abandon    close while the echo is still arriving (orphan; RST on data)
  keepalive  SO_KEEPALIVE with short timers, sit idle, then fin

The echo server drops clients that stay silent for 30 s (a lost RST leaves
it holding a half-open connection otherwise).

When the time is up it stops, waits up to --drain seconds for every
connection to finish, then checks both stacks: no TCB, no TIME_WAIT record
(after 2*MSL), no live or stale timer-heap entry, no orphan, no half-open or
unaccepted connection, and traced memory (tracemalloc) back near its
baseline. It prints a summary and exits 1 on any leak or corrupted echo.

    python tools/soak.py --seconds 60 --conns 200 \\
        --impair loss=2%,dup=1%,reorder=2%,delay=2ms --seed 1
    python tools/soak.py --virtual --seconds 600    # virtual time, fast

With --virtual the run uses trio's MockClock (autojump): deterministic for
a given --seed, and timers (RTO, TIME_WAIT, keepalive) cost no real time.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import resource
import socket
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field

import trio
from trio.testing import MockClock

from ustack import Settings, Stack, TcpStream
from ustack.link.impair import ImpairedLink, parse_impair_spec
from ustack.link.memory import memory_link_pair

A_IP, B_IP = "10.0.0.1", "10.0.0.2"
PORT = 7
STYLES = ("fin", "shutdown", "rst", "abandon", "keepalive")


@dataclass
class Config:
    seconds: float = 30.0
    conns: int = 200
    max_bytes: int = 200_000
    impair: str = "loss=2%,dup=1%,reorder=2%,delay=2ms"
    seed: int = 1
    drain: float = 600.0
    memory_slack: int = 4 << 20  # bytes of traced memory allowed to remain
    styles: tuple[str, ...] = STYLES


@dataclass
class Report:
    styles: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    corrupted: int = 0
    bytes_echoed: int = 0
    leaks: list[str] = field(default_factory=list)
    mem_baseline: int = 0
    mem_end: int = 0
    mem_peak: int = 0
    rss_kib: tuple[int, int] = (0, 0)
    elapsed: float = 0.0
    impair_summary: str = ""
    counters: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.leaks and self.corrupted == 0

    def summary(self) -> str:
        total = sum(self.styles.values())
        lines = [
            f"soak: {total} connections in {self.elapsed:.1f} s "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.styles.items()))})",
            f"  outcomes: {dict(sorted(self.outcomes.items()))}",
            f"  echoed and verified: {self.bytes_echoed} bytes; "
            f"corrupted: {self.corrupted}",
            f"  link: {self.impair_summary}",
            f"  traced memory: baseline {self.mem_baseline / 1e6:.2f} MB, end "
            f"{self.mem_end / 1e6:.2f} MB, peak {self.mem_peak / 1e6:.2f} MB; "
            f"max RSS {self.rss_kib[0] / 1024:.1f} -> {self.rss_kib[1] / 1024:.1f} MB",
        ]
        for name, c in self.counters.items():
            keys = (
                "ActiveOpens",
                "PassiveOpens",
                "EstabResets",
                "RetransSegs",
                "TCPTimeouts",
                "OutRsts",
                "TWExpired",
                "TCPAbortOnData",
            )
            lines.append(f"  {name}: " + " ".join(f"{k}={c[k]}" for k in keys if c[k]))
        lines.append("  leaks: none" if not self.leaks else "  LEAKS:")
        lines += [f"    {leak}" for leak in self.leaks]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def find_leaks(stack: Stack, name: str) -> list[str]:
    """Everything connection-related still held by `stack`."""
    leaks = [
        f"{name}: TCB {t.state.name} :{t.local_port}->:{t.remote_port}"
        for t in stack.connections()
    ]
    leaks += [f"{name}: TIME_WAIT record {r.key[1:]}" for r in stack.time_wait()]
    if rows := stack._timewait.pending_rows():
        leaks.append(f"{name}: {rows} TIME_WAIT rows not yet expired")
    if stack._heap:
        leaks.append(f"{name}: {len(stack._heap)} timer heap entries")
    if stack.orphan_count:
        leaks.append(f"{name}: orphan count {stack.orphan_count}")
    if stack._dirty:
        leaks.append(f"{name}: {len(stack._dirty)} dirty TCBs queued")
    for listening in stack.listeners():
        if listening.half_open or listening.ready:
            leaks.append(
                f"{name}: listener :{listening.port} half_open="
                f"{listening.half_open} ready={len(listening.ready)}"
            )
    return leaks


def pattern(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


SERVER_IDLE = 30.0


async def _echo(stream: TcpStream) -> None:
    """Echo to EOF. Like any real server it drops a client that stays silent
    for SERVER_IDLE seconds: a client whose RST was lost is otherwise never
    noticed by a server with nothing to send (RFC 9293 3.5.2: half-open)."""
    try:
        async with stream:
            while True:
                with trio.move_on_after(SERVER_IDLE):
                    data = await stream.receive_some()
                    if not data:
                        break
                    await stream.send_all(data)
                    continue
                return  # idle: close (RST if the client comes back)
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _client(a: Stack, rng: random.Random, cfg: Config, report: Report) -> None:
    style = rng.choice(cfg.styles)
    report.styles[style] += 1
    size = rng.randrange(cfg.max_bytes + 1)
    data = pattern(rng, size)
    stream: TcpStream | None = None
    try:
        stream = await a.connect((B_IP, PORT))
        sock = stream.socket
        if style == "keepalive":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
            await trio.sleep(rng.uniform(0, 5))
        if style in ("rst", "abandon"):
            cut = rng.randrange(size + 1)
            await stream.send_all(data[:cut])
            got = 0
            while got < cut // 2:
                chunk = await stream.receive_some()
                if not chunk:
                    break
                got += len(chunk)
            if style == "rst":
                sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_LINGER,
                    (1).to_bytes(4, "little") + (0).to_bytes(4, "little"),
                )
            await stream.aclose()
            report.outcomes[f"{style}:closed"] += 1
            return
        received = bytearray()

        async def reader() -> None:
            assert stream is not None
            while chunk := await stream.receive_some():
                received.extend(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await stream.send_all(data)
            if style == "shutdown":
                sock.shutdown(socket.SHUT_WR)
            else:
                await stream.send_eof()
        await stream.aclose()
        if hashlib.sha256(received).digest() != hashlib.sha256(data).digest():
            report.corrupted += 1
            report.outcomes[f"{style}:CORRUPTED"] += 1
        else:
            report.bytes_echoed += size
            report.outcomes[f"{style}:ok"] += 1
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        report.outcomes[f"{style}:{type(cause).__name__}"] += 1
        if stream is not None:
            await stream.aclose()


async def soak(cfg: Config) -> Report:
    report = Report()
    rng = random.Random(cfg.seed)
    settings = Settings(
        msl=1.0,
        shutdown_grace=1.0,
        fin_timeout=10.0,
        rto_max=10.0,
        retries2=8,
        orphan_retries=4,
        rcv_buf=256 * 1024,
        snd_buf=256 * 1024,
    )
    gc.collect()
    tracemalloc.start()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = trio.current_time()
    link_a, link_b = memory_link_pair()
    impaired = ImpairedLink.from_config(
        link_a, parse_impair_spec(cfg.impair, seed=cfg.seed)
    )
    async with Stack(impaired, A_IP, settings) as a, Stack(link_b, B_IP, settings) as b:
        listener = await b.listen(PORT, backlog=4096)
        gc.collect()
        report.mem_baseline = tracemalloc.get_traced_memory()[0]
        end = trio.current_time() + cfg.seconds
        async with trio.open_nursery() as servers:
            servers.start_soon(trio.serve_listeners, _echo, [listener])

            async def worker(seed: int) -> None:
                wrng = random.Random(seed)
                while trio.current_time() < end:
                    with trio.move_on_after(cfg.seconds + 120):
                        await _client(a, wrng, cfg, report)
                    await trio.sleep(wrng.uniform(0, 0.5))

            async with trio.open_nursery() as clients:
                for i in range(cfg.conns):
                    clients.start_soon(worker, rng.randrange(1 << 30) + i)
            # Drain: wait for every connection, TIME_WAIT record and timer.
            deadline = trio.current_time() + cfg.drain
            while trio.current_time() < deadline and (
                find_leaks(a, "A") or find_leaks(b, "B")
            ):
                await trio.sleep(0.5)
            report.leaks = find_leaks(a, "A") + find_leaks(b, "B")
            servers.cancel_scope.cancel()
        gc.collect()
        report.mem_end, report.mem_peak = tracemalloc.get_traced_memory()
        report.counters = {"A": Counter(a.counters), "B": Counter(b.counters)}
        report.impair_summary = impaired.summary()
        await listener.aclose()
    tracemalloc.stop()
    report.rss_kib = (rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    report.elapsed = trio.current_time() - start
    growth = report.mem_end - report.mem_baseline
    if growth > cfg.memory_slack:
        report.leaks.append(
            f"traced memory grew by {growth / 1e6:.1f} MB "
            f"(allowed {cfg.memory_slack / 1e6:.1f} MB)"
        )
    return report


def run(cfg: Config, virtual: bool) -> Report:
    if virtual:
        return trio.run(soak, cfg, clock=MockClock(autojump_threshold=0))
    return trio.run(soak, cfg)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="how long to open new connections (max 3600)",
    )
    p.add_argument("--conns", type=int, default=200, help="concurrent connections")
    p.add_argument("--max-bytes", type=int, default=200_000)
    p.add_argument("--impair", default=Config.impair, help="impairment spec")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--drain",
        type=float,
        default=600.0,
        help="max seconds to wait for everything to finish",
    )
    p.add_argument(
        "--styles",
        default=",".join(STYLES),
        help=f"comma-separated subset of {','.join(STYLES)}",
    )
    p.add_argument("--virtual", action="store_true", help="virtual time (MockClock)")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 3600 or not 0 < args.conns <= 5000:
        p.error("--seconds must be in (0, 3600], --conns in (0, 5000]")
    styles = tuple(x for x in args.styles.split(",") if x)
    if not styles or set(styles) - set(STYLES):
        p.error(f"--styles wants a subset of {','.join(STYLES)}")
    cfg = Config(
        args.seconds,
        args.conns,
        args.max_bytes,
        args.impair,
        args.seed,
        args.drain,
        styles=styles,
    )
    t0 = time.monotonic()
    report = run(cfg, args.virtual)
    print(report.summary())
    print(f"  wall time {time.monotonic() - t0:.1f} s")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
