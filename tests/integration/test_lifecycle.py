"""Connection teardown and keepalive against the real kernel, with ustack's
own impairment layer (`ustack up --impair`) dropping chosen segments.

Timing comes from a capture on the TUN device (kernel timestamps), with
tolerances derived from the settings; nothing asserts on sleeps.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from lifecycle_capture import ACK, FIN, RST, SYN, Capture, Segment
from netns import UstackProcess

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
UstackUp = Callable[..., UstackProcess]

# A kernel client: HTTP request with Connection: close to ustack's http
# service, so ustack closes first (active close); reads to EOF; then holds
# its socket open until the test closes its stdin.
HTTP_CLOSE_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_connection(("10.203.0.2", 80), timeout=20)
    s.sendall(b"GET /bytes/10 HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(bytes(range(10))), got
    print("eof", s.getsockname()[1], flush=True)
    sys.stdin.read()
    s.close()
    print("closed", flush=True)
    """
)


def start_client(stack: UstackProcess, code: str) -> subprocess.Popen[bytes]:
    return stack.ns.popen(
        sys.executable,
        "-c",
        code,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_line(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded by the client's socket timeouts
    if not line:
        err = proc.stderr.read() if proc.stderr else b""
        raise AssertionError(f"client failed: {err.decode(errors='replace')}")
    return line


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def conn(segs: list[Segment], port: int) -> list[Segment]:
    """The segments of the connection with kernel port `port`."""
    return [s for s in segs if port in (s.sport, s.dport)]


def test_ustack_last_ack_dropped_kernel_retransmits_fin(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up(
        "--services",
        "http",
        "--set",
        "msl=2",
        "--impair",
        "drop=ack:out:1:after=fin/in",
    )
    with Capture(stack.ns, str(tmp_path / "cap.txt")) as cap:
        client = start_client(stack, HTTP_CLOSE_CLIENT)
        try:
            port = int(read_line(client).split()[1])
            client.stdin.close()  # type: ignore[union-attr]
            assert read_line(client).strip() == b"closed"
            # The kernel's FIN goes out twice; ustack ACKs the second one.
            segs = cap.wait_for(
                lambda s: (
                    sum(1 for x in conn(s, port) if not x.from_ustack and x.flags & FIN)
                    >= 2
                    and any(
                        x.from_ustack
                        and x.flags == ACK
                        and x.time
                        > max(
                            y.time
                            for y in conn(s, port)
                            if not y.from_ustack and y.flags & FIN
                        )
                        for x in conn(s, port)
                    )
                ),
                timeout=10,
            )
        finally:
            finish(client)
        # The kernel socket leaves LAST-ACK for CLOSED (no lingering entry).
        _wait_gone(stack, port)
    segs = conn(segs, port)
    assert not any(s.flags & RST for s in segs), segs
    kernel_fins = [s for s in segs if not s.from_ustack and s.flags & FIN]
    assert len(kernel_fins) == 2
    assert kernel_fins[0].seq == kernel_fins[1].seq  # a retransmission
    ustack_fins = [s for s in segs if s.from_ustack and s.flags & FIN]
    assert ustack_fins[0].time < kernel_fins[0].time  # ustack closed first
    assert stack.stop() == 0
    assert "out.rule_drop=1" in stack.errors()  # the counters at exit


def _wait_gone(stack: UstackProcess, port: int, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in stack.ns.tcp_states() if r.local.endswith(f":{port}")]
        if not rows:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"kernel socket lingers: {rows}")
        time.sleep(0.05)


def test_kernel_ack_of_fin_dropped_ustack_backs_off_then_gives_up(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    rto_min = 0.2
    stack = ustack_up(
        "--services",
        "http",
        "--set",
        "retries2=3",
        "--set",
        "orphan_retries=3",
        "--set",
        f"rto_min={rto_min}",
        "--set",
        "tlp=0",  # the RTOs alone (a tail loss probe would replace the first)
        "--impair",
        "drop=!fin:in:all:after=fin/out",
    )
    with Capture(stack.ns, str(tmp_path / "cap.txt")) as cap:
        client = start_client(stack, HTTP_CLOSE_CLIENT)
        try:
            port = int(read_line(client).split()[1])
            # Wait for ustack's RST: it gave up after 1 + 3 FINs.
            segs = cap.wait_for(
                lambda s: any(x.from_ustack and x.flags & RST for x in conn(s, port)),
                timeout=20,
            )
        finally:
            finish(client)
    segs = conn(segs, port)
    fins = [s for s in segs if s.from_ustack and s.flags & FIN]
    rst = [s for s in segs if s.from_ustack and s.flags & RST]
    assert len(fins) == 4, fins
    # The same FIN each time: its sequence number follows any data it rides
    # on (a retransmission from SND.UNA may carry unacknowledged data too).
    assert len({(s.seq + s.payload_len) & 0xFFFFFFFF for s in fins}) == 1
    times = [s.time for s in fins] + [rst[0].time]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # First RTO at least the floor; then each interval roughly doubles.
    assert gaps[0] >= rto_min * 0.9, gaps
    ratios = [b / a for a, b in zip(gaps, gaps[1:], strict=False)]
    assert all(1.6 <= r <= 2.5 for r in ratios), (gaps, ratios)
    # No FIN after giving up.
    assert not any(s.from_ustack and s.time > rst[0].time for s in segs)


KEEPALIVE_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_connection(("10.203.0.2", 7), timeout=20)
    s.sendall(b"hi")
    assert s.recv(10) == b"hi"
    print("idle", s.getsockname()[1], flush=True)
    sys.stdin.read()
    print("gone", flush=True)
    """
)


def test_keepalive_probes_answered_then_peer_vanishes(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    idle, intvl, count = 1.0, 0.5, 3
    stack = ustack_up(
        "--services",
        "echo",
        "--keepalive",
        "--set",
        f"keepalive_time={idle}",
        "--set",
        f"keepalive_intvl={intvl}",
        "--set",
        f"keepalive_probes={count}",
    )
    with Capture(stack.ns, str(tmp_path / "cap.txt")) as cap:
        client = start_client(stack, KEEPALIVE_CLIENT)
        try:
            port = int(read_line(client).split()[1])

            def probes(segs: list[Segment]) -> list[Segment]:
                return [
                    s
                    for s in conn(segs, port)
                    if s.from_ustack
                    and s.flags == ACK
                    and s.payload_len == 0
                    and any(
                        t.from_ustack
                        and t.payload_len
                        and s.seq == (t.seq + t.payload_len - 1) & 0xFFFFFFFF
                        for t in conn(segs, port)
                    )
                ]

            # Answered probes: one per idle period.
            segs = cap.wait_for(lambda s: len(probes(s)) >= 3, timeout=10)
            answered = probes(segs)[:3]
            assert stack.ns.wait_tcp_state("ESTAB", local=f"10.203.0.1:{port}")
            gaps = [
                b.time - a.time for a, b in zip(answered, answered[1:], strict=False)
            ]
            assert all(idle * 0.9 <= g <= idle + 0.3 for g in gaps), gaps
            # The peer vanishes: the kernel loses its address, so it neither
            # receives probes nor sends anything.
            vanish = max(s.time for s in segs)
            stack.run("ip", "addr", "del", "10.203.0.1/24", "dev", "ustack0")
            segs = cap.wait_for(
                lambda s: any(x.from_ustack and x.flags & RST for x in conn(s, port)),
                timeout=10,
            )
        finally:
            finish(client)
    late = [s for s in probes(segs) if s.time > vanish]
    rst = [s for s in conn(segs, port) if s.from_ustack and s.flags & RST]
    assert len(late) >= count
    unanswered = late[-count:]
    times = [s.time for s in unanswered] + [rst[0].time]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(intvl * 0.8 <= g <= intvl + 0.3 for g in gaps), gaps
    assert not any(s.flags & SYN for s in conn(segs, port) if s.time > vanish)
