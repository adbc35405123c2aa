#!/usr/bin/env python3
"""CPU micro-benchmark of out-of-order reassembly (no network, no root).

    .venv/bin/python tools/bench.py reassembly [--sizes 1000,10000,100000]
                                               [--runs 3] [--compare REV]

For N queued segments it times the CPU per segment (median of --runs):

- gaps:  N 1-byte segments at RCV.NXT+2, +4, +6, ... (issue 10's attack:
         every one a separate run), each followed by the SACK blocks the
         receiver's ACK carries;
- shuffled: the same N segments in a seeded random order (inserts land
         anywhere in the index, not only at the end);
- drain: the holes filled one by one, each fill popping the next run;
- tcb:   the gaps pattern through a whole receiving Tcb (on_segment:
         acceptability, queueing, the duplicate ACK with SACK blocks).

The bound is raised so all N stay queued. A flat µs/segment from 1k to 100k
is the point; `--compare REV` runs the same patterns on the reassembly.py of
git revision REV (e.g. the quadratic one) for sizes up to 8k, side by side.
It also reports the memory one queued 1-byte run really takes (tracemalloc)
beside what the bound charges for it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ustack.config import Settings  # noqa: E402
from ustack.tcp import reassembly  # noqa: E402
from ustack.tcp.tcb import Tcb  # noqa: E402
from ustack.wire.tcp import ACK, SYN, TcpSegment  # noqa: E402

RCV_NXT = 0xFFFF0000  # the stream crosses the 2**32 wrap
MASK = 0xFFFFFFFF


def _limit(n: int) -> int:
    return 4 * n * (reassembly.RUN_COST + reassembly.CHUNK_COST + 1) + (1 << 20)


def _per_segment(fn: Callable[[], int]) -> float:
    """CPU µs per segment (process time: on a shared machine, wall time
    would also count the waits for a CPU)."""
    t0 = time.process_time()
    n = fn()
    return (time.process_time() - t0) / n * 1e6


def _insert_all(mod: Any, order: list[int]) -> float:
    n = len(order)
    r = mod.Reassembly(_limit(n))

    def run() -> int:
        for i in order:
            r.add(RCV_NXT, (RCV_NXT + 2 + 2 * i) & MASK, b"x")
            r.sack_blocks(RCV_NXT, 3)
        return n

    us = _per_segment(run)
    assert len(r) == n, len(r)
    return us


def gaps(mod: Any, n: int) -> float:
    return _insert_all(mod, list(range(n)))


def shuffled(mod: Any, n: int) -> float:
    order = list(range(n))
    random.Random(1).shuffle(order)
    return _insert_all(mod, order)


def drain(mod: Any, n: int) -> float:
    r = mod.Reassembly(_limit(n))
    for i in range(n):
        r.add(RCV_NXT, (RCV_NXT + 2 + 2 * i) & MASK, b"x")

    def run() -> int:
        nxt = (RCV_NXT + 2) & MASK  # the in-order path filled the first hole
        for _ in range(n):
            got = r.pop_ready(nxt)
            assert got == b"x"
            nxt = (nxt + 2) & MASK  # the popped byte and the next hole's
        return n

    us = _per_segment(run)
    assert len(r) == 0
    return us


def tcb(mod: Any, n: int) -> float:
    if mod is not reassembly:
        return float("nan")  # the TCB is wired to the current module only
    settings = Settings(ooo_max_bytes=_limit(n), rcv_buf=1 << 30, wscale=14)
    t = Tcb(settings, (b"\x0a\0\0\x02", 80), (b"\x0a\0\0\x01", 4000), 7, 1460, 0.0)
    irs = (RCV_NXT - 1) & MASK
    syn = TcpSegment(
        4000, 80, irs, 0, SYN, 65535, mss=1460, wscale=14, sack_permitted=True
    )
    t.open_passive(syn, 0.0)
    t.on_segment(TcpSegment(4000, 80, RCV_NXT, 8, ACK, 65535), 0.0)
    t.flush(0.0)
    t.rcv_adv = (RCV_NXT + (1 << 30)) & MASK  # as if a 1 GB window was offered
    segs = [
        TcpSegment(4000, 80, (RCV_NXT + 2 + 2 * i) & MASK, 8, ACK, 65535, b"x")
        for i in range(n)
    ]

    def run() -> int:
        for i, seg in enumerate(segs):
            t.on_segment(seg, i * 1e-6)
            t.outbox.clear()
        return n

    us = _per_segment(run)
    assert len(t.ooo) == n, len(t.ooo)
    return us


PATTERNS = {"gaps": gaps, "shuffled": shuffled, "drain": drain, "tcb": tcb}


def run_memory() -> tuple[float, int]:
    """Measured bytes per isolated 1-byte run vs. the bound's charge."""
    n = 20_000
    r = reassembly.Reassembly(_limit(n))
    data = [b"x"] * n  # the payload objects exist before, as they do on input
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        r.add(0, 2 + 2 * i, data[i])
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n, reassembly.RUN_COST + reassembly.CHUNK_COST + 1


def load_revision(rev: str) -> types.ModuleType:
    src = subprocess.run(
        ["git", "show", f"{rev}:ustack/tcp/reassembly.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    mod = types.ModuleType(f"reassembly_{rev}")
    exec(compile(src, f"{rev}:reassembly.py", "exec"), mod.__dict__)
    # Its bound counts bytes only; the figures here only need room for all.
    mod.RUN_COST = mod.CHUNK_COST = 0  # type: ignore[attr-defined]
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compare", metavar="REV", help="also time REV's reassembly.py")
    ap.add_argument("--compare-sizes", default="1000,2000,4000,8000")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    impls: list[tuple[str, Any, list[int]]] = [("current", reassembly, sizes)]
    if a.compare:
        impls.append(
            (
                a.compare,
                load_revision(a.compare),
                [int(s) for s in a.compare_sizes.split(",")],
            )
        )
    print(
        f"{'impl':>10} {'N':>8} "
        + " ".join(f"{p:>9}" for p in PATTERNS)
        + "   (µs per segment, median of "
        f"{a.runs})"
    )
    for label, mod, ns in impls:
        for n in ns:
            cells = []
            for name, fn in PATTERNS.items():
                samples = [fn(mod, n) for _ in range(a.runs)]
                cells.append(statistics.median(samples))
                del name
            print(
                f"{label:>10} {n:>8} " + " ".join(f"{c:9.2f}" for c in cells),
                flush=True,
            )
    used, charged = run_memory()
    print(f"memory per isolated 1-byte run: {used:.0f} B measured, {charged} B charged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
