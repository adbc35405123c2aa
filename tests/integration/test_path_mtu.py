"""Path MTU discovery and ICMP unreachable through a router namespace.

    ustack (TUN, in A) -- A --veth-- R --veth, MTU 1280 on R's side-- S (server)

A and R forward. S's MSS is 1460, but R cannot forward more than 1280 bytes
towards S: it drops ustack's full-sized DF segments and answers "fragmentation
needed" (machine-notes.md, "Topologies that work in namespaces"). R also
has an unreachable route, for which it answers ICMP host unreachable.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator

import pytest
from netns import Netns, create_netns

pytestmark = pytest.mark.integration

SERVER = "10.205.0.2"
UNREACHABLE = "10.206.0.5"


@contextlib.contextmanager
def router_path(a: Netns) -> Iterator[Netns]:
    """Namespaces R and S behind A (the test's namespace); yields S."""
    r = create_netns("ustack-r-")
    try:
        s = create_netns("ustack-s-")
        try:
            a.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            a.run("ip", "link", "add", "to-r", "type", "veth", "peer", "from-a")
            a.run("ip", "link", "set", "from-a", "netns", r.name)
            a.run("ip", "addr", "add", "10.204.0.1/24", "dev", "to-r")
            a.run("ip", "link", "set", "to-r", "up")
            a.run("ip", "route", "add", "10.205.0.0/24", "via", "10.204.0.2")
            a.run("ip", "route", "add", "10.206.0.0/24", "via", "10.204.0.2")
            r.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            r.run("ip", "addr", "add", "10.204.0.2/24", "dev", "from-a")
            r.run("ip", "link", "set", "from-a", "up")
            r.run("ip", "link", "add", "to-s", "mtu", "1280", "type", "veth",
                  "peer", "from-r")  # fmt: skip
            r.run("ip", "link", "set", "from-r", "netns", s.name)
            r.run("ip", "addr", "add", "10.205.0.1/24", "dev", "to-s")
            r.run("ip", "link", "set", "to-s", "up")
            r.run("ip", "route", "add", "10.203.0.0/24", "via", "10.204.0.1")
            r.run("ip", "route", "add", "unreachable", "10.206.0.0/24")
            s.run("ip", "addr", "add", f"{SERVER}/24", "dev", "from-r")
            s.run("ip", "link", "set", "from-r", "up")
            s.run("ip", "route", "add", "default", "via", "10.205.0.1")
            yield s
        finally:
            s.delete()
    finally:
        r.delete()


# A kernel server in S: reads to EOF, answers with the byte count and digest.
SINK_SERVER = textwrap.dedent(
    """
    import hashlib, socket
    srv = socket.create_server(("0.0.0.0", 9000))
    conn, _ = srv.accept()
    conn.settimeout(60)
    h, n = hashlib.sha256(), 0
    while chunk := conn.recv(65536):
        h.update(chunk)
        n += len(chunk)
    conn.sendall(b"%d %s" % (n, h.hexdigest().encode()))
    conn.close()
    """
)

# ustack as the client, in A, through the Python API.
USTACK_CLIENT = textwrap.dedent(
    """
    import errno, hashlib, json, sys
    import trio, ustack

    async def main(host, port, offload):
        data = bytes(range(251)) * (5_000_000 // 251)
        async with ustack.open_tun_stack(offload=offload == "on") as stack:
            try:
                stream = await stack.connect((host, int(port)))
            except OSError as exc:
                print(json.dumps({"errno": errno.errorcode[exc.errno]}))
                return
            async with stream:
                await stream.send_all(data)
                await stream.send_eof()
                reply = b""
                while chunk := await stream.receive_some():
                    reply += chunk
                print(json.dumps({
                    "reply": reply.decode(),
                    "sent": f"{len(data)} {hashlib.sha256(data).hexdigest()}",
                    "mss": stream.socket.tcb.mss,
                    "counters": dict(stack.counters),
                }))

    trio.run(main, *sys.argv[1:])
    """
)


def run_client(a: Netns, host: str, port: int, offload: str) -> dict[str, object]:
    import json

    out = a.python(USTACK_CLIENT, host, str(port), offload, timeout=120)
    result: dict[str, object] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("offload", ["on", "off"])
def test_5mb_through_a_1280_byte_hop(netns: Netns, offload: str) -> None:
    with router_path(netns) as s:
        server = s.popen(sys.executable, "-c", SINK_SERVER)
        try:
            s.wait_listening(9000)
            result = run_client(netns, SERVER, 9000, offload)
            assert result["reply"] == result["sent"]
            # 1280 - 20 (IP) - 20 (TCP) - 12 (timestamps).
            assert result["mss"] == 1228
            counters = result["counters"]
            assert isinstance(counters, dict)
            assert counters["TCPPMTUReduced"] == 1
            assert counters["IcmpInDestUnreachs"] >= 1
            assert server.wait(30) == 0
        finally:
            server.kill()
            server.wait(10)


def test_connect_fails_at_once_on_host_unreachable(netns: Netns) -> None:
    """Without ICMP the SYN would be retried for minutes (then ETIMEDOUT);
    the router's host unreachable ends the attempt with EHOSTUNREACH."""
    with router_path(netns):
        result = run_client(netns, UNREACHABLE, 80, "on")
        assert result == {"errno": "EHOSTUNREACH"}
