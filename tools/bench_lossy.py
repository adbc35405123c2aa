#!/usr/bin/env python3
"""Sender under loss: ustack vs Linux (reno, cubic, bbr) on impaired paths.

Both send over the same impaired path, side by side in one process.

The impaired path runs in its own OS process (`ustack up --impair-process`,
ustack/link/impair_proc.py) with its own clock, so a stall of the ustack
process does not stall the path and release its queue (and the ACKs) in a
batch. Every sender crosses that same emulator: when ustack sends, its
segments go stack -> socketpair -> path process -> TUN -> kernel; when
Linux sends, its segments go kernel -> TUN -> path process -> socketpair ->
ustack, and the ACKs take the other way. So the comparison stays fair.
`--path-modes process,inline` runs every (path, seed, sender) in both
modes side by side (the inline one, the path inside ustack's own event
loop as before, shows as PATH/inline).

    sudo .venv/bin/python tools/bench.py lossy [--quick] [--seeds 3] [--mb 5]
        [--paths loss1,mixed,lfp,bottleneck] [--path NAME=SPEC ...]
        [--senders ustack,ustack-bbr,reno,cubic,bbr,ustack-bbr-x2]
        [--ustack-args '--set congestion=reno'] [--path-modes process,inline]
        [--timeout 180] [--json FILE] [--markdown FILE]

For every (path, seed, sender) a fresh network namespace gets
`ustack up --no-offload --impair SPEC,data=D,seed=S --services http` (plus
--ustack-args, which come last and so may override --no-offload), and one
N MB transfer runs through the impaired link. D is the direction the data
takes (out for ustack senders, in for Linux ones): with it the impairment's
two random streams are keyed by role, so at one seed every sender's data
packets meet the same decisions per packet index, and its ACKs too.

- ustack sends: a kernel socket in the namespace GETs /bytes/N from ustack's
  HTTP service. ustack's RTT samples come from its control socket (the
  `ustack ss --json` rows, polled every 0.2 s), its RTO count and
  retransmissions from `ustack stats` (TCPTimeouts, RetransSegs).
- Linux sends: a kernel socket POSTs N MB to ustack's /sha256 (the digest is
  checked) with TCP_CONGESTION set per socket before connect and read back
  (root may pick any algorithm in tcp_available_congestion_control even if
  tcp_allowed_congestion_control does not list it). RTT from the socket's
  TCP_INFO (tcpi_rtt) sampled while sending; RTOs and retransmissions from
  the namespace's TcpExt TCPTimeouts and Tcp RetransSegs.

- ustack-bbr: as ustack, with `--set congestion=bbr` (BBR v1, paced).
- ustack-bbr-x2 (bottleneck path only): two GETs from ustack BBR at once,
  sharing the one impaired link; each one's goodput is its share.

RTT the flow sees: the median, 90th percentile and minimum of the smoothed
RTT sampled every 0.2 s (ustack: the connection's srtt from `ustack ss`;
Linux: tcpi_rtt, also the kernel's srtt), so both columns are the same
kind of figure. The path's base RTT is measured, not assumed: before each
transfer 10 pings cross the idle impaired path (both directions, like the
data); "path base" is the fastest of them over every run of that path
(every sender, every seed), and "RTT/base" the sender's median RTT over
it, so a queue a flow keeps cannot raise the base it is compared with.
Each flow's own minimum raw RTT (Linux tcpi_min_rtt, ustack BBR's min_rtt
filter) goes into the JSON samples as flow_min_rtt_ms.
The time is from connect() to the last byte of the answer. The senders'
order rotates with the seed; the namespace is deleted after every transfer,
and every transfer is bounded by --timeout. Tables: median seconds per
sender, the ratios ustack/Linux-cubic and ustack/Linux-reno of the medians
(below 1: ustack is faster), and per sender goodput, RTT, RTOs, retransmits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

SERVER = "10.203.0.2"
HTTP_PORT = 80
PATHS: dict[str, str] = {
    "loss1": "loss=1%,delay=10ms",
    "mixed": "loss=5%,dup=2%,reorder=5%,delay=5ms",
    "lfp": "loss=0.1%,delay=50ms",
    "bottleneck": "rate=20mbit,queue=500,delay=20ms",
}
SHARED_PATH = "bottleneck"  # where two flows share the link
LINUX_CC = ("reno", "cubic", "bbr")
USTACK_SENDERS = ("ustack", "ustack-bbr", "ustack-bbr-x2")
SENDERS = ("ustack", "ustack-bbr", *LINUX_CC, "ustack-bbr-x2")
BBR_ARGS = ("--set", "congestion=bbr")
BASE_USTACK_ARGS = ("--no-offload", "--services", "http")
PATH_MODES = ("process", "inline")
RTT_POLL = 0.2  # seconds between RTT samples
COMMAND = "sudo .venv/bin/python tools/bench.py lossy"


def log(msg: str) -> None:
    print(f"[bench lossy] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The clients (run inside the namespace: `bench_lossy.py client ...`)
def pattern(n: int) -> bytes:
    """ustack's /bytes/N body: byte i is i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def tcp_info_rtt_ms(sock: socket.socket) -> tuple[float | None, float | None]:
    """The kernel's smoothed RTT of `sock` and its minimum raw RTT sample
    (struct tcp_info's tcpi_rtt at byte 68 and tcpi_min_rtt at 148, us)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 152)
    if len(info) < 72:
        return None, None
    (rtt_us,) = struct.unpack_from("=I", info, 68)
    min_us = struct.unpack_from("=I", info, 148)[0] if len(info) >= 152 else 0
    return (rtt_us / 1000 if rtt_us else None), (min_us / 1000 if min_us else None)


def _recv_until(
    sock: socket.socket, done: Any, deadline: float, on_wait: Any = None
) -> bytes:
    buf = bytearray()
    while not done(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out with {len(buf)} bytes of the answer")
        ready, _, _ = select.select([sock], [], [], min(left, RTT_POLL))
        if on_wait is not None:
            on_wait()
        if ready:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"EOF after {len(buf)} bytes of the answer")
            buf.extend(chunk)
    return bytes(buf)


def _split_response(buf: bytes) -> tuple[str, bytes] | None:
    head, sep, body = buf.partition(b"\r\n\r\n")
    return (head.decode("latin-1"), body) if sep else None


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    raise ValueError(f"no Content-Length in {head!r}")


def client_get(nbytes: int, timeout: float) -> dict[str, Any]:
    """Download /bytes/N from ustack (ustack is the sender)."""
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    sock = socket.create_connection((SERVER, HTTP_PORT), timeout=timeout)
    with sock:
        sock.sendall(
            f"GET /bytes/{nbytes} HTTP/1.1\r\nHost: {SERVER}\r\n"
            "Connection: close\r\n\r\n".encode()
        )

        def done(buf: bytearray) -> bool:
            parts = _split_response(bytes(buf[:4096]))
            if parts is None:
                return False
            head, _ = parts
            return len(buf) - len(head) - 4 >= _content_length(head)

        answer = _recv_until(sock, done, deadline)
        seconds = time.monotonic() - start
    parts = _split_response(answer)
    assert parts is not None
    head, body = parts
    if not head.startswith("HTTP/1.1 200") or body != pattern(nbytes):
        raise RuntimeError(f"bad answer: {head!r}, {len(body)} body bytes")
    return {"seconds": seconds}


def client_post(nbytes: int, cc: str, timeout: float) -> dict[str, Any]:
    """POST N bytes to ustack's /sha256 with congestion control `cc` (Linux
    is the sender); sample the socket's RTT while it sends."""
    body = pattern(nbytes)
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        got = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        chosen = got.split(b"\0", 1)[0].decode()
        if chosen != cc:
            raise RuntimeError(f"TCP_CONGESTION {cc} did not stick: {chosen}")
        sock.settimeout(timeout)
        rtts: list[float] = []
        min_rtts: list[float] = []
        next_sample = 0.0

        def sample() -> None:
            nonlocal next_sample
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + RTT_POLL
                rtt, min_rtt = tcp_info_rtt_ms(sock)
                if rtt is not None:
                    rtts.append(rtt)
                if min_rtt is not None:
                    min_rtts.append(min_rtt)

        start = time.monotonic()
        sock.connect((SERVER, HTTP_PORT))
        sock.sendall(
            f"POST /sha256 HTTP/1.1\r\nHost: {SERVER}\r\n"
            f"Content-Length: {nbytes}\r\nConnection: close\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        view = memoryview(body)
        for offset in range(0, nbytes, 1 << 16):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after sending {offset} bytes")
            sock.sendall(view[offset : offset + (1 << 16)])
            sample()

        def done(buf: bytearray) -> bool:
            parts = _split_response(bytes(buf))
            return parts is not None and len(parts[1].strip()) >= 64

        answer = _recv_until(sock, done, deadline, sample)
        seconds = time.monotonic() - start
    parts = _split_response(answer)
    assert parts is not None
    digest = parts[1].strip().decode(errors="replace")
    if digest != hashlib.sha256(body).hexdigest():
        raise RuntimeError(f"wrong digest from /sha256: {parts!r}")
    return {
        "seconds": seconds,
        "cc": chosen,
        "rtt_ms": rtts,
        "flow_min_rtt_ms": min(min_rtts) if min_rtts else None,
    }


def client_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_lossy.py client")
    ap.add_argument("mode", choices=("get", "post"))
    ap.add_argument("nbytes", type=int)
    ap.add_argument("--cc", default="cubic")
    ap.add_argument("--timeout", type=float, default=180)
    a = ap.parse_args(argv)
    if a.mode == "get":
        result = client_get(a.nbytes, a.timeout)
    else:
        result = client_post(a.nbytes, a.cc, a.timeout)
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------
# One transfer in its own namespace
@dataclass
class Params:
    seeds: int = 3
    mb: float = 5.0
    timeout: float = 180.0
    paths: dict[str, str] = field(default_factory=lambda: dict(PATHS))
    senders: tuple[str, ...] = SENDERS
    ustack_args: tuple[str, ...] = ()
    path_modes: tuple[str, ...] = ("process",)  # and/or "inline"

    @property
    def nbytes(self) -> int:
        return int(self.mb * 1_000_000)


@dataclass
class Sample:
    path: str
    seed: int
    sender: str  # "ustack" or a Linux congestion control
    seconds: float | None = None
    rtt_ms: float | None = None  # median of the RTT samples during the run
    rtt_p90_ms: float | None = None
    rtt_min_ms: float | None = None
    ping_min_ms: float | None = None  # idle path, before the transfer
    flow_min_rtt_ms: float | None = None  # the flow's own minimum raw RTT
    shares: list[float] = field(default_factory=list)  # Mbit/s per flow (x2)
    rtos: int | None = None
    retrans: int | None = None
    error: str = ""


def _control_request(path: str, message: dict[str, Any]) -> dict[str, Any]:
    """One request on ustack's control socket (what `ustack ss/stats --json` do)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf.extend(chunk)
    reply: dict[str, Any] = json.loads(buf)
    return reply


class RttPoller:
    """Samples the srtt of ustack's port-80 connection from its control socket."""

    def __init__(self, control: str) -> None:
        self.control = control
        self.samples: list[float] = []
        self.min_rtts: list[float] = []  # BBR's min_rtt filter, when shown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RttPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(RTT_POLL):
            with contextlib.suppress(OSError, ValueError):
                reply = _control_request(self.control, {"cmd": "ss"})
                for row in reply.get("connections", []):
                    # Any state: with Connection: close the server's FIN
                    # is queued behind the data (FIN-WAIT-1 while it sends).
                    local = str(row.get("local", ""))
                    if local.endswith(f":{HTTP_PORT}") and row.get("rtt") is not None:
                        self.samples.append(float(row["rtt"]) * 1000)
                        mrtt = (row.get("bbr") or {}).get("mrtt")
                        if mrtt:
                            self.min_rtts.append(float(mrtt) * 1000)

    @property
    def flow_min_rtt_ms(self) -> float | None:
        return min(self.min_rtts) if self.min_rtts else None


PING_COUNT = 10


def ping_min_ms(ns: Any) -> float | None:
    """The idle path's RTT: the fastest of PING_COUNT pings to ustack, which
    cross the impairment both ways as the data and its ACKs do."""
    proc = ns.run(
        "ping",
        "-n",
        "-q",
        "-c",
        str(PING_COUNT),
        "-i",
        "0.05",
        "-W",
        "2",
        SERVER,
        timeout=30,
        check=False,
    )
    for line in proc.stdout.decode(errors="replace").splitlines():
        if "min/avg/max" in line:
            return float(line.split("=")[1].split("/")[0])
    return None


def _kernel_counters(ns: Any) -> dict[str, int]:
    """TcpExt and Tcp counters of the namespace (/proc/net/netstat, snmp)."""
    found: dict[str, int] = {}
    for name in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = ns.run("cat", name, timeout=10).stdout.decode().splitlines()
        for keys, values in zip(lines[::2], lines[1::2], strict=False):
            prefix, _, names = keys.partition(":")
            for k, v in zip(
                names.split(), values.partition(":")[2].split(), strict=False
            ):
                with contextlib.suppress(ValueError):
                    found[f"{prefix}.{k}"] = int(v)
    return found


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _rtt_stats(sample: Sample, rtts: Sequence[float]) -> None:
    if not rtts:
        return
    ordered = sorted(rtts)
    sample.rtt_ms = statistics.median(ordered)
    sample.rtt_p90_ms = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    sample.rtt_min_ms = ordered[0]


def data_direction(sender: str) -> str:
    """Which way the data crosses ustack's impaired link: out of ustack
    when it sends (a kernel client GETs from it), into it when Linux sends
    (a kernel client POSTs to it)."""
    return "out" if sender in USTACK_SENDERS else "in"


def impair_spec(spec: str, seed: int, sender: str) -> str:
    """The --impair spec of one run: the random streams keyed by role
    (`data=`, ustack/link/impair.py), so every sender's data packets meet
    the same decisions per packet index at one seed, and its ACKs too."""
    return f"{spec},data={data_direction(sender)},seed={seed}"


def run_one(
    path: str, spec: str, seed: int, sender: str, p: Params, mode: str = "process"
) -> Sample:
    from netns import create_netns, start_ustack

    sample = Sample(path if mode == "process" else f"{path}/{mode}", seed, sender)
    ns = create_netns("ustack-bench-l-")
    stack = None
    try:
        stack = start_ustack(
            ns,
            *BASE_USTACK_ARGS,
            "--impair",
            impair_spec(spec, seed, sender),
            *(("--impair-process",) if mode == "process" else ()),
            *p.ustack_args,
            *(BBR_ARGS if sender.startswith("ustack-bbr") else ()),
            log_dir="/tmp",
        )
        control = f"/run/ustack/ustack0@{ns.name}.sock"
        sample.ping_min_ms = ping_min_ms(ns)
        client = [sys.executable, str(Path(__file__).resolve()), "client"]
        limit = p.timeout + 30
        if sender == "ustack-bbr-x2":
            get = (*client, "get", str(p.nbytes), "--timeout", str(p.timeout))
            with RttPoller(control) as poller:
                pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
                procs = [ns.popen(*get, **pipes) for _ in range(2)]
                outs = [pr.communicate(timeout=limit) for pr in procs]
            rtts = poller.samples
            sample.flow_min_rtt_ms = poller.flow_min_rtt_ms
            secs = []
            for pr, (out, err) in zip(procs, outs, strict=True):
                if pr.returncode != 0:
                    lines = err.decode(errors="replace").strip().splitlines()
                    raise RuntimeError(lines[-1] if lines else "a flow failed")
                secs.append(float(json.loads(out.decode().splitlines()[-1])["seconds"]))
            sample.shares = [p.nbytes * 8 / t / 1e6 for t in secs]
            sample.seconds = max(secs)
            _rtt_stats(sample, rtts)
            return sample
        if sender in USTACK_SENDERS:
            with RttPoller(control) as poller:
                proc = ns.run(
                    *client,
                    "get",
                    str(p.nbytes),
                    "--timeout",
                    str(p.timeout),
                    timeout=limit,
                    check=False,
                )
            rtts = poller.samples
            sample.flow_min_rtt_ms = poller.flow_min_rtt_ms
            counters = _control_request(control, {"cmd": "stats"})["counters"]
            sample.rtos = int(counters.get("TCPTimeouts", 0))
            sample.retrans = int(counters.get("RetransSegs", 0))
        else:
            proc = ns.run(
                *client,
                "post",
                str(p.nbytes),
                "--cc",
                sender,
                "--timeout",
                str(p.timeout),
                timeout=limit,
                check=False,
            )
            rtts = []
            kernel = _kernel_counters(ns)
            sample.rtos = kernel.get("TcpExt.TCPTimeouts", 0)
            sample.retrans = kernel.get("Tcp.RetransSegs", 0)
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit {proc.returncode}")
        result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        sample.seconds = float(result["seconds"])
        _rtt_stats(sample, result.get("rtt_ms", rtts))
        if result.get("flow_min_rtt_ms") is not None:
            sample.flow_min_rtt_ms = float(result["flow_min_rtt_ms"])
        if stack.proc.poll() is not None:
            raise RuntimeError("ustack up died during the transfer")
    except Exception as exc:
        sample.seconds = None
        sample.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.stop()
        ns.delete()
    return sample


def run_all(p: Params) -> list[Sample]:
    samples: list[Sample] = []
    for path, spec in p.paths.items():
        for seed in range(1, p.seeds + 1):
            k = (seed - 1) % len(p.senders)
            for sender in p.senders[k:] + p.senders[:k]:
                if sender == "ustack-bbr-x2" and path != SHARED_PATH:
                    continue
                for mode in p.path_modes:
                    s = run_one(path, spec, seed, sender, p, mode)
                    shown = (
                        f"{s.seconds:.2f} s, rtt {fmt(s.rtt_ms)} ms, {s.rtos} "
                        f"RTOs, {s.retrans} retrans"
                        if s.seconds is not None
                        else f"FAILED {s.error}"
                    )
                    log(f"{s.path:10} seed {seed} {sender:6}: {shown}")
                    samples.append(s)
    return samples


# --------------------------------------------------------------------------
# Tables (pure functions of the samples)
def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:,.0f}"


def label(sender: str) -> str:
    if sender == "ustack-bbr-x2":
        return "2 x ustack bbr"
    if sender == "ustack-bbr":
        return "ustack bbr"
    return "ustack" if sender == "ustack" else f"Linux {sender}"


def medians(samples: Sequence[Sample], path: str, sender: str) -> dict[str, Any]:
    mine = [s for s in samples if s.path == path and s.sender == sender]
    ok = [s for s in mine if s.seconds is not None]
    secs = [s.seconds for s in ok if s.seconds is not None]
    return {
        "seconds": _median(secs),
        "failed": len(mine) - len(ok),
        "runs": len(mine),
        "rtt_ms": _median([s.rtt_ms for s in ok if s.rtt_ms is not None]),
        "rtt_p90_ms": _median([s.rtt_p90_ms for s in ok if s.rtt_p90_ms is not None]),
        "rtt_min_ms": _median([s.rtt_min_ms for s in ok if s.rtt_min_ms is not None]),
        "rtos": [s.rtos for s in ok if s.rtos is not None],
        "retrans": _median([s.retrans for s in ok if s.retrans is not None]),
    }


def path_base_rtt(samples: Sequence[Sample], path: str) -> float | None:
    """The path's base RTT: the fastest idle-path ping of any run on it (any
    sender, any seed), the one figure taken the same way for every sender.
    (The flows' own minima are kept in the samples; Linux's tcpi_min_rtt
    can read below the path's delay, as Linux stamps paced segments with
    their EDT departure time, which may lie ahead of the actual send.)"""
    found = [s.ping_min_ms for s in samples if s.path == path and s.ping_min_ms]
    return min(found) if found else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def shown_paths(p: Params) -> list[tuple[str, str, str]]:
    """(name in the tables, spec, path) per path and mode, as run_one names
    its samples: PATH for the path process, PATH/inline for the other."""
    return [
        (path if mode == "process" else f"{path}/{mode}", spec, path)
        for path, spec in p.paths.items()
        for mode in p.path_modes
    ]


def summary_table(samples: Sequence[Sample], p: Params) -> list[list[str]]:
    """One row per path: median seconds per sender and ustack's ratios."""
    senders = [s for s in p.senders if s != "ustack-bbr-x2"]
    header = ["path", *(label(s) for s in senders)]
    has_u = "ustack" in p.senders
    has_bbr = "ustack-bbr" in p.senders and "bbr" in p.senders
    for base in ("cubic", "reno"):
        if has_u and base in p.senders:
            header.append(f"ustack/{base}")
    if has_bbr:
        header.append("ustack bbr/bbr")
    if has_u:
        header.append("ustack RTOs per run")
    rows = [header]
    for path, spec, _ in shown_paths(p):
        m = {s: medians(samples, path, s) for s in p.senders}
        row = [f"{path}: {spec}"]
        for s in senders:
            cell = fmt(m[s]["seconds"]) + " s" if m[s]["seconds"] is not None else "-"
            if m[s]["failed"]:
                cell += f" ({m[s]['failed']}/{m[s]['runs']} failed)"
            row.append(cell)
        for base in ("cubic", "reno"):
            if has_u and base in p.senders:
                r = ratio(m["ustack"]["seconds"], m[base]["seconds"])
                row.append(f"{r:.2f}x" if r is not None else "-")
        if has_bbr:
            r = ratio(m["ustack-bbr"]["seconds"], m["bbr"]["seconds"])
            row.append(f"{r:.2f}x" if r is not None else "-")
        if has_u:
            row.append(" / ".join(str(x) for x in m["ustack"]["rtos"]) or "-")
        rows.append(row)
    return rows


def detail_table(samples: Sequence[Sample], p: Params) -> list[list[str]]:
    """Per path and sender: goodput, RTT the flow saw, RTOs, retransmits."""
    rows = [
        [
            "path",
            "sender",
            "median s",
            "goodput Mbit/s",
            "RTT ms (median)",
            "RTT p90",
            "RTT min",
            "path base",
            "RTT/base",
            "RTOs per run",
            "retrans (median)",
        ]
    ]
    for path, _, plain_path in shown_paths(p):
        base = path_base_rtt(samples, path)
        for s in p.senders:
            if s == "ustack-bbr-x2" and plain_path != SHARED_PATH:
                continue
            m = medians(samples, path, s)
            over = ratio(m["rtt_ms"], base)
            secs = m["seconds"]
            goodput = p.nbytes * 8 / secs / 1e6 if secs else None
            if s == "ustack-bbr-x2" and goodput is not None:
                goodput *= 2  # both flows' bytes over the slower one's time
            rows.append(
                [
                    path,
                    label(s),
                    fmt(secs),
                    fmt(goodput, 1),
                    fmt(m["rtt_ms"], 1),
                    fmt(m["rtt_p90_ms"], 1),
                    fmt(m["rtt_min_ms"], 1),
                    fmt(base, 1),
                    f"{over:.2f}x" if over is not None else "-",
                    " / ".join(str(x) for x in m["rtos"]) or "-",
                    fmt(m["retrans"], 0),
                ]
            )
    return rows


def share_table(samples: Sequence[Sample]) -> list[list[str]]:
    """Two ustack BBR flows on one bottleneck: each one's goodput per run."""
    rows = [["seed", "flow 1 Mbit/s", "flow 2 Mbit/s", "smaller/larger"]]
    for s in samples:
        if s.sender == "ustack-bbr-x2" and len(s.shares) == 2:
            a, b = s.shares
            rows.append([str(s.seed), fmt(a, 1), fmt(b, 1), fmt(min(a, b) / max(a, b))])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )


# --------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> tuple[Params, argparse.Namespace]:
    ap = argparse.ArgumentParser(
        prog="bench.py lossy",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 MB: a sanity check")
    ap.add_argument("--seeds", type=int, help="seeds per path (default 3)")
    ap.add_argument("--mb", type=float, help="transfer size in MB (default 5)")
    ap.add_argument("--timeout", type=float, help="per-transfer limit, s (default 180)")
    ap.add_argument(
        "--paths", help=f"comma-separated subset of {','.join(PATHS)} (default: all)"
    )
    ap.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="an extra path, e.g. --path 'lossy2=loss=2%%,delay=10ms' (repeatable)",
    )
    ap.add_argument(
        "--senders",
        default=",".join(SENDERS),
        help=f"comma-separated subset of {','.join(SENDERS)}",
    )
    ap.add_argument(
        "--ustack-args",
        default="",
        help="extra `ustack up` flags, e.g. --ustack-args='--set congestion=reno'",
    )
    ap.add_argument(
        "--path-modes",
        default="process",
        help="where the impaired path runs: process (its own OS process, "
        "the default), inline (inside ustack's event loop), or both, "
        "comma-separated, run side by side",
    )
    ap.add_argument("--json", type=Path, help="write samples and tables here")
    ap.add_argument("--markdown", type=Path, help="write both tables as Markdown here")
    a = ap.parse_args(argv)
    p = Params(seeds=1, mb=1.0, timeout=60.0) if a.quick else Params()
    if a.seeds is not None:
        p.seeds = a.seeds
    if a.mb is not None:
        p.mb = a.mb
    if a.timeout is not None:
        p.timeout = a.timeout
    if a.paths:
        names = [n.strip() for n in a.paths.split(",") if n.strip()]
        unknown = [n for n in names if n not in PATHS]
        if unknown:
            ap.error(f"unknown path(s) {unknown}; known: {', '.join(PATHS)}")
        p.paths = {n: PATHS[n] for n in names}
    if a.path and not a.paths:
        p.paths = {}  # --path alone: only the given paths
    for item in a.path:
        name, sep, spec = item.partition("=")
        if not sep or not spec:
            ap.error(f"--path wants NAME=SPEC, got {item!r}")
        p.paths[name] = spec
    senders = tuple(s.strip() for s in a.senders.split(",") if s.strip())
    bad = [s for s in senders if s not in SENDERS]
    if bad or not senders:
        ap.error(f"unknown sender(s) {bad}; known: {', '.join(SENDERS)}")
    p.senders = senders
    p.ustack_args = tuple(shlex.split(a.ustack_args))
    modes = tuple(m.strip() for m in a.path_modes.split(",") if m.strip())
    if not modes or any(m not in PATH_MODES for m in modes):
        ap.error(f"--path-modes: choose from {', '.join(PATH_MODES)}")
    p.path_modes = modes
    return p, a


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["client"]:
        return client_main(args[1:])
    p, a = parse_args(args)
    if os.geteuid() != 0:
        print(
            "bench lossy: needs root (network namespaces, TUN): run with sudo",
            file=sys.stderr,
        )
        return 1
    from ustack.link.impair import ImpairSpecError, parse_impair_spec

    for name, spec in p.paths.items():
        try:
            parse_impair_spec(spec)
        except ImpairSpecError as exc:
            print(f"bench lossy: path {name}: {exc}", file=sys.stderr)
            return 2
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    log(f"{p}; load {load0:.2f}")
    t0 = time.monotonic()
    samples = run_all(p)
    elapsed = time.monotonic() - t0
    summary, detail = summary_table(samples, p), detail_table(samples, p)
    shares = share_table(samples)
    print(plain(summary))
    print()
    print(plain(detail))
    if len(shares) > 1:
        print()
        print(plain(shares))
    footer = (
        f"({started}, {p.mb:g} MB, median of {p.seeds} seed(s), ustack up "
        f"{' '.join((*BASE_USTACK_ARGS, *p.ustack_args))}; path in "
        f"{' and '.join(p.path_modes)} mode; {elapsed:.0f} s; load "
        f"average {load0:.2f} -> {os.getloadavg()[0]:.2f})"
    )
    print(footer)
    if a.markdown:
        a.markdown.write_text(
            markdown(summary)
            + "\n\n"
            + markdown(detail)
            + ("\n\n" + markdown(shares) if len(shares) > 1 else "")
            + "\n\n"
            + footer
            + "\n"
        )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "started": started,
                    "params": asdict(p),
                    "samples": [asdict(s) for s in samples],
                    "summary": summary,
                    "detail": detail,
                    "shares": shares,
                },
                indent=1,
            )
        )
    return 1 if any(s.error for s in samples) else 0


if __name__ == "__main__":
    sys.exit(main())
