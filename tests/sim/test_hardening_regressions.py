"""Regression tests for hardening bugs found in issue 4 (all fixed). Each
names the rule it checks; the docstrings describe the bug as it was found
("today" = before the fix)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from tests.sim import test_hardening_blind as blind
from tests.sim.conftest import A_IP, B_IP, Net
from tests.sim.test_hardening_blind import PORT, Conn
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, PSH, RST, TcpSegment, parse_tcp

conn = blind.conn  # the fixture: an established A->B connection

A_RAW = IPv4Address(A_IP).packed
B_RAW = IPv4Address(B_IP).packed


def drop_counters(net: Net) -> int:
    c = net.b.counters
    return sum(
        v
        for k, v in c.items()
        if k.startswith(("InHdrErrors", "InErrs", "InAddrErrors"))
        or "Drop" in k
        or "Martian" in k
    )


@pytest.mark.parametrize(
    "src",
    ["255.255.255.255", "10.0.0.255", "224.0.0.1", "239.1.2.3", "0.0.0.0", B_IP],
    ids=["broadcast", "subnet_broadcast", "multicast", "multicast2", "zero", "own"],
)
async def test_syn_from_invalid_source_is_dropped_and_counted(
    net: Net, autojump_clock: MockClock, src: str
) -> None:
    """RFC 1122 3.2.1.3: a host MUST silently discard a datagram whose source
    address is invalid (broadcast, multicast, 0.0.0.0 after boot); a packet
    claiming our own address as source is the LAND attack (Linux drops it as
    a martian source). Today ustack opens a half-open connection and sends a
    SYN-ACK to that address."""
    await net.b.listen(80)
    net.link_b.sent = []
    before = drop_counters(net)
    syn = TcpSegment(80 if src == B_IP else 1234, 80, 1000, 0, 0x02, 1000)
    net.link_b.inject(build_tcp_packet(IPv4Address(src).packed, B_RAW, syn, 1))
    await trio.sleep(0.1)
    assert net.link_b.sent == [], "answered a packet from an invalid source"
    assert list(net.b.connections()) == []
    assert drop_counters(net) == before + 1, "the drop was not counted"


async def test_segment_without_flags_to_listener_is_dropped(
    net: Net, autojump_clock: MockClock
) -> None:
    """RFC 9293 3.10.7.2 (LISTEN), fourth: a segment with neither SYN, ACK nor
    RST: "drop the segment and return" (Linux: discard). Today ustack answers
    it with RST|ACK, which a spoofer can use to make ustack send RSTs."""
    await net.b.listen(80)
    net.link_b.sent = []
    seg = TcpSegment(1234, 80, 1000, 0, PSH, 1000, b"hello")
    net.link_b.inject(build_tcp_packet(A_RAW, B_RAW, seg, 1))
    await trio.sleep(0.1)
    assert net.link_b.sent == []


async def test_ack_loop_after_desynchronizing_injection_is_bounded(
    conn: Conn,
    autojump_clock: MockClock,
) -> None:
    """One spoofed, acceptable data segment desynchronizes the two ends: A now
    ACKs data B never sent; B answers "acks something not yet sent" with an
    ACK, which is out of A's window, which A answers with an ACK, ... forever,
    at CPU speed. Linux bounds such loops (tcp_invalid_ratelimit, 500 ms per
    socket: ACKs sent in reply to out-of-window segments are rate-limited,
    "tcp: mitigate ACK loops"). Here the loop is cut after 5000 packets by the
    test (it would not end otherwise); a bounded stack sends a handful."""
    net = conn.net
    sent = [0]

    def count(packet: bytes) -> list[bytes]:
        sent[0] += 1
        return [packet] if sent[0] < 5000 else []

    net.link_a.filter = count
    conn.spoof(conn.tcb.rcv_nxt, ACK | PSH, b"injected")
    assert await conn.client.receive_some() == b"injected"
    await trio.sleep(1.0)
    net.link_a.filter = net.link_b.filter = lambda packet: []
    print(f"A sent {sent[0]} segments in the second after the injection")
    assert sent[0] <= 20


async def test_challenge_ack_budget_is_not_shared_between_connections(
    net: Net, autojump_clock: MockClock
) -> None:
    """CVE-2016-5696 ("Off-Path TCP Exploits: Global Rate Limit Considered
    Dangerous"): with one challenge-ACK budget for the whole stack, an off-path
    attacker spends it on its own connection and counts its own challenge
    ACKs to learn whether a spoofed RST/SYN hit someone else's window. Linux
    fixed it by randomizing and then making the limit per socket. Today
    ustack's limiter (Settings.challenge_ack_limit) is one object shared by
    every TCB of the stack."""
    listener = await net.b.listen(PORT)
    conns = []
    for _ in range(2):
        client = await net.a.connect((B_IP, PORT))
        server = await listener.accept()
        tcb = client.socket.tcb
        assert tcb is not None
        conns.append(Conn(net, client, server, tcb, client.socket.getsockname()[1]))
    victim, attacker = conns
    await trio.sleep(1 - trio.current_time() % 1)
    limit = net.a.settings.challenge_ack_limit
    for i in range(limit):  # the attacker exhausts the budget on its connection
        attacker.spoof(attacker.tcb.rcv_nxt + 1 + i, RST)
    await trio.sleep(0.001)
    net.link_a.sent = []
    victim.spoof(victim.tcb.rcv_nxt + 7, RST)  # the probe at the victim
    await trio.sleep(0.001)
    answers = [
        parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
        for p in net.link_a.sent
    ]
    assert [(s.dst_port, s.ack) for s in answers if s.flags == ACK] == [
        (PORT, victim.tcb.rcv_nxt)
    ], "the victim's challenge ACK was suppressed by another connection's budget"


async def test_closed_keepalive_connection_releases_its_timer(
    net: Net, autojump_clock: MockClock
) -> None:
    """A closed TCB must not stay referenced by the timer heap. Today the
    stack's heap is invalidated lazily: the entry for a keepalive deadline
    (keepalive_time, 7200 s by default) keeps every closed keepalive
    connection's TCB alive for two hours, so memory grows with the
    connection rate (`ustack up --keepalive`; found by tools/soak.py:
    "A: 251 timer heap entries" after the drain). Issue 4 point 4."""
    import socket

    listener = await net.b.listen(80)
    for _ in range(50):
        client = await net.a.connect((B_IP, 80))
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        server = await listener.accept()
        await client.aclose()
        await server.aclose()
    await trio.sleep(10)  # far more than 2*MSL; no connection is left
    assert list(net.a.connections()) == [] and list(net.a.time_wait()) == []
    held = [tcb for _, _, tcb in net.a._heap]
    assert held == [], f"{len(held)} closed TCBs still held by the timer heap"
