"""echo, discard, chargen, RST and ICMP against the kernel, and the kernel's
view (`ss -tan`) of how connections to ustack end.

Kernel-side clients are small Python programs run with `ip netns exec`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from netns import UstackProcess

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
UstackUp = Callable[..., UstackProcess]


def client(body: str) -> str:
    """A kernel-side client program: `s` is connected to sys.argv[1]:argv[2]."""
    return CONNECT + textwrap.dedent(body)


CONNECT = """
import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
"""


def test_echo_with_nc(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    data = b"".join(b"line %d of the echo test\n" % i for i in range(1000))
    out = stack.run("nc", "-N", "-w", "10", STACK, "7", input=data, timeout=30)
    assert out.stdout == data


def test_client_half_close_echo_still_answers(ustack_up: UstackUp) -> None:
    """nc -N shuts down its sending side at EOF; ustack (now CLOSE-WAIT)
    must still echo everything before closing."""
    stack = ustack_up()
    data = os.urandom(300_000)
    out = stack.run("nc", "-N", "-w", "20", STACK, "7", input=data, timeout=60)
    assert len(out.stdout) == len(data)
    assert out.stdout == data


def test_python_client_half_close_reads_echo_to_eof(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    code = client(
        """
        data = bytes(range(256)) * 4000
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while chunk := s.recv(65536):
            got += chunk
        t.join()
        assert got == data, (len(got), len(data))
        print("echoed", len(got))
        """
    )
    out = stack.python(code, STACK, "7", timeout=60).stdout
    assert out.strip() == b"echoed 1024000"


def test_discard_reads_to_eof_then_closes(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    code = client(
        """
        s.sendall(b"x" * 500_000)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b"", "discard sent data"
        s.close()
        print("eof")
        """
    )
    assert stack.python(code, STACK, "9", timeout=30).stdout.strip() == b"eof"
    # The kernel sent the first FIN, so its socket ends in TIME-WAIT.
    stack.ns.wait_tcp_state("TIME-WAIT", peer=f"{STACK}:9")


def test_chargen_keeps_sending_after_peer_half_close(ustack_up: UstackUp) -> None:
    """After our FIN, ustack is in CLOSE-WAIT and chargen keeps sending; the
    kernel's socket sits in FIN-WAIT-2 until we close it."""
    stack = ustack_up()
    code = client(
        """
        s.shutdown(socket.SHUT_WR)
        got = 0
        while got < 1_000_000:
            chunk = s.recv(65536)
            assert chunk, "chargen closed after our half-close"
            got += len(chunk)
        print("received", got, flush=True)
        sys.stdin.read()  # hold the socket open until the test says so
        s.close()
        """
    )
    proc = stack.ns.popen(
        sys.executable,
        "-c",
        code,
        STACK,
        "19",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()  # bounded by the client's own timeouts
        assert line.startswith(b"received"), (
            line,
            proc.stderr.read() if proc.stderr else b"",
        )
        stack.ns.wait_tcp_state("FIN-WAIT-2", peer=f"{STACK}:19")
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_kernel_closes_first_ends_in_time_wait(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    code = client(
        """
        s.sendall(b"hello\\n")
        got = b""
        while len(got) < 6:
            chunk = s.recv(100)
            assert chunk
            got += chunk
        assert got == b"hello\\n", got
        s.close()
        print("closed")
        """
    )
    assert stack.python(code, STACK, "7", timeout=30).stdout.strip() == b"closed"
    stack.ns.wait_tcp_state("TIME-WAIT", peer=f"{STACK}:7")


def test_closed_port_refuses(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    code = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 12345), timeout=10)
except ConnectionRefusedError:
    print("refused")
"""
    assert stack.python(code, STACK, timeout=30).stdout.strip() == b"refused"
    curl = stack.run(
        "curl",
        "-sS",
        "--max-time",
        "10",
        f"http://{STACK}:12345/",
        check=False,
        timeout=30,
    )
    assert curl.returncode == 7, curl  # "Failed to connect"


def test_ping(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.run("ping", "-c", "3", "-i", "0.2", "-W", "2", STACK, timeout=30)
    assert b"3 received" in out.stdout, out.stdout
