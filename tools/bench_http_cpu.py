#!/usr/bin/env python3
"""CPU the server process spends per HTTP request under wrk and ab (root).

    sudo .venv/bin/python tools/bench_http_cpu.py [--root DIR ...]
        [--clients wrk,ab,echo] [--servers ustack,kernel] [--rounds 3]
        [--seconds 4] [--requests 4000] [--profile DIR]

The clients of tools/bench_http.py (`wrk -t2 -c50`, keep-alive, and
`ab -c50`, a connection per request, both for /bytes/1000 at MTU 1500), in
the namespaces tools/bench.py builds, against `ustack up` and against the
same application on kernel TCP (tools/bench_kserver.py). The figure is the
server process's CPU time (utime + stime from /proc) over the client's run
divided by the requests it completed, in µs per request: unlike req/s it
hardly depends on how the scheduler shares the 2 CPUs with other work. (For
the kernel server, the TCP work the kernel does in softirq context may be
billed to other tasks; read that column as the application's share.)

Each `--root` (a checkout with its own .venv, e.g. a clone of main) serves
with its own code and its own tools/bench.py environments; roots alternate,
`--rounds` times. `--profile DIR` runs `ustack up` under cProfile instead
and writes DIR/<client>-<n>.prof (the CPU figures then include the
profiler's overhead: compare call counts, not times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
URL = "http://10.203.0.2/bytes/1000"
REQUEST_SIZE = 46  # wrk's request for URL, in bytes

# `echo`: wrk's pattern without HTTP, for the cost of the stack alone: 50
# connections to the echo service (port 7, a protocol object on both
# servers), each sending a wrk-sized request and waiting for it to come back.
ECHO_CLIENT = """
import select, socket, sys, time
seconds, size = float(sys.argv[1]), int(sys.argv[2])
msg = b"x" * size
conns = {}
ep = select.epoll()
for _ in range(50):
    s = socket.create_connection(("10.203.0.2", 7), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    conns[s.fileno()] = [s, 0]
    ep.register(s.fileno(), select.EPOLLIN)
    s.send(msg)
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for fd, _ in ep.poll(1.0):
        c = conns[fd]
        got = len(c[0].recv(65536))
        if not got:
            raise SystemExit("echo: connection closed")
        c[1] += got
        if c[1] >= size:
            c[1] -= size
            n += 1
            c[0].send(msg)
print(n)
"""


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def _busy_seconds() -> float:
    """CPU seconds every CPU spent busy (not idle or iowait), /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _server_pid(pid: int) -> int:
    """`ip netns exec` execs the server, but a launcher may wrap it: take the
    deepest descendant (the Python process doing the work)."""
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return pid
        if not kids:
            return pid
        pid = int(kids[0])


def _run_client(env: Any, client: str, seconds: int, requests: int) -> int:
    """Run one client; the number of requests it completed."""
    if client == "echo":
        proc = env.client_ns.run(
            sys.executable,
            "-c",
            ECHO_CLIENT,
            str(seconds),
            str(REQUEST_SIZE),
            timeout=60,
            input=b"",
        )
        return int(proc.stdout.split()[-1])
    if client == "wrk":
        args = ["wrk", "-t2", "-c50", f"-d{seconds}s", URL]
    else:
        args = ["ab", "-q", "-n", str(requests), "-c", "50", URL]
    proc = env.client_ns.run(*args, timeout=120, input=b"")
    out = proc.stdout.decode(errors="replace")
    if client == "wrk":
        m = re.search(r"(\d+) requests in", out)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    else:
        m = re.search(r"Complete requests:\s+(\d+)", out)
        failed = re.search(r"Failed requests:\s+(\d+)", out)
        bad = failed if failed and int(failed.group(1)) else None
    if m is None or bad is not None:
        raise RuntimeError(f"{client}: {out[-1500:]}")
    return int(m.group(1))


def child(a: argparse.Namespace) -> list[dict[str, Any]]:
    """In the tree being measured (cwd): one sample per (server, client)."""
    sys.path.insert(0, str(Path.cwd() / "tools"))
    import bench  # the measured tree's own environments

    out: list[dict[str, Any]] = []
    for server in a.servers.split(","):
        for client in a.clients.split(","):
            if server == "ustack":
                env_cm = bench.ustack_env(1500, 1, False, [])
            else:
                env_cm = bench.kernel_env(1500, 1, False)
            with env_cm as env:
                assert env.pid is not None
                pid = _server_pid(env.pid)
                _run_client(env, client, 1, 500)  # warm-up, not measured
                before, t0 = _cpu_seconds(pid), time.monotonic()
                busy = _busy_seconds()
                n = _run_client(env, client, a.seconds, a.requests)
                wall = time.monotonic() - t0
                after = _cpu_seconds(pid)
                busy = _busy_seconds() - busy
            user, system = after[0] - before[0], after[1] - before[1]
            out.append(
                {
                    "server": server,
                    "client": client,
                    "us_per_req": (user + system) / n * 1e6,
                    "user_us": user / n * 1e6,
                    "req_s": n / wall,
                    "machine_us": busy / n * 1e6,
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--root", type=Path, action="append")
    ap.add_argument("--clients", default="wrk,ab")
    ap.add_argument("--servers", default="ustack,kernel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4, help="wrk duration")
    ap.add_argument("--requests", type=int, default=4000, help="ab requests")
    ap.add_argument("--profile", type=Path, help="cProfile output directory")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a)))
        return 0
    if os.geteuid() != 0:
        print("bench_http_cpu: needs root (network namespaces)", file=sys.stderr)
        return 1
    roots = [r.resolve() for r in (a.root or [HERE.parent.parent])]
    samples: dict[tuple[Path, str, str], list[dict[str, Any]]] = {}
    started = time.time()
    for rnd in range(a.rounds):
        for root in roots:  # alternate, so load changes hit both alike
            python = root / ".venv" / "bin" / "python"
            command = str(root / ".venv/bin/ustack")
            if a.profile is not None:
                a.profile.mkdir(parents=True, exist_ok=True)
                prof = a.profile / f"{root.name}-{rnd}.prof"
                command = f"{python} -m cProfile -o {prof} -m ustack"
            args = [str(python), str(HERE), "--child"]
            for opt in ("clients", "servers", "seconds", "requests"):
                args += [f"--{opt}", str(getattr(a, opt))]
            res = subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                cwd=root,
                env=dict(os.environ, USTACK_COMMAND=command),
            )
            for s in json.loads(res.stdout.splitlines()[-1]):
                samples.setdefault((root, s["server"], s["client"]), []).append(s)
    print(
        f"server CPU per HTTP request (/bytes/1000, MTU 1500), median of "
        f"{a.rounds} (load average {os.getloadavg()[0]:.1f}, "
        f"{time.time() - started:.0f} s):"
    )
    for (root, server, client), rows in samples.items():
        us = [r["us_per_req"] for r in rows]
        rps = [r["req_s"] for r in rows]
        user = statistics.median(r["user_us"] for r in rows)
        machine = statistics.median(r["machine_us"] for r in rows)
        print(
            f"  {str(root):34} {server:6} {client:3} "
            f"{statistics.median(us):6.1f} us/req (user {user:5.1f}, "
            f"machine {machine:5.1f})  "
            f"{statistics.median(rps):7.0f} req/s  "
            f"[{', '.join(f'{x:.0f}' for x in us)}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
