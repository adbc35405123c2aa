"""Fragments, ICMP and UDP against the kernel in the test's namespace:
`ping -s 3000` (reassembly and fragmented replies), `nc -u` to the UDP echo
service and to a closed port (ICMP port unreachable), an unknown protocol
(protocol unreachable), and `ustack ss -u` / `ustack stats`."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
UstackUp = Callable[..., UstackProcess]


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json", timeout=20)
    counters: dict[str, int] = json.loads(out.stdout)
    return counters


def test_ping_with_3000_bytes_is_answered(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.run(
        "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "3000", STACK, timeout=30
    )
    text = out.stdout.decode()
    assert "3 received" in text, text
    # 3008 bytes of ICMP: the replies came back whole (ping checks the data).
    assert re.search(r"3008 bytes from 10\.203\.0\.2", text), text
    counters = stats(stack)
    assert counters["ReasmOKs"] == 3
    assert counters["ReasmReqds"] == 9  # 3 fragments per request at MTU 1500
    assert counters["FragOKs"] == 3 and counters["FragCreates"] == 9
    assert counters["IcmpOutEchoReps"] == 3


def test_udp_echo_round_trip_with_nc(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.run(
        "nc", "-u", "-w", "3", STACK, "7", input=b"hello over udp\n", timeout=20
    )
    assert out.stdout == b"hello over udp\n"
    counters = stats(stack)
    assert counters["UdpInDatagrams"] == 1
    assert counters["UdpOutDatagrams"] == 1


# A kernel UDP client: a connected socket learns ICMP port unreachable as
# ECONNREFUSED on its next call, as with `nc -u` (which then exits with an
# error); the big datagram checks fragmentation and reassembly both ways.
KERNEL_UDP = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((sys.argv[1], int(sys.argv[2])))
    big = bytes(range(256)) * 32  # 8 KB: fragmented both ways
    s.send(big)
    if int(sys.argv[2]) == 7:
        print("echo", s.recv(65536) == big)
    else:
        try:
            s.recv(100)
            print("no error")
        except ConnectionRefusedError:
            print("refused")
    """
)


def test_udp_to_a_closed_port_gets_port_unreachable(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.python(KERNEL_UDP, STACK, "4444", timeout=20)
    assert out.stdout.decode().strip() == "refused"
    counters = stats(stack)
    assert counters["UdpNoPorts"] == 1
    assert counters["IcmpOutDestUnreachs"] == 1
    # nc -u sees it too: `nc -vzu` probes and fails on ECONNREFUSED, and
    # succeeds against the echo service.
    closed = stack.run("nc", "-vzu", STACK, "4445", check=False, timeout=20)
    assert closed.returncode == 1, closed
    assert stats(stack)["IcmpOutDestUnreachs"] >= 2
    open_ = stack.run("nc", "-vzu", STACK, "7", timeout=20)
    assert b"succeeded" in open_.stderr


def test_big_udp_datagram_echoed_in_fragments(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.python(KERNEL_UDP, STACK, "7", timeout=20)
    assert out.stdout.decode().strip() == "echo True"
    counters = stats(stack)
    assert counters["ReasmOKs"] == 1 and counters["FragOKs"] == 1


UNKNOWN_PROTOCOL = textwrap.dedent(
    """
    import socket, sys
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.settimeout(5)  # listening before sending: the answer cannot be missed
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)  # RFC 3692 testing
    s.sendto(b"experiment", (sys.argv[1], 0))
    while True:
        packet = icmp.recv(2048)
        ihl = (packet[0] & 15) * 4
        if packet[ihl] == 3:  # destination unreachable
            print("code", packet[ihl + 1], "quoting protocol", packet[ihl + 8 + 9])
            break
    """
)


def test_unknown_protocol_gets_protocol_unreachable(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.python(UNKNOWN_PROTOCOL, STACK, timeout=20)
    assert out.stdout.decode().strip() == "code 2 quoting protocol 253"
    assert stats(stack)["InUnknownProtos"] == 1


def test_ss_udp_lists_the_udp_services(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.run(*ustack_command(), "ss", "-u", "--json", timeout=20)
    rows = json.loads(out.stdout)
    assert {(r["state"], r["local"]) for r in rows} == {
        ("UNCONN", f"{STACK}:7"),
        ("UNCONN", f"{STACK}:9"),
    }
    text = stack.run(*ustack_command(), "ss", "-u", timeout=20).stdout.decode()
    assert re.search(rf"UNCONN +0 +0 +{STACK}:7 +0\.0\.0\.0:\*", text), text
