"""Stack-level fixes from the issue 10 review (DoS, side channels, interop),
in virtual time over the in-memory link. Each docstring says what was wrong."""

from __future__ import annotations

from ipaddress import IPv4Address

import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net, sim_settings
from ustack import Stack, TcpListener
from ustack.link.memory import memory_link_pair
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import SYN, TcpSegment, parse_tcp

A_RAW = IPv4Address(A_IP).packed
B_RAW = IPv4Address(B_IP).packed


def replies(net: Net) -> list[TcpSegment]:
    assert net.link_b.sent is not None, "capture not enabled"
    return [
        parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
        for p in net.link_b.sent
    ]


async def test_syn_cookie_synack_advertises_our_mss(
    net: Net, autojump_clock: MockClock
) -> None:
    """Item 12: the cookie SYN-ACK carried the client's MSS rounded down to
    the cookie table (536 for a client's 1000) as if it were ours."""
    net.b.settings.max_syn_backlog = 0  # every SYN gets a cookie
    await net.b.listen(80)
    net.link_b.sent = []
    syn = TcpSegment(4444, 80, 76, 0, SYN, 1000, mss=1000)
    net.link_b.inject(build_tcp_packet(A_RAW, B_RAW, syn, 1))
    await trio.sleep(0.01)
    (synack,) = replies(net)
    assert net.b.counters["SyncookiesSent"] == 1
    assert synack.mss == net.b.mss == net.link_b.mtu - 40


async def test_every_tcp_datagram_has_ip_id_zero(
    net: Net, autojump_clock: MockClock
) -> None:
    """Item 3: IP IDs came from one global counter (SYN-ACKs, RSTs, data), so
    an idle scan could count what else ustack sent. DF datagrams are atomic
    (RFC 6864 4.1): ID 0, as Linux."""
    listener = await net.b.listen(80)
    net.link_b.sent = []
    client = await net.a.connect((B_IP, 80))
    server = await listener.accept()
    await server.send_all(b"x" * 5000)
    assert len(await client.receive_some()) > 0
    for port in (4444, 4445):  # closed ports: RSTs
        syn = TcpSegment(5000 + port, port, 1, 0, SYN, 1000)
        net.link_b.inject(build_tcp_packet(A_RAW, B_RAW, syn, 7))
    await trio.sleep(0.1)
    sent = [parse_ipv4(p) for p in net.link_b.sent]
    assert len(sent) >= 5
    assert {(p.ident, p.payload[13] & 0x04 != 0) for p in sent} >= {(0, True)}
    assert {p.ident for p in sent} == {0}


def _syns(link_sent: list[bytes]) -> list[TcpSegment]:
    out = []
    for p in link_sent:
        seg = parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
        if seg.flags == SYN:
            out.append(seg)
    return out


async def test_timestamps_and_isns_continue_across_connections_and_restarts(
    autojump_clock: MockClock,
) -> None:
    """Item 9: the timestamp offset was random per connection and both
    clocks restarted with the process, so consecutive connections between
    the same hosts had unrelated TSvals and ISNs (defeating the peer's
    RFC 6191 / tcp_tw_reuse checks). Now TSval = system clock (ms) + a keyed
    hash of the address pair, and the ISN clock is the system clock too: a
    second connection, even from a restarted stack (a new Stack object whose
    own clock jumped), continues both."""
    link_a, link_b = memory_link_pair()
    link_a.sent = []

    async def serve(listener: TcpListener) -> None:
        while True:
            stream = await listener.accept()
            await stream.aclose()

    async with Stack(link_b, B_IP, sim_settings()) as b, trio.open_nursery() as n:
        n.start_soon(serve, await b.listen(80))
        for _ in range(2):  # two lifetimes of the client stack
            async with Stack(link_a, A_IP, sim_settings()) as a:
                for port in (40_001, 40_002):
                    sock = a.socket()
                    sock.bind(("", port))
                    await sock.connect((B_IP, 80))
                    await sock.close()
                    await trio.sleep(5.0)  # past TIME_WAIT (2 * msl)
            autojump_clock.jump(1000.0)  # the next life's stack clock moved on
        n.cancel_scope.cancel()
    syns = _syns(link_a.sent)
    assert len(syns) == 4
    tsvals = [s.timestamp[0] for s in syns if s.timestamp is not None]
    steps = [(y - x) & 0xFFFFFFFF for x, y in zip(tsvals, tsvals[1:], strict=False)]
    # TSval follows the system clock (real time here: this test runs in well
    # under 60 s), not the stacks' virtual clocks (5 s and 1000 s jumps).
    assert all(0 <= step < 60_000 for step in steps), steps
    # Same 4-tuple (40001 -> 80) in both lives: the ISN went up, by 250,000
    # per second of system clock (RFC 6528), not to an unrelated value.
    first, again = syns[0], syns[2]
    assert first.src_port == again.src_port == 40_001
    assert 0 < (again.seq - first.seq) & 0xFFFFFFFF < 60 * 250_000
