#!/usr/bin/env python3
"""Instructions per HTTP keep-alive request, in one process (no root).

    .venv/bin/python tools/bench_http_sim.py [--conns 50] [--callgrind]
        [--n1 1000] [--n2 3000] [--root DIR ...]
    .venv/bin/python tools/bench_http_sim.py --profile [--n 3000] [--top 30]

Two ustack Stacks back to back over the in-memory link (as tests/sim
wires them), in trio's virtual time (MockClock, autojump), with trio's
scheduler, the ephemeral ports and the ISN clock pinned: stack B serves
ustack's HTTP service as `ustack up` does (protocol objects run by the
packet loop, `ustack.services`); stack A runs
`--conns` keep-alive clients (TcpStream, TCP_NODELAY) that send wrk's
request for /bytes/1000 and read each 1,000-byte response before the next
one, N requests in all. Every response is checked (status, length, body).

The figure, with `--callgrind`, is the instruction count per request under
`valgrind --tool=callgrind`: the difference between runs of N2 and N1
requests, divided by N2 - N1, so start-up and connection set-up cancel out
(PYTHONHASHSEED fixed). It counts both stacks, the clients and the
application: compare trees with it (each `--root` is a checkout with its
own .venv; its code is measured), not with the kernel. Without
`--callgrind` it is CPU time per request (process_time), which moves with
the machine's load.

`--profile` runs N requests under cProfile in this tree and prints the top
functions by own time and the own time per part (TCB and sender modules,
wire codec, stack glue, HTTP application and h11, trio, the rest).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A_IP = "10.0.0.1"
B_IP = "10.0.0.2"
BODY_LEN = 1000
# wrk's request line and headers for http://10.203.0.2/bytes/1000.
REQUEST = b"GET /bytes/1000 HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)


async def _client(stack: object, count: int, body: bytes, done: list[int]) -> None:
    """`count` keep-alive requests on one connection, each response checked."""
    stream = await stack.connect((B_IP, 80))  # type: ignore[attr-defined]
    buf = b""
    try:
        for _ in range(count):
            await stream.send_all(REQUEST)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    m = _LENGTH.search(buf, 0, end + 2)
                    if m is None:
                        raise RuntimeError(f"no Content-Length in {buf[:end]!r}")
                    total = end + 4 + int(m.group(1))
                    if len(buf) >= total:
                        break
                chunk = await stream.receive_some()
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200 ") or buf[end + 4 : total] != body:
                raise RuntimeError(f"bad response {buf[:total]!r}")
            buf = buf[total:]
            done[0] += 1
    finally:
        await stream.aclose()


def run(n: int, conns: int = 50, seed: int = 1) -> int:
    """`n` requests over `conns` connections (spread evenly) between two
    stacks in virtual time; returns the number of requests answered."""
    import random

    import trio
    import trio._core._run as trio_run
    from trio.testing import MockClock

    from ustack import Settings, Stack
    from ustack.link.memory import memory_link_pair
    from ustack.services import make_protocol_factory, pattern_bytes

    random.seed(seed)
    trio_run._r.seed(seed)  # the scheduler's batch order (see trio's _run)
    body = pattern_bytes(BODY_LEN)
    done = [0]

    async def main() -> None:
        settings = Settings(msl=0.5, shutdown_grace=0.5)
        link_a, link_b = memory_link_pair()
        async with (
            Stack(link_a, A_IP, settings, network="10.0.0.0/24") as a,
            Stack(link_b, B_IP, settings.replace(), network="10.0.0.0/24") as b,
        ):
            for i, stack in enumerate((a, b)):
                # Pin what the stack draws from the machine: ephemeral ports
                # (SystemRandom) and the clock under ISNs and TSval offsets
                # (isn.py), so that runs repeat to the instruction.
                stack._rng = random.Random(seed + i)  # type: ignore[assignment]
                stack._system_clock = lambda: 1000.0 + trio.current_time()
            server = b.serve_protocol(80, make_protocol_factory("http"))
            async with trio.open_nursery() as nursery:
                for i in range(conns):
                    count = n // conns + (1 if i < n % conns else 0)
                    if count:
                        nursery.start_soon(_client, a, count, body, done)
            server.close_nowait()

    trio.run(main, clock=MockClock(autojump_threshold=0))
    if done[0] != n:
        raise RuntimeError(f"{done[0]} of {n} requests answered")
    return done[0]


def _child(n: int, conns: int) -> float:
    """CPU seconds per request of `run` (in the tree being measured)."""
    started = time.process_time()
    run(n, conns)
    return (time.process_time() - started) / n


def _figure(root: Path, a: argparse.Namespace) -> float:
    """Instructions (callgrind) or µs of CPU per request with that tree."""
    python = str(root / ".venv" / "bin" / "python")
    me = str(Path(__file__).resolve())
    env = dict(os.environ, PYTHONHASHSEED="0")
    args = ["--child", "--conns", str(a.conns)]
    if not a.callgrind:
        out = subprocess.run([python, me, *args, "--n", str(a.n2)], check=True,
                             capture_output=True, text=True, cwd=root, env=env)
        return float(out.stdout.split()[-1]) * 1e6
    counts = []
    for n in (a.n1, a.n2):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             python, me, *args, "--n", str(n)],
            check=True, capture_output=True, text=True, cwd=root, env=env,
        )
        counts.append(int(out.stderr.split("Collected : ")[1].split()[0]))
    return (counts[1] - counts[0]) / (a.n2 - a.n1)


# Parts of the profile, by the file a function is in (first match wins).
PARTS = (
    ("TCB + sender (ustack/tcp)", "ustack/tcp/"),
    ("wire codec (ustack/wire)", "ustack/wire/"),
    ("HTTP service (ustack/services)", "ustack/services/"),
    ("stack glue (ustack/*.py)", "ustack/"),
    ("h11", "/h11/"),
    ("trio", "/trio/"),
)


def part_of(filename: str) -> str:
    for name, marker in PARTS:
        if marker in filename:
            return name
    return "other (builtins, this harness)"


def profile(n: int, conns: int, top: int) -> None:
    run(min(n, 100), conns)  # imports and first-time costs, not profiled
    prof = cProfile.Profile()
    prof.enable()
    run(n, conns)
    prof.disable()
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    parts: dict[str, float] = {}
    for (filename, _, _), v in raw.items():
        key = part_of(filename)
        parts[key] = parts.get(key, 0.0) + v[2]
    print(f"{n} requests over {conns} connections, own time by part "
          f"(cProfile, {total / n * 1e6:.1f} µs per request with the profiler):")
    for key, t in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {key:36} {t / total:6.1%}  {t / n * 1e6:8.2f} µs/request")
    print()
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    print(f"top {top} functions by own time: calls per request, µs per request")
    for (filename, line, func), v in rows:
        short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        print(f"  {v[1] / n:8.2f} {v[2] / n * 1e6:8.2f}  {func} ({short}:{line})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--conns", type=int, default=50, help="client connections")
    ap.add_argument("--n1", type=int, default=1000, help="requests, first run")
    ap.add_argument("--n2", type=int, default=3000, help="requests, second run")
    ap.add_argument("--root", type=Path, action="append")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per request (valgrind)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="without --callgrind: runs per root (median)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile breakdown of one run in this tree")
    ap.add_argument("--n", type=int, default=3000, help="requests for --profile")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        sys.path.insert(0, os.getcwd())  # the tree being measured
        print(_child(a.n, a.conns))
        return 0
    if a.profile:
        profile(a.n, a.conns, a.top)
        return 0
    if a.n2 <= a.n1:
        ap.error("--n2 must be larger than --n1")
    roots = [r.resolve() for r in (a.root or [ROOT])]
    rounds = 1 if a.callgrind else a.rounds
    samples: dict[Path, list[float]] = {r: [] for r in roots}
    for _ in range(rounds):
        for root in roots:  # alternate, so load changes hit both alike
            samples[root].append(_figure(root, a))
    unit = "instructions" if a.callgrind else "us CPU"
    print(f"HTTP keep-alive in one process ({a.conns} connections, /bytes/1000), "
          f"{unit} per request, median of {rounds} "
          f"(load average {os.getloadavg()[0]:.1f}):")
    first = statistics.median(next(iter(samples.values())))
    for root, xs in samples.items():
        med = statistics.median(xs)
        print(f"  {str(root):50} {med:12.1f} ({med / first:4.2f}x)  "
              f"[{', '.join(f'{x:.1f}' for x in xs)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
