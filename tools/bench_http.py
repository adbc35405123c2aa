"""Real-client HTTP scenarios for tools/bench.py (issue 11).

Each runs a stock client from Debian's packages in the client namespace
against `http://10.203.0.2/bytes/1000` (ustack's HTTP service; on the kernel
side the same h11 handler under trio, tools/bench_kserver.py):

- http-wrk: `wrk -t2 -c50 -dNs --latency` (keep-alive): req/s and p50 ms.
- http-ab: `ab -n N -c 50` (a new connection per request): req/s.
- http-curl: one curl fetching 100 URLs over one connection: seconds.

A scenario function takes bench.py's Env (its client namespace) and Params
and returns ({metric: value}, details), like the other scenarios.
"""

from __future__ import annotations

import re
import time
from typing import Any

URL = "http://10.203.0.2/bytes/1000"
CURL_URLS = 100


def _out(env: Any, *args: str, timeout: float = 120) -> str:
    proc = env.client_ns.run(*args, timeout=timeout, input=b"")
    return str(proc.stdout.decode(errors="replace"))


def _number(pattern: str, text: str, what: str) -> float:
    m = re.search(pattern, text)
    if m is None:
        raise RuntimeError(f"{what}: no match for {pattern!r} in {text[-1500:]!r}")
    return float(m.group(1))


def _ms(value: float, unit: str) -> float:
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def sc_wrk(env: Any, p: Any) -> tuple[dict[str, float], dict[str, Any]]:
    seconds = max(2, round(p.crr_seconds * 2))
    out = _out(env, "wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", URL)
    rps = _number(r"Requests/sec:\s+([\d.]+)", out, "wrk")
    m = re.search(r"\n\s+50%\s+([\d.]+)(us|ms|s)\b", out)
    if m is None:
        raise RuntimeError(f"wrk: no p50 in {out[-1500:]!r}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return {"req/s": rps, "p50 ms": _ms(float(m.group(1)), m.group(2))}, {
        "seconds": seconds,
        "errors": errors.group(0) if errors else "",
    }


def sc_ab(env: Any, p: Any) -> tuple[dict[str, float], dict[str, Any]]:
    n = max(1000, int(p.crr_seconds * 1500))
    out = _out(env, "ab", "-q", "-n", str(n), "-c", "50", URL)
    rps = _number(r"Requests per second:\s+([\d.]+)", out, "ab")
    failed = _number(r"Failed requests:\s+(\d+)", out, "ab")
    return {"req/s": rps}, {"requests": n, "failed": failed}


def sc_curl(env: Any, p: Any) -> tuple[dict[str, float], dict[str, Any]]:
    args = ["curl", "-s", "--fail", "-w", "%{num_connects}\\n"]
    for _ in range(CURL_URLS):
        args += [URL, "-o", "/dev/null"]
    t0 = time.monotonic()
    out = _out(env, *args)
    seconds = time.monotonic() - t0
    connects = [int(x) for x in out.split()]
    if len(connects) != CURL_URLS:
        raise RuntimeError(f"curl: {len(connects)} of {CURL_URLS} transfers")
    return {"s": seconds}, {"urls": CURL_URLS, "connections": sum(connects)}


# name -> (function, metrics); bench.py registers them as scenarios that the
# rawtun server (no HTTP) does not apply to.
HTTP_SCENARIOS = {
    "http-wrk": (sc_wrk, ("req/s", "p50 ms")),
    "http-ab": (sc_ab, ("req/s",)),
    "http-curl": (sc_curl, ("s",)),
}
