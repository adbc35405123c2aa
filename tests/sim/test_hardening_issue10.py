"""Stack-level fixes from the issue 10 review (DoS, side channels, interop),
in virtual time over the in-memory link. Each docstring says what was wrong."""

from __future__ import annotations

from ipaddress import IPv4Address

import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import SYN, TcpSegment, parse_tcp

A_RAW = IPv4Address(A_IP).packed
B_RAW = IPv4Address(B_IP).packed


def replies(net: Net) -> list[TcpSegment]:
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
