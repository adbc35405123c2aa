"""`ustack nc`: ustack as a netcat client (its own stack) against a kernel
Python server in the test's namespace."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
from netns import USTACK_DEFAULT_ARGS, Netns, ustack_command

pytestmark = pytest.mark.integration

# Reads to EOF (our half-close), then answers on the still-open direction.
HALF_CLOSE_SERVER = textwrap.dedent(
    """
    import hashlib, socket
    srv = socket.create_server(("0.0.0.0", 9000))
    conn, _ = srv.accept()
    conn.settimeout(60)
    got = bytearray()
    while chunk := conn.recv(65536):
        got += chunk
    digest = hashlib.sha256(got).hexdigest().encode()
    conn.sendall(b"got %d bytes, sha256 %s\\n" % (len(got), digest))
    conn.sendall(bytes(got[::-1]))
    conn.close()
    """
)

# Says hello and closes at once, whatever we send.
CLOSING_SERVER = textwrap.dedent(
    """
    import socket
    srv = socket.create_server(("0.0.0.0", 9000))
    conn, _ = srv.accept()
    conn.sendall(b"bye\\n")
    conn.close()
    """
)


def start_server(netns: Netns, code: str) -> subprocess.Popen[bytes]:
    server = netns.popen(sys.executable, "-c", code, stderr=subprocess.PIPE)
    netns.wait_listening(9000)
    return server


def nc_args() -> list[str]:
    return [
        *ustack_command(),
        "nc",
        "10.203.0.1",
        "9000",
        *USTACK_DEFAULT_ARGS,
        "--set",
        "msl=0.5",
    ]


def test_nc_round_trip_with_half_close(netns: Netns) -> None:
    server = start_server(netns, HALF_CLOSE_SERVER)
    try:
        data = os.urandom(2_000_000)
        out = netns.run(*nc_args(), input=data, timeout=120)
        first, _, rest = out.stdout.partition(b"\n")
        digest = hashlib.sha256(data).hexdigest()
        assert first == f"got {len(data)} bytes, sha256 {digest}".encode()
        assert rest == data[::-1]  # read after our FIN: the half-close worked
        assert server.wait(30) == 0, server.stderr.read() if server.stderr else b""
    finally:
        server.kill()
        server.wait(10)


def test_nc_exits_when_the_peer_closes_with_stdin_open(netns: Netns) -> None:
    server = start_server(netns, CLOSING_SERVER)
    nc = netns.popen(
        *nc_args(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert nc.stdout is not None
        assert nc.stdout.readline() == b"bye\n"
        assert nc.wait(60) == 0, nc.stderr.read() if nc.stderr else b""
        assert nc.stdout.read() == b""
        assert nc.stdin is not None and not nc.stdin.closed  # never closed by us
    finally:
        nc.kill()
        nc.wait(10)
        server.kill()
        server.wait(10)
