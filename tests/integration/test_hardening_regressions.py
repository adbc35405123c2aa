"""Regression tests for hardening bugs found against the live `ustack up`
(issue 4; fixed). Docstrings describe the bug as it was found."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from netns import UstackProcess

pytestmark = pytest.mark.integration

UstackUp = Callable[..., UstackProcess]

# Connects to the control socket, asks for a packet trace, reads one line and
# closes abruptly with trace events still arriving; N times.
ABRUPT_TRACE = r"""
import json, socket, sys, time
from ustack.observe.control import control_path
path = control_path("ustack0")
deadline = time.monotonic() + 10
while not path.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)  # let the download get going
for i in range(int(sys.argv[1])):
    t = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t.connect(str(control_path("ustack0")))
    t.sendall(json.dumps({"cmd": "trace", "port": 80}).encode() + b"\n")
    t.recv(100)
    time.sleep(0.05)
    t.close()
print("done")
"""


def test_trace_client_disconnecting_abruptly_does_not_crash_ustack_up(
    ustack_up: UstackUp,
) -> None:
    """ustack/control.py `_trace`: `await stream.send_all(message)` raises
    trio.BrokenResourceError (EPIPE) when the trace client has gone; nothing
    catches it, the control server's nursery fails and `ustack up` exits 1,
    taking every connection down. Any local root user running `ustack trace`
    and pressing ^C during traffic can hit it."""
    stack = ustack_up()
    curl = stack.ns.popen(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "60",
        "--limit-rate",
        "2M",
        "http://10.203.0.2/bytes/40000000",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = stack.python(ABRUPT_TRACE, "40", timeout=60, check=False)
    finally:
        curl.kill()
        curl.wait(10)
    assert out.returncode == 0 and stack.proc.poll() is None, (
        "ustack up died (the trace client then found no control socket):\n"
        + out.stderr.decode(errors="replace")[-500:]
        + stack.describe()
    )
