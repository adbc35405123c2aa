"""tools/bench_http_cpu.py: reading the clients' counts and the CPU clocks."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from bench_http_cpu import _busy_seconds, _cpu_seconds, _run_client, _server_pid

WRK_OK = """Running 4s test @ http://10.203.0.2/bytes/1000
  2 threads and 50 connections
  24123 requests in 4.00s, 28.96MB read
Requests/sec:   6030.21
"""
WRK_BAD = WRK_OK + "  Non-2xx or 3xx responses: 12\n"
AB_OK = "Complete requests:      4000\nFailed requests:        0\n"
AB_BAD = "Complete requests:      4000\nFailed requests:        3\n"


class FakeNs:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.args: tuple[str, ...] = ()

    def run(self, *args: str, **_kw: object) -> SimpleNamespace:
        self.args = args
        return SimpleNamespace(stdout=self.stdout.encode())


def _env(stdout: str) -> SimpleNamespace:
    return SimpleNamespace(client_ns=FakeNs(stdout))


def test_counts_completed_requests() -> None:
    env = _env(WRK_OK)
    assert _run_client(env, "wrk", 4, 0) == 24123
    assert env.client_ns.args[:3] == ("wrk", "-t2", "-c50")
    assert _run_client(_env(AB_OK), "ab", 0, 4000) == 4000
    assert _run_client(_env("1234\n"), "echo", 4, 0) == 1234


@pytest.mark.parametrize(
    ("client", "out"), [("wrk", WRK_BAD), ("ab", AB_BAD), ("wrk", "connect failed\n")]
)
def test_errors_are_not_counted_as_requests(client: str, out: str) -> None:
    with pytest.raises(RuntimeError):
        _run_client(_env(out), client, 4, 4000)


def test_cpu_clocks_advance_with_work() -> None:
    user0, _ = _cpu_seconds(os.getpid())
    busy0 = _busy_seconds()
    deadline = user0 + 0.05
    while _cpu_seconds(os.getpid())[0] < deadline:  # bounded: CPU time advances
        sum(range(10_000))
    assert _busy_seconds() > busy0


def test_server_pid_follows_a_launcher_to_its_child() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert _server_pid(os.getpid()) != os.getpid()
        assert _server_pid(child.pid) == child.pid  # no children: itself
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
