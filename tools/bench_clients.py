#!/usr/bin/env python3
"""Kernel-TCP clients for tools/bench.py, run inside the client namespace.

    python tools/bench_clients.py SCENARIO [ARGS...]

Each prints one JSON line with its measurement (and, for `idle`, waits for
stdin to close before letting go of its connections). The same clients talk
to all three servers (ustack, kernel, rawtun) at 10.203.0.2. Every loop is
bounded in count and in time.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import resource
import select
import socket
import sys
import time
from collections.abc import Iterator

SERVER = "10.203.0.2"
ECHO, DISCARD, CHARGEN, HTTP = 7, 9, 19, 80


def out(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def raise_nofile(n: int) -> None:
    """Soft RLIMIT_NOFILE to n; fail clearly if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        try:  # root with CAP_SYS_RESOURCE may raise it (up to fs.nr_open)
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            return
        except (ValueError, OSError):
            raise SystemExit(
                f"need {n} file descriptors, hard RLIMIT_NOFILE is {hard}: "
                "use more client processes (tools/bench.py shards by itself)"
            ) from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), hard))


def bulk_in(nbytes: int, timeout: float) -> None:
    """Send nbytes to discard, half-close, wait for discard's close."""
    chunk = memoryview(bytes(range(256)) * 4096)  # 1 MiB
    s = socket.create_connection((SERVER, DISCARD), timeout=timeout)
    start = time.perf_counter()
    sent = 0
    while sent < nbytes:
        sent += s.send(chunk[: min(len(chunk), nbytes - sent)])
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # EOF: discard read everything and closed
    seconds = time.perf_counter() - start
    s.close()
    out(bytes=nbytes, seconds=seconds, mbps=nbytes / seconds / 1e6)


def bulk_out(nbytes: int, timeout: float) -> None:
    """Read nbytes from chargen, then close."""
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    s = socket.create_connection((SERVER, CHARGEN), timeout=timeout)
    start = time.perf_counter()
    got = 0
    while got < nbytes:
        n = s.recv_into(view, min(len(buf), nbytes - got))
        if not n:
            raise RuntimeError(f"bulk-out: EOF after {got} of {nbytes} bytes")
        got += n
    seconds = time.perf_counter() - start
    s.close()
    out(bytes=nbytes, seconds=seconds, mbps=nbytes / seconds / 1e6)


def crr(seconds: float, conc: int, max_conns: int) -> None:
    """C connections at a time: connect, send 1 byte to echo, read it, close."""
    raise_nofile(conc * 4 + 256)
    ep = select.epoll()
    socks: dict[int, list[object]] = {}
    addr = (SERVER, ECHO)
    started = done = errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    last_done = start

    def start_one() -> None:
        nonlocal started
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect_ex(addr)
        socks[s.fileno()] = [s, 0]
        ep.register(s.fileno(), select.EPOLLOUT)
        started += 1

    for _ in range(conc):
        start_one()
    quiet_since = time.monotonic()
    while socks:
        events = ep.poll(0.5)
        now = time.perf_counter()
        if not events:
            if time.monotonic() - quiet_since > 5:  # hung connections: give up
                errors += len(socks)
                break
            continue
        quiet_since = time.monotonic()
        for fd, _ev in events:
            entry = socks[fd]
            s: socket.socket = entry[0]  # type: ignore[assignment]
            finished = False
            if entry[1] == 0:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    errors += 1
                    finished = True
                else:
                    s.send(b"x")
                    entry[1] = 1
                    ep.modify(fd, select.EPOLLIN)
            else:
                try:
                    data = s.recv(16)
                except OSError:
                    data = b""
                if data:
                    done += 1
                    last_done = now
                else:
                    errors += 1
                finished = True
            if finished:
                ep.unregister(fd)
                s.close()
                del socks[fd]
                if now < deadline and started < max_conns:
                    start_one()
    elapsed = last_done - start
    out(
        connections=done,
        errors=errors,
        seconds=elapsed,
        cps=done / elapsed if elapsed > 0 else 0.0,
    )


def rr(count: int, seconds: float, warmup: int = 200) -> None:
    """1-byte ping-pong with echo on one connection; per-exchange latency."""
    s = socket.create_connection((SERVER, ECHO), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter_ns
    for _ in range(warmup):
        s.send(b"x")
        s.recv(1)
    lat: list[int] = []
    end = time.monotonic() + seconds
    for i in range(count):
        t0 = clock()
        s.send(b"x")
        if not s.recv(1):
            raise RuntimeError("rr: echo closed")
        lat.append(clock() - t0)
        if i & 255 == 0 and time.monotonic() > end:
            break
    s.close()
    lat.sort()
    n = len(lat)
    out(
        exchanges=n,
        p50_us=lat[n // 2] / 1000,
        p99_us=lat[min(n - 1, (n * 99) // 100)] / 1000,
    )


def _tuples(ips: list[str], skip: int) -> Iterator[tuple[str, int]]:
    """(ip, port) for every client address and port 1024-65535, after `skip`."""
    all_tuples = ((ip, port) for ip in ips for port in range(1024, 65536))
    return itertools.islice(all_tuples, skip, None)


def many(
    n: int, ips: list[str], mode: str, inflight: int, time_limit: float, skip: int = 0
) -> None:
    """Open n connections, each from its own explicit (ip, port).

    mode "idle": connect to discard and keep every connection open until
    stdin closes. mode "timewait": HTTP/1.0 GET /bytes/1 (the server closes
    first), read to EOF, close: the server is left with one TIME_WAIT entry
    per connection.
    """
    raise_nofile(n + inflight + 64)
    port = DISCARD if mode == "idle" else HTTP
    request = b"GET /bytes/1 HTTP/1.0\r\nHost: b\r\n\r\n"
    ep = select.epoll()
    pending: dict[int, list[object]] = {}
    kept: list[socket.socket] = []
    tuples = _tuples(ips, skip)
    started = done = errors = 0
    start = time.perf_counter()
    deadline = time.monotonic() + time_limit

    def start_one() -> bool:
        nonlocal started, errors
        for local in tuples:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(local)
            except OSError as exc:
                s.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            s.setblocking(False)
            s.connect_ex((SERVER, port))
            pending[s.fileno()] = [s, 0]
            ep.register(s.fileno(), select.EPOLLOUT)
            started += 1
            return True
        return False

    for _ in range(min(inflight, n)):
        start_one()
    while pending and time.monotonic() < deadline:
        for fd, _ev in ep.poll(0.5):
            entry = pending[fd]
            s: socket.socket = entry[0]  # type: ignore[assignment]
            finished = False
            if entry[1] == 0:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    errors += 1
                    finished = True
                elif mode == "idle":
                    ep.unregister(fd)
                    del pending[fd]
                    kept.append(s)
                    done += 1
                    if started < n:
                        start_one()
                    continue
                else:
                    s.send(request)
                    entry[1] = 1
                    ep.modify(fd, select.EPOLLIN)
            else:
                try:
                    data = s.recv(65536)
                except OSError:
                    errors += 1
                    finished = True
                else:
                    if not data:
                        done += 1
                        finished = True
            if finished:
                ep.unregister(fd)
                s.close()
                del pending[fd]
                if started < n:
                    start_one()
    seconds = time.perf_counter() - start
    errors += len(pending)
    out(connections=done, errors=errors, seconds=seconds)
    if mode == "idle":
        sys.stdin.read()  # hold the connections until the caller is done
        for s in kept:
            s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="scenario", required=True)
    for name in ("bulk-in", "bulk-out"):
        q = sub.add_parser(name)
        q.add_argument("nbytes", type=int)
        q.add_argument("--timeout", type=float, default=60.0)
    q = sub.add_parser("crr")
    q.add_argument("seconds", type=float)
    q.add_argument("--conc", type=int, default=32)
    q.add_argument("--max-conns", type=int, default=50_000)
    q = sub.add_parser("rr")
    q.add_argument("count", type=int)
    q.add_argument("--seconds", type=float, default=10.0)
    for name in ("idle", "timewait"):
        q = sub.add_parser(name)
        q.add_argument("n", type=int)
        q.add_argument("--ips", default="10.203.0.1")
        q.add_argument("--inflight", type=int, default=64)
        q.add_argument("--time-limit", type=float, default=180.0)
        q.add_argument("--skip", type=int, default=0, help="skip the first (ip, port)s")
    a = p.parse_args(argv)
    if a.scenario == "bulk-in":
        bulk_in(a.nbytes, a.timeout)
    elif a.scenario == "bulk-out":
        bulk_out(a.nbytes, a.timeout)
    elif a.scenario == "crr":
        crr(a.seconds, a.conc, a.max_conns)
    elif a.scenario == "rr":
        rr(a.count, a.seconds)
    else:
        many(a.n, a.ips.split(","), a.scenario, a.inflight, a.time_limit, a.skip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
