#!/usr/bin/env python3
"""CPU the `ustack up` process spends per request/response (root, netns).

    sudo .venv/bin/python tools/bench_stack_cpu.py [--n 10000] [--reps 3]
                                                   [--rounds 3] [--root DIR ...]

A kernel client in a throwaway namespace sends 1 byte to ustack's echo
service and waits for it, N times on one connection (TCP_NODELAY); the
figure is the stack process's CPU time (utime + stime from /proc) over those
N exchanges, in µs per exchange. Unlike a latency percentile it hardly
depends on how the scheduler shares the CPUs with other work, so it shows
per-packet costs on a busy machine. Each `--root` (a checkout with its own
.venv, e.g. a clone of main) runs its own `ustack up`, alternately, `--rounds`
times, `--reps` connections per round; reported: the median per root and
the ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLIENT = """
import socket, sys
n = int(sys.argv[1])
s = socket.create_connection(("10.203.0.2", 7), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(200):  # warm-up, not measured
    s.sendall(b"x")
    s.recv(1)
print("READY", flush=True)
sys.stdin.readline()
for _ in range(n):
    s.sendall(b"x")
    s.recv(1)
s.close()
"""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(n: int, reps: int) -> list[float]:
    """In the tree being measured: µs of stack CPU per exchange, per rep."""
    sys.path.insert(0, str(ROOT / "tools"))
    from netns import start_ustack, temp_netns

    out: list[float] = []
    with temp_netns() as ns:
        stack = start_ustack(ns)
        try:
            for _ in range(reps):
                client = ns.popen(sys.executable, "-c", CLIENT, str(n),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                assert client.stdin is not None and client.stdout is not None
                if client.stdout.readline().strip() != b"READY":
                    raise RuntimeError("the echo client did not connect")
                before = _cpu_seconds(stack.proc.pid)
                client.stdin.write(b"\n")
                client.stdin.flush()
                if client.wait(timeout=30 + n / 100) != 0:
                    raise RuntimeError("the echo client failed")
                out.append((_cpu_seconds(stack.proc.pid) - before) / n * 1e6)
        finally:
            stack.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="exchanges per rep")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--root", type=Path, action="append")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.n, a.reps)))
        return 0
    if os.geteuid() != 0:
        print("bench_stack_cpu: needs root (network namespaces)", file=sys.stderr)
        return 1
    roots = [r.resolve() for r in (a.root or [ROOT])]
    samples: dict[Path, list[float]] = {r: [] for r in roots}
    started = time.time()
    for _ in range(a.rounds):
        for root in roots:  # alternate, so load changes hit both alike
            python = root / ".venv" / "bin" / "python"
            # This harness, that tree's venv and `ustack` (USTACK_COMMAND).
            out = subprocess.run(
                [str(python), str(Path(__file__).resolve()), "--child",
                 "--n", str(a.n), "--reps", str(a.reps)],
                check=True, capture_output=True, text=True, cwd=root,
                env=dict(os.environ, USTACK_COMMAND=str(root / ".venv/bin/ustack")),
            )
            samples[root].extend(json.loads(out.stdout.splitlines()[-1]))
    first = statistics.median(samples[roots[0]])
    print(f"ustack up CPU per 1-byte echo exchange, median of "
          f"{a.rounds} x {a.reps} (load average {os.getloadavg()[0]:.1f}, "
          f"{time.time() - started:.0f} s):")
    for root in roots:
        med = statistics.median(samples[root])
        print(f"  {str(root):50} {med:7.1f} us ({med / first:4.2f}x)  "
              f"[{', '.join(f'{x:.0f}' for x in samples[root])}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
