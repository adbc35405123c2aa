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

    .venv/bin/python tools/bench_stack_cpu.py --tcb-loop [--callgrind]
                                              [--root DIR ...]

needs no root and no network: two sans-IO TCBs (ustack/tcp) ping-pong one
byte through the wire codec (ustack/wire: build, parse, checksums) in
virtual time, as the stack would drive them, and the figure is the CPU per
exchange of that loop (both ends: one request and one response each way).
With `--callgrind` it is the instruction count per exchange under
`valgrind --tool=callgrind` (the difference between 1,000 and 3,000
exchanges, hash seed fixed): deterministic, so it compares trees on a busy
machine to a fraction of a percent.
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


def tcb_loop(n: int) -> float:
    """`n` request/response exchanges between two TCBs; CPU s per exchange."""
    from ustack.config import Settings
    from ustack.tcp.tcb import Tcb
    from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
    from ustack.wire.tcp import parse_tcp

    try:  # the stack's own path for the usual segment, where the tree has it
        from ustack.wire.ipv4 import TcpPacketBuilder, parse_tcp_packet
    except ImportError:  # an older --root: the generic builder and parsers
        TcpPacketBuilder = parse_tcp_packet = None  # type: ignore[assignment, misc]

    a_ip, b_ip = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
    s = Settings()
    now = 0.0
    a = Tcb(s, (a_ip, 40000), (b_ip, 7), 1000, 1460, now)
    b = Tcb(s, (b_ip, 7), (a_ip, 40000), 5000, 1460, now)
    a.nodelay = b.nodelay = True

    builders = {}
    if TcpPacketBuilder is not None:
        builders = {ip: TcpPacketBuilder(ip) for ip in (a_ip, b_ip)}

    def carry(src: Tcb, dst: Tcb, now: float) -> None:
        out, src.outbox = src.outbox, []
        for seg in out:
            if builders:  # as Stack._after and Stack._input
                packet = builders[src.local_ip].build(dst.local_ip, seg)
                fast = parse_tcp_packet(packet)
                if fast is not None:
                    dst.on_segment(fast[2], now)
                    continue
            else:
                packet = build_tcp_packet(src.local_ip, dst.local_ip, seg, 0)
            ip = parse_ipv4(packet)
            dst.on_segment(parse_tcp(ip.payload, ip.src, ip.dst), now)

    a.open_active(now)
    syn = a.outbox.pop()
    b.open_passive(syn, now)
    for _ in range(3):  # SYN-ACK, ACK
        now += 35e-6
        carry(b, a, now)
        a.flush(now)
        carry(a, b, now)
        b.flush(now)

    def exchange(now: float) -> float:
        now += 35e-6
        a.send(b"x")
        a.flush(now)
        carry(a, b, now)
        now += 35e-6
        b.read(1 << 16)
        b.send(b"x")
        b.flush(now)
        carry(b, a, now)
        a.read(1 << 16)
        a.flush(now)
        return now

    for _ in range(200):  # warm-up: RTT estimate, cwnd, caches
        now = exchange(now)
    started = time.process_time()
    for _ in range(n):
        now = exchange(now)
    if b.read(1) or a.read(1) or a.outbox or b.outbox or b.state.name != "ESTABLISHED":
        raise RuntimeError("the TCB loop went wrong")
    return (time.process_time() - started) / n


def _tcb_loop_figure(root: Path, n: int, callgrind: bool) -> float:
    """µs of CPU, or instructions, per exchange of that tree's TCB loop."""
    python = str(root / ".venv" / "bin" / "python")
    me = str(Path(__file__).resolve())
    if not callgrind:
        out = subprocess.run([python, me, "--tcb-child", "--n", str(n)], check=True,
                             capture_output=True, text=True, cwd=root)
        return float(out.stdout.split()[-1]) * 1e6
    counts = []
    for k in (1000, 3000):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             python, me, "--tcb-child", "--n", str(k)],
            check=True, capture_output=True, text=True, cwd=root,
            env=dict(os.environ, PYTHONHASHSEED="0"),
        )
        counts.append(int(out.stderr.split("Collected : ")[1].split()[0]))
    return (counts[1] - counts[0]) / 2000


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
    ap.add_argument("--tcb-loop", action="store_true",
                    help="the in-process TCB + wire loop (no root, no network)")
    ap.add_argument("--callgrind", action="store_true",
                    help="with --tcb-loop: instructions per exchange")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tcb-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.n, a.reps)))
        return 0
    if a.tcb_child:
        sys.path.insert(0, os.getcwd())  # the tree being measured
        print(tcb_loop(a.n))
        return 0
    if a.tcb_loop:
        return _report_tcb_loop(a)
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
    _table(f"ustack up CPU per 1-byte echo exchange, us, median of "
           f"{a.rounds} x {a.reps} (load average {os.getloadavg()[0]:.1f}, "
           f"{time.time() - started:.0f} s):", samples)
    return 0


def _table(title: str, samples: dict[Path, list[float]]) -> None:
    """Median per root, its ratio to the first root's, and the samples."""
    print(title)
    first = statistics.median(next(iter(samples.values())))
    for root, xs in samples.items():
        med = statistics.median(xs)
        print(f"  {str(root):50} {med:10.1f} ({med / first:4.2f}x)  "
              f"[{', '.join(f'{x:.1f}' for x in xs)}]")


def _report_tcb_loop(a: argparse.Namespace) -> int:
    roots = [r.resolve() for r in (a.root or [ROOT])]
    rounds = 1 if a.callgrind else a.rounds * a.reps
    samples: dict[Path, list[float]] = {r: [] for r in roots}
    for _ in range(rounds):
        for root in roots:  # alternate, so load changes hit both alike
            samples[root].append(_tcb_loop_figure(root, a.n, a.callgrind))
    unit = "instructions" if a.callgrind else "us CPU"
    _table(f"TCB + wire loop, {unit} per 1-byte exchange (both ends), median of "
           f"{rounds} (load average {os.getloadavg()[0]:.1f}):", samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
