#!/usr/bin/env python3
"""Benchmarks: ustack side by side with the kernel and a raw TUN loop.

    sudo .venv/bin/python tools/bench.py [--runs N] [--quick] [--only a,b]
                                         [--mtu 1500,65535] [--json FILE]

Every scenario runs the same kernel-TCP clients (tools/bench_clients.py, in a
fresh network namespace, talking to 10.203.0.2) against three servers, one
after another within each run, so their ratios hold on a noisy machine:

- ustack: `ustack up` on a TUN device in the clients' namespace.
- kernel: ustack's own services (tools/bench_kserver.py: trio on kernel TCP)
  in a second namespace across a veth pair.
- rawtun: tools/rawtun.py, a bare loop on the TUN fd doing the least packet
  work a TCP server must do (see its docstring): the ceiling for any Python
  stack. Not applicable to the memory scenarios.

Scenarios: bulk-in (MB/s into discard), bulk-out (MB/s read from chargen),
crr (connect + 1-byte echo + close, C at a time, connections/s), rr (1-byte
echo ping-pong, p50/p99 us), idle-conns (RSS bytes per idle keepalive
connection), timewait (RSS bytes per server-side TIME_WAIT entry), and real
HTTP clients (tools/bench_http.py: http-wrk, http-ab, http-curl). Every
namespace is created for one (run, scenario, MTU, server) and deleted after.
Sub-benchmarks instead: `bench.py lossy [...]` (tools/bench_lossy.py, the
sender under loss against Linux), `bench.py ways-in [...]` (tools/bench_sync.py,
the trio API vs the blocking socket vs its socketpair bridge), `bench.py
reassembly [...]` (tools/bench_reassembly.py), `bench.py memory [...]`
(tools/bench_memory.py, bytes per idle TCB). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from bench_http import HTTP_SCENARIOS  # noqa: E402
from bench_report import build_rows, markdown_table, plain_table, rich_table  # noqa: E402
from netns import Netns, create_netns, start_ustack  # noqa: E402

SERVER_IP = "10.203.0.2"
HOST_IP = "10.203.0.1"
CLIENTS = TOOLS / "bench_clients.py"
PORTS_PER_IP = 64000
CLIENT_SHARD = 19_000  # connections per client process (RLIMIT_NOFILE)
# The kernel server is one process: its connections are capped the same way.
KERNEL_MAX_IDLE = 19_000


# --------------------------------------------------------------------------
# Parameters
@dataclass
class Params:
    runs: int = 3
    mem_runs: int = 1
    mb: int = 200
    crr_seconds: float = 3.0
    crr_conc: int = 32
    rr_count: int = 20_000
    idle_n: int = 50_000
    timewait_n: int = 100_000
    ustack_args: tuple[str, ...] = ()
    kernel_args: tuple[str, ...] = ()

    @property
    def offload(self) -> bool:
        """rawtun uses the same link mode as `ustack up` (offload by default)."""
        return "--no-offload" not in self.ustack_args

    @classmethod
    def quick(cls) -> Params:
        return cls(
            runs=1,
            mem_runs=1,
            mb=20,
            crr_seconds=1.0,
            crr_conc=16,
            rr_count=2_000,
            idle_n=5_000,
            timewait_n=5_000,
        )


# --------------------------------------------------------------------------
# Processes and /proc
def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def settle(pid: int, timeout: float = 20.0) -> None:
    """Wait until `pid` stops using CPU (<= 1 tick per 0.25 s, twice)."""
    deadline = time.monotonic() + timeout
    quiet, last = 0, cpu_ticks(pid)
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_ticks(pid)
        quiet = quiet + 1 if now - last <= 1 else 0
        last = now


SLAB_CACHES = (
    "TCP",
    "tw_sock_TCP",
    "request_sock_TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
)


def slab_bytes() -> dict[str, int]:
    """num_objs * objsize of the socket-related slab caches (system-wide)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            f = line.split()
            if f and f[0] in SLAB_CACHES:
                found[f[0]] = int(f[2]) * int(f[3])
    return found


def sockstat(ns: Netns) -> str:
    out = ns.run("cat", "/proc/net/sockstat", timeout=10).stdout.decode()
    return next((ln for ln in out.splitlines() if ln.startswith("TCP:")), "")


class Proc:
    """A server process in a namespace, stdout to a file, ready on a marker."""

    def __init__(self, ns: Netns, args: list[str], marker: str) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix="bench-", suffix=".out", delete=False
        )
        self.err = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="bench-", suffix=".err", delete=False
        )
        self.proc = ns.popen(
            *args,
            stdout=self.log,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + 20
        while marker not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                errors = self.errors()[-2000:]
                self.stop()
                raise RuntimeError(f"{args[:2]} did not start: {errors}")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def errors(self) -> str:
        return Path(self.err.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.log, self.err):
            f.close()
            with contextlib.suppress(OSError):
                os.unlink(f.name)


# --------------------------------------------------------------------------
# Environments: a client namespace and a server (pid for memory figures)
@dataclass
class Env:
    server: str
    mtu: int
    client_ns: Netns
    server_ns: Netns
    pid: int | None  # the server process (None for rawtun)
    client_ips: list[str]


def _last_error(stderr: str) -> str:
    """The last line that names an error, and the first lines of the log."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln or "error" in ln]
    return " | ".join([*lines[:1], *errs[-2:]])[-1500:]


def _client_sysctls(ns: Netns) -> None:
    # 64k ephemeral ports for crr (the clients' TIME_WAIT holds its ports).
    ns.run("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", timeout=10)


def _client_ips(n_ips: int) -> list[str]:
    return [HOST_IP] + [f"10.203.0.{10 + i}" for i in range(1, n_ips)]


def _add_ips(ns: Netns, dev: str, ips: list[str]) -> None:
    for ip in ips[1:]:
        ns.run("ip", "addr", "add", f"{ip}/24", "dev", dev, timeout=10)


@contextlib.contextmanager
def ustack_env(
    mtu: int, n_ips: int, keepalive: bool, extra: list[str]
) -> Iterator[Env]:
    ns = create_netns("ustack-bench-u-")
    stack = None
    try:
        args = ["--mtu", str(mtu), *extra]
        if keepalive:
            args.append("--keepalive")
        stack = start_ustack(ns, *args)
        ips = _client_ips(n_ips)
        _add_ips(ns, "ustack0", ips)
        _client_sysctls(ns)
        try:
            yield Env("ustack", mtu, ns, ns, stack.proc.pid, ips)
        except Exception as exc:
            if stack.proc.poll() is None:
                raise
            raise RuntimeError(
                f"{exc}; ustack up died (exit {stack.proc.returncode}): "
                + _last_error(stack.errors())
            ) from exc
        if stack.proc.poll() is not None:
            raise RuntimeError("ustack up died: " + _last_error(stack.errors()))
    finally:
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.stop()
        ns.delete()


@contextlib.contextmanager
def kernel_env(
    mtu: int, n_ips: int, keepalive: bool, extra: tuple[str, ...] = ()
) -> Iterator[Env]:
    client = create_netns("ustack-bench-kc-")
    server: Netns | None = None
    proc = None
    try:
        server = create_netns("ustack-bench-ks-")
        client.run("ip", "link", "add", "bc0", "type", "veth", "peer", "name", "bs0")
        client.run("ip", "link", "set", "bs0", "netns", server.name)
        client.run("ip", "link", "set", "bc0", "mtu", str(mtu))
        server.run("ip", "link", "set", "bs0", "mtu", str(mtu))
        client.run("ip", "addr", "add", f"{HOST_IP}/24", "dev", "bc0")
        server.run("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "bs0")
        client.run("ip", "link", "set", "bc0", "up")
        server.run("ip", "link", "set", "bs0", "up")
        ips = _client_ips(n_ips)
        _add_ips(client, "bc0", ips)
        _client_sysctls(client)
        args = [sys.executable, str(TOOLS / "bench_kserver.py"), "--ip", SERVER_IP]
        if keepalive:
            args.append("--keepalive")
        args += extra
        proc = Proc(server, args, "kserver ready")
        yield Env("kernel", mtu, client, server, proc.pid, ips)
        if proc.proc.poll() is not None:
            raise RuntimeError("kernel server died: " + proc.errors()[-2000:])
    finally:
        if proc is not None:
            proc.stop()
        if server is not None:
            server.delete()
        client.delete()


@contextlib.contextmanager
def rawtun_env(mtu: int, offload: bool) -> Iterator[Env]:
    ns = create_netns("ustack-bench-r-")
    proc = None
    try:
        args = [sys.executable, str(TOOLS / "rawtun.py"), "--mtu", str(mtu)]
        if offload:
            args.append("--offload")
        proc = Proc(ns, args, "rawtun ready")
        _client_sysctls(ns)
        yield Env("rawtun", mtu, ns, ns, None, [HOST_IP])
    finally:
        if proc is not None:
            proc.stop()
        ns.delete()


# --------------------------------------------------------------------------
# Scenarios: each returns {metric: value} and extra details
def client(env: Env, *args: str, timeout: float = 300) -> dict[str, Any]:
    proc = env.client_ns.run(
        sys.executable, str(CLIENTS), *args, timeout=timeout, input=b""
    )
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def sc_bulk_in(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    r = client(env, "bulk-in", str(p.mb * 10**6))
    return {"MB/s": r["mbps"]}, r


def sc_bulk_out(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    r = client(env, "bulk-out", str(p.mb * 10**6))
    return {"MB/s": r["mbps"]}, r


def sc_crr(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    r = client(env, "crr", str(p.crr_seconds), "--conc", str(p.crr_conc))
    if r["errors"]:
        log(f"crr {env.server} mtu {env.mtu}: {r['errors']} failed connections")
    return {"conn/s": r["cps"]}, r


def sc_rr(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    r = client(env, "rr", str(p.rr_count), "--seconds", "10")
    return {"p50 µs": r["p50_us"], "p99 µs": r["p99_us"]}, r


def _memory(
    env: Env, mode: str, n: int, per_conn_kernel: Callable[[dict[str, int], int], float]
) -> tuple[dict[str, float], dict[str, Any]]:
    assert env.pid is not None
    ips = ",".join(env.client_ips)
    # Warm-up: the first few hundred connections load code and grow caches.
    # It binds tuples after the measured ones, so none of its TIME_WAIT
    # entries is met again.
    client(env, mode, "200", "--ips", ips, "--skip", str(n + 100))
    if mode == "idle":
        time.sleep(0.5)
    settle(env.pid)
    rss0, slab0 = rss_bytes(env.pid), slab_bytes()
    ss0 = sockstat(env.server_ns) if env.server == "kernel" else ""
    # The hard RLIMIT_NOFILE may be low (20,000 here, without
    # CAP_SYS_RESOURCE): several client processes, disjoint (ip, port) ranges.
    shards = [min(CLIENT_SHARD, n - i) for i in range(0, n, CLIENT_SHARD)]
    procs = []
    results: list[dict[str, Any]] = []
    try:
        for i, size in enumerate(shards):
            cmd = env.client_ns.cmd(
                sys.executable,
                str(CLIENTS),
                mode,
                str(size),
                "--ips",
                ips,
                "--skip",
                str(i * CLIENT_SHARD),
            )
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(
                    f"{mode} client failed: {proc.stderr.read().decode()[-2000:]}"
                )
            results.append(json.loads(line))
        settle(env.pid)
        rss1, slab1 = rss_bytes(env.pid), slab_bytes()
        ss1 = sockstat(env.server_ns) if env.server == "kernel" else ""
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stdin.close()  # type: ignore[union-attr]
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    r = {
        "connections": sum(x["connections"] for x in results),
        "errors": sum(x["errors"] for x in results),
        "seconds": max(x["seconds"] for x in results),
        "client_processes": len(results),
    }
    conns = int(r["connections"])
    if conns == 0:
        raise RuntimeError(f"{mode}: no connection succeeded ({r})")
    slab_delta = {k: slab1.get(k, 0) - slab0.get(k, 0) for k in SLAB_CACHES}
    rss_per = (rss1 - rss0) / conns
    extra: dict[str, Any] = dict(
        r, rss_before=rss0, rss_after=rss1, rss_per_conn=rss_per
    )
    value = rss_per
    if env.server == "kernel":
        n_kernel = conns
        if mode == "timewait":
            n_kernel = _sockstat_field(ss1, "tw") - _sockstat_field(ss0, "tw")
            if n_kernel <= 0:
                raise RuntimeError(f"no kernel TIME_WAIT entries: {ss0} -> {ss1}")
        kern = per_conn_kernel(slab_delta, n_kernel)
        extra.update(slab_delta=slab_delta, kernel_per_conn=kern, sockstat=[ss0, ss1])
        value = rss_per + kern
    if r["errors"]:
        log(f"{mode} {env.server} mtu {env.mtu}: {r['errors']} failed connections")
    return value, extra  # type: ignore[return-value]


def _kernel_idle(delta: dict[str, int], n: int) -> float:
    # Client and server each hold one socket (TCP, inode, file, dentry) per
    # connection: half of those deltas is the server's; epoll is server-only.
    shared = sum(delta[k] for k in ("TCP", "sock_inode_cache", "filp", "dentry"))
    epoll = delta["eventpoll_epi"] + delta["eventpoll_pwq"]
    return (shared / 2 + epoll) / n


def _kernel_timewait(delta: dict[str, int], n: int) -> float:
    # The clients keep no TIME_WAIT; n is the growth of sockstat's `tw` (the
    # kernel's TIME_WAIT lasts 60 s: early entries may be gone by the end).
    return delta["tw_sock_TCP"] / n


def _sockstat_field(line: str, name: str) -> int:
    f = line.split()
    return int(f[f.index(name) + 1]) if name in f else 0


def sc_idle(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    n = p.idle_n
    if env.server == "kernel" and n > KERNEL_MAX_IDLE:
        n = KERNEL_MAX_IDLE  # one fd per connection in the server process
    v, extra = _memory(env, "idle", n, _kernel_idle)
    return {"B/conn": v}, extra  # type: ignore[dict-item]


def sc_timewait(env: Env, p: Params) -> tuple[dict[str, float], dict[str, Any]]:
    v, extra = _memory(env, "timewait", p.timewait_n, _kernel_timewait)
    return {"B/entry": v}, extra  # type: ignore[dict-item]


@dataclass
class Scenario:
    fn: Callable[[Env, Params], tuple[dict[str, float], dict[str, Any]]]
    metrics: tuple[str, ...]
    memory: bool = False
    rawtun: bool = True  # rawtun serves only echo/discard/chargen


SCENARIOS: dict[str, Scenario] = {
    "bulk-in": Scenario(sc_bulk_in, ("MB/s",)),
    "bulk-out": Scenario(sc_bulk_out, ("MB/s",)),
    "crr": Scenario(sc_crr, ("conn/s",)),
    "rr": Scenario(sc_rr, ("p50 µs", "p99 µs")),
    "idle-conns": Scenario(sc_idle, ("B/conn",), memory=True),
    "timewait": Scenario(sc_timewait, ("B/entry",), memory=True),
}
SCENARIOS.update(
    (name, Scenario(fn, metrics, rawtun=False))
    for name, (fn, metrics) in HTTP_SCENARIOS.items()
)


def open_env(
    server: str, name: str, mtu: int, p: Params
) -> contextlib.AbstractContextManager[Env]:
    n = p.idle_n if name == "idle-conns" else p.timewait_n if name == "timewait" else 1
    n_ips = max(1, math.ceil((n + 400) / PORTS_PER_IP))
    keepalive = name == "idle-conns"
    if server == "ustack":
        extra = [*p.ustack_args]
        if name == "timewait":
            extra += ["--set", "msl=600"]
        return ustack_env(mtu, n_ips, keepalive, extra)
    if server == "kernel":
        return kernel_env(mtu, n_ips, keepalive, p.kernel_args)
    return rawtun_env(mtu, p.offload)


def run_suite(
    names: list[str], mtus: list[int], p: Params, servers: list[str]
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for run in range(p.runs):
        for name in names:
            sc = SCENARIOS[name]
            if sc.memory and run >= p.mem_runs:
                continue
            for mtu in mtus:
                # Rotate the order each run so no server always goes first.
                order = servers[run % len(servers) :] + servers[: run % len(servers)]
                for server in order:
                    base = {"scenario": name, "mtu": mtu, "server": server, "run": run}
                    if (sc.memory or not sc.rawtun) and server == "rawtun":
                        records += [
                            dict(base, metric=m, applicable=False) for m in sc.metrics
                        ]
                        continue
                    t0 = time.monotonic()
                    try:
                        with open_env(server, name, mtu, p) as env:
                            values, extra = sc.fn(env, p)
                    except Exception as exc:
                        err = f"{type(exc).__name__}: {exc}".strip()
                        log(f"{name} {server} mtu {mtu} run {run}: FAILED {err[:1500]}")
                        if os.environ.get("BENCH_DEBUG"):
                            traceback.print_exc()
                        records += [
                            dict(base, metric=m, value=None, error=err[:4000])
                            for m in sc.metrics
                        ]
                        continue
                    shown = ", ".join(f"{v:,.1f} {m}" for m, v in values.items())
                    log(
                        f"{name:10} {server:6} mtu {mtu:5} run {run}: {shown}"
                        f"  ({time.monotonic() - t0:.1f} s)"
                    )
                    records += [
                        dict(base, metric=m, value=v, extra=extra)
                        for m, v in values.items()
                    ]
    return records


def meta() -> dict[str, Any]:
    def sh(*cmd: str) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, timeout=10, cwd=ROOT)
                .stdout.decode()
                .strip()
            )
        except Exception:
            return ""

    load = os.getloadavg()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        ),
        "mem_gib": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        ),
        "loadavg_start": load,
        "git": sh("git", "describe", "--always", "--dirty"),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lossy"]:  # ustack vs Linux as the sender on impaired paths
        from bench_lossy import main as lossy_main

        return lossy_main(argv[1:])
    if argv[:1] == ["ways-in"]:  # trio API vs blocking socket: tools/bench_sync.py
        import bench_sync

        return bench_sync.main(argv[1:])
    if argv[:1] == ["reassembly"]:  # CPU micro-benchmark: no network, no root
        import bench_reassembly

        return bench_reassembly.main(argv[1:])
    if argv[:1] == ["memory"]:  # bytes per idle TCB: no network, no root
        import bench_memory

        return bench_memory.main(argv[1:])
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--runs", type=int, help="repetitions (default 3; --quick 1)")
    ap.add_argument(
        "--mem-runs", type=int, help="repetitions of the memory scenarios (default 1)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="small N, one run: a sanity check"
    )
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--servers", default="ustack,kernel,rawtun")
    ap.add_argument("--mtu", default="1500,65535", help="comma-separated MTUs")
    ap.add_argument("--mb", type=int, help="bulk transfer size in MB (10^6 bytes)")
    ap.add_argument("--crr-seconds", type=float)
    ap.add_argument("--crr-conc", type=int)
    ap.add_argument("--rr-count", type=int)
    ap.add_argument("--idle-n", type=int)
    ap.add_argument("--timewait-n", type=int)
    ap.add_argument(
        "--json", type=Path, help="write samples, summary and metadata here"
    )
    ap.add_argument(
        "--ustack-args",
        default="",
        help="extra `ustack up` flags, e.g. --ustack-args=--no-offload",
    )
    ap.add_argument(
        "--kernel-args",
        default="",
        help="extra tools/bench_kserver.py flags, e.g. --kernel-args='--busy-poll 50'",
    )
    ap.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "bench: needs root (network namespaces, TUN): run with sudo",
            file=sys.stderr,
        )
        return 1
    p = Params.quick() if a.quick else Params()
    for field_name in (
        "runs",
        "mem_runs",
        "mb",
        "crr_seconds",
        "crr_conc",
        "rr_count",
        "idle_n",
        "timewait_n",
    ):
        v = getattr(a, field_name)
        if v is not None:
            setattr(p, field_name, v)
    p.ustack_args = tuple(shlex.split(a.ustack_args))
    p.kernel_args = tuple(shlex.split(a.kernel_args))
    names = [n.strip() for n in a.only.split(",")] if a.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    mtus = [int(m) for m in a.mtu.split(",")]
    servers = [s.strip() for s in a.servers.split(",")]
    info = meta()
    log(f"params {p}; mtus {mtus}; servers {servers}; load {info['loadavg_start']}")
    t0 = time.monotonic()
    records = run_suite(names, mtus, p, servers)
    info["seconds"] = round(time.monotonic() - t0, 1)
    info["loadavg_end"] = os.getloadavg()
    rows = build_rows(records)
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(rich_table(rows))
    else:
        print(plain_table(rows))
    print(
        f"({info['when']}, {info['seconds']} s; load average "
        f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f})"
    )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "meta": info,
                    "params": vars(p),
                    "rows": [r.as_dict() for r in rows],
                    "samples": records,
                },
                indent=1,
                default=str,
            )
        )
    if a.markdown:
        a.markdown.write_text(markdown_table(rows) + "\n")
    failed = any(r.get("error") for r in records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
