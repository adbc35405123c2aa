#!/usr/bin/env python3
"""Memory micro-benchmark: bytes per idle established TCB (no network, no root).

    .venv/bin/python tools/bench.py memory [--n 20000] [--runs 3]
                                           [--exchange] [--root DIR]

It builds N connections through the real handshake, sans-IO: a client TCB
sends its SYN, a server TCB opens passively on it, the SYN-ACK and the ACK
go across, both flush; only the server TCBs are kept (the side `ustack up`
holds in the idle-conns scenario), with keepalive on, as `ustack up
--keepalive` sets it, and one Counter shared by all (as the stack shares
its counters). `--exchange` first sends a 100-byte request and a 1000-byte
response, all acknowledged: an idle keep-alive connection after use.

Reported, median of --runs (each in a fresh subprocess):
- tracemalloc: traced bytes per server TCB (everything it allocated and
  still holds);
- RSS: the process's resident-set growth per TCB (tracemalloc off);
- a breakdown of one TCB by slot: the bytes each slot holds that no other
  TCB shares (objects reached through __slots__, lists, dicts, dataclass
  fields), and the same by object type.

`--root DIR` measures the ustack tree in DIR (e.g. a clone of main) with
this same harness, for a side-by-side comparison.

`--cpu [--root DIR ...]` instead times the fast path the layout must not
slow: CPU seconds (process time) per MB of a sans-IO TCB pair moving 20 MB
(MSS 1460, and 64 KB offloaded segments), and per request/response (100 B
up, 1000 B down) on one connection, also with every segment carried
through the IPv4/TCP packet codec as `ustack up` with offload does it
(built with a partial checksum, parsed with the checksum trusted); each
root alternately in fresh processes, median of --runs (each the best of 5
after a warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = (bytes([10, 0, 0, 2]), 80)
CLIENT_IP = bytes([10, 0, 0, 1])


def _build(n: int, exchange: bool) -> list[Any]:
    from ustack.config import Settings
    from ustack.tcp.tcb import Tcb

    settings = Settings()
    counters: Counter[str] = Counter()
    servers: list[Any] = []
    now = 1.0
    for i in range(n):
        client_addr = (CLIENT_IP, 10000 + i % 50000)
        a = Tcb(settings, client_addr, SERVER, (i * 7919) & 0xFFFFFFFF, 1460, now,
                counters)
        b = Tcb(settings, SERVER, client_addr, (i * 104729 + 12345) & 0xFFFFFFFF,
                1460, now, counters)
        b.set_keepalive(True, now)
        a.open_active(now)
        (syn,) = a.outbox
        a.outbox.clear()
        b.open_passive(syn, now)
        _shuttle(a, b, now)
        if exchange:
            a.send(b"q" * 100)
            a.flush(now)
            _shuttle(a, b, now)
            b.read(1 << 16)
            b.send(b"r" * 1000)
            b.flush(now)
            _shuttle(a, b, now)
            a.read(1 << 16)
            now += 0.5  # past the delayed ACK: the last ACKs go out
            a.on_timer(now)
            b.on_timer(now)
            _shuttle(a, b, now)
        assert b.state.name == "ESTABLISHED", b.state
        assert b.snd_una == b.snd_max and not b.outbox
        servers.append(b)
    return servers


def _through_wire(seg: Any, src: bytes, dst: bytes) -> Any:
    """A segment as `ustack up` sends and receives it with offload (the
    default): IPv4+TCP packet with a partial checksum, parsed back with
    the checksum trusted (ustack/stack.py _send and _input)."""
    from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
    from ustack.wire.tcp import parse_tcp

    packet = build_tcp_packet(src, dst, seg, 0, partial_csum=True)
    ip = parse_ipv4(memoryview(packet), fragments=True)
    return parse_tcp(ip.payload, ip.src, ip.dst, False)


def _shuttle(a: Any, b: Any, now: float, wire: bool = False) -> None:
    """Carry segments both ways until both outboxes stay empty; with
    `wire`, each through the packet codec."""
    for _ in range(20):
        if not a.outbox and not b.outbox:
            return
        out_a, out_b = list(a.outbox), list(b.outbox)
        a.outbox.clear()
        b.outbox.clear()
        if wire:
            out_a = [_through_wire(g, CLIENT_IP, SERVER[0]) for g in out_a]
            out_b = [_through_wire(g, SERVER[0], CLIENT_IP) for g in out_b]
        for seg in out_a:
            b.on_segment(seg, now)
        for seg in out_b:
            a.on_segment(seg, now)
        a.flush(now)
        b.flush(now)
    raise RuntimeError("the handshake did not settle")


def _pair(now: float) -> tuple[Any, Any]:
    from ustack.config import Settings
    from ustack.tcp.tcb import Tcb

    settings = Settings(snd_buf=1 << 22, rcv_buf=1 << 22)
    counters: Counter[str] = Counter()
    a = Tcb(settings, (CLIENT_IP, 40000), SERVER, 1000, 1460, now, counters)
    b = Tcb(settings, SERVER, (CLIENT_IP, 40000), 5000, 1460, now, counters)
    a.open_active(now)
    (syn,) = a.outbox
    a.outbox.clear()
    b.open_passive(syn, now)
    _shuttle(a, b, now)
    return a, b


def _pump(a: Any, b: Any, now: float) -> float:
    """Deliver until quiet; when only a delayed ACK is owed, let it fire."""
    while True:
        _shuttle(a, b, now)
        if a.snd_una == a.snd_max and b.snd_una == b.snd_max:
            return now
        now += 0.05
        a.on_timer(now)
        b.on_timer(now)


def cpu_bulk(total: int, tso: int) -> float:
    """CPU seconds per MB sent from a to b."""
    import time

    now = 1.0
    a, b = _pair(now)
    a.tso_limit = tso
    chunk = b"x" * 65536
    sent = got = 0
    t0 = time.process_time()
    while got < total:
        while sent < total and a.send_space() >= len(chunk):
            sent += a.send(chunk)
        a.flush(now)
        for _ in range(4):
            out_a = list(a.outbox)
            a.outbox.clear()
            for seg in out_a:
                b.on_segment(seg, now)
            got += len(b.read(1 << 30))
            b.flush(now)
            out_b = list(b.outbox)
            b.outbox.clear()
            for seg in out_b:
                a.on_segment(seg, now)
            a.flush(now)
            if not a.outbox:
                break
        now += 0.0005
        if not a.outbox and a.snd_una != a.snd_max and not b.outbox:
            now += 0.05  # the receiver's delayed ACK
            b.on_timer(now)
            a.on_timer(now)
    elapsed = time.process_time() - t0
    return elapsed / (total / 1e6)


def cpu_rr(n: int, wire: bool = False) -> float:
    """CPU microseconds per request/response exchange; with `wire`, every
    segment also goes through the IPv4/TCP packet codec."""
    import time

    now = 1.0
    a, b = _pair(now)
    a.nodelay = b.nodelay = True
    req, resp = b"q" * 100, b"r" * 1000
    t0 = time.process_time()
    for _ in range(n):
        a.send(req)
        a.flush(now)
        _shuttle(a, b, now, wire)
        b.read(1 << 16)
        b.send(resp)
        b.flush(now)
        _shuttle(a, b, now, wire)
        a.read(1 << 16)
        now += 0.001
    now = _pump(a, b, now)
    return (time.process_time() - t0) / n * 1e6


def child_cpu() -> dict[str, Any]:
    """Each pattern once to warm the allocator up (the first large buffers
    cost page faults that later runs do not pay), then the best of 5: on a
    shared machine the minimum is the figure least disturbed by others."""
    patterns = {
        "bulk_mss_s_per_mb": lambda: cpu_bulk(20_000_000, 0),
        "bulk_tso_s_per_mb": lambda: cpu_bulk(20_000_000, 65536),
        "rr_us": lambda: cpu_rr(5_000),
        "rr_wire_us": lambda: cpu_rr(5_000, wire=True),
    }
    out: dict[str, Any] = {}
    for name, fn in patterns.items():
        fn()
        out[name] = min(fn() for _ in range(5))
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _children(obj: Any) -> list[tuple[str, Any]]:
    """(name, value) of what `obj` refers to, for the ownership walk."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, (list, tuple, set, frozenset)) and not isinstance(obj, str):
        out.extend(("item", x) for x in obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.append(("key", k))
            out.append(("value", v))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot in ("__weakref__", "__dict__"):
                continue
            with contextlib.suppress(AttributeError):  # an unset slot
                out.append((slot, getattr(obj, slot)))
    return out


def _reach(obj: Any, shared: set[int], seen: set[int]) -> list[Any]:
    """Objects reachable from `obj` that belong to it alone."""
    found: list[Any] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or id(o) in shared:
            continue
        seen.add(id(o))
        found.append(o)
        stack.extend(v for _, v in _children(o))
    return found


def _breakdown(tcbs: list[Any]) -> dict[str, Any]:
    """Per-slot and per-type bytes of the first TCB, counting only objects
    no other sampled TCB reaches (shared settings, counters, interned small
    ints, None, enum members... are left out)."""
    sample = tcbs[:200]
    hits: Counter[int] = Counter()
    for t in sample:
        seen: set[int] = set()
        _reach(t, set(), seen)
        hits.update(seen)
    shared = {i for i, c in hits.items() if c > 1}
    t = sample[0]
    by_slot: dict[str, int] = {}
    by_type: defaultdict[str, int] = defaultdict(int)
    seen = {id(t)}
    own = sys.getsizeof(t)
    by_type[type(t).__name__] += own
    for name, value in _children(t):
        objs = _reach(value, shared, seen)
        size = sum(sys.getsizeof(o) for o in objs)
        for o in objs:
            by_type[type(o).__name__] += sys.getsizeof(o)
        if size:
            kinds = sorted({type(o).__name__ for o in objs[:1]})
            by_slot[f"{name} ({', '.join(kinds)})"] = size
    return {
        "object": own,
        "slots": len(_children(t)),
        "by_slot": dict(sorted(by_slot.items(), key=lambda kv: -kv[1])),
        "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "total": own + sum(by_slot.values()),
    }


def child(mode: str, n: int, exchange: bool) -> dict[str, Any]:
    import ustack.tcp.tcb  # noqa: F401  (imports outside the measurement)

    gc.collect()
    if mode == "trace":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tcbs = _build(n, exchange)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return {"per_tcb": (after - before) / n, "breakdown": _breakdown(tcbs)}
    before = _rss()
    tcbs = _build(n, exchange)
    gc.collect()
    after = _rss()
    assert len(tcbs) == n
    return {"per_tcb": (after - before) / n}


def compare_cpu(roots: list[Path], runs: int) -> int:
    samples: dict[Path, list[dict[str, float]]] = {r: [] for r in roots}
    for _ in range(runs):
        for root in roots:  # alternate, so load changes hit both alike
            samples[root].append(_run_child(root, "cpu", 0, False))
    keys = ("bulk_mss_s_per_mb", "bulk_tso_s_per_mb", "rr_us", "rr_wire_us")
    labels = ("bulk MSS ms/MB", "bulk 64K ms/MB", "rr us/exchange", "rr+wire us")
    scale = (1e3, 1e3, 1.0, 1.0)
    first = {k: statistics.median(s[k] for s in samples[roots[0]]) for k in keys}
    print(f"fast path, CPU (process time), median of {runs}:")
    print(f"{'tree':50} " + " ".join(f"{lab:>16}" for lab in labels))
    for root in roots:
        med = {k: statistics.median(s[k] for s in samples[root]) for k in keys}
        cells = " ".join(
            f"{med[k] * f:9.2f} ({med[k] / first[k]:4.2f}x)"
            for k, f in zip(keys, scale, strict=True)
        )
        print(f"{str(root):50} {cells}")
    return 0


def _run_child(root: Path, mode: str, n: int, exchange: bool) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode,
           "--n", str(n)] + (["--exchange"] if exchange else [])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                         cwd=root)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    module = result.pop("module")
    if not Path(module).resolve().is_relative_to(root):
        raise RuntimeError(f"measured {module}, not the tree in {root}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="TCBs per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exchange", action="store_true",
                    help="one request/response before idling")
    ap.add_argument("--root", type=Path, action="append",
                    help="the ustack tree to measure (default: this one); "
                    "with --cpu, repeat it to compare trees")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--cpu", action="store_true",
                    help="time the fast path instead (see above)")
    ap.add_argument("--child", choices=("trace", "rss", "cpu"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)))
        import ustack.tcp.tcb

        result = child_cpu() if a.child == "cpu" else child(a.child, a.n, a.exchange)
        print(json.dumps(dict(result, module=ustack.tcp.tcb.__file__)))
        return 0
    roots = [r.resolve() for r in (a.root or [ROOT])]
    if a.cpu:
        return compare_cpu(roots, a.runs)
    root = roots[0]
    trace = [_run_child(root, "trace", a.n, a.exchange) for _ in range(a.runs)]
    rss = [_run_child(root, "rss", a.n, a.exchange) for _ in range(a.runs)]
    traced = statistics.median(r["per_tcb"] for r in trace)
    resident = statistics.median(r["per_tcb"] for r in rss)
    bd = trace[0]["breakdown"]
    what = "idle after one exchange" if a.exchange else "idle after the handshake"
    print(f"{root}: {a.n} established server TCBs, {what} (median of {a.runs})")
    print(f"  tracemalloc  {traced:8.0f} B per TCB")
    print(f"  RSS          {resident:8.0f} B per TCB")
    print(f"  one TCB, by slot (unshared bytes; the object itself "
          f"{bd['object']} B, {bd['slots']} slots; total {bd['total']} B):")
    for name, size in bd["by_slot"].items():
        print(f"    {size:6d}  {name}")
    print("  by type:")
    for name, size in bd["by_type"].items():
        print(f"    {size:6d}  {name}")
    if a.json:
        a.json.write_text(json.dumps(
            {"root": str(root), "n": a.n, "exchange": a.exchange,
             "tracemalloc": traced, "rss": resident, "trace_runs": trace,
             "rss_runs": rss}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
