"""SYN cookies keep window scaling, SACK and ECN when the SYN carries
timestamps (the options ride in the SYN-ACK's TSval, Linux
cookie_init_timestamp / cookie_timestamp_decode / cookie_ecn_ok). Two stacks
in virtual time; every SYN gets a cookie."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import B_IP, Net
from ustack.tcp import ecn
from ustack.tcp.syncookie import CookieOptions, decode_options, options_tsval
from ustack.tcp.tcb import Tcb
from ustack.wire.ipv4 import parse_ipv4
from ustack.wire.tcp import ACK, ECE, SYN, TcpSegment, parse_tcp


def synacks(net: Net) -> list[TcpSegment]:
    segs = [parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
            for p in net.link_b.sent or ()]
    return [s for s in segs if s.flags & (SYN | ACK) == SYN | ACK]


async def connect_through_a_cookie(net: Net, size: int) -> tuple[Tcb, Tcb]:
    net.b.settings.max_syn_backlog = 0  # every SYN gets a cookie
    net.a.settings.ecn = 1  # A asks for ECN; B (ecn=2) agrees when asked
    listener = await net.b.listen(80)
    net.link_b.sent = []
    client = await net.a.connect((B_IP, 80))
    server = await listener.accept()
    assert net.b.counters["SyncookiesSent"] == 1
    assert net.b.counters["SyncookiesRecv"] == 1
    data = bytes(range(256)) * (size // 256)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, data)
        got = bytearray()
        while len(got) < len(data):
            got += await server.receive_some()
    assert got == data
    tcbs = client.socket.tcb, server.socket.tcb
    assert tcbs[0] is not None and tcbs[1] is not None
    return tcbs[0], tcbs[1]


async def test_a_cookie_connection_keeps_wscale_sack_and_ecn(
    net: Net, autojump_clock: MockClock
) -> None:
    client, server = await connect_through_a_cookie(net, 300_000)
    (synack,) = synacks(net)
    assert synack.flags & ECE and synack.timestamp is not None
    assert synack.sack_permitted and synack.wscale == net.b.settings.wscale
    for tcb in (client, server):
        assert tcb.ecn_flags & ecn.OK
        assert tcb.ts_ok and tcb.sack_ok
    assert server.snd_wscale == client.rcv_wscale
    assert server.rcv_wscale == client.snd_wscale
    assert server.max_snd_wnd > 0xFFFF
    # New data from A reached B as ECT (RFC 3168 6.1.2 at work).
    assert net.b.counters["InECT0Pkts"] > 0
    # B's TSvals never went back from the one the cookie carried.
    sent = [parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False)
            for p in net.link_b.sent or ()]
    assert synack.timestamp is not None and len(sent) > 2
    assert all(s.timestamp is not None
               and (s.timestamp[0] - synack.timestamp[0]) & 0xFFFFFFFF < 1 << 31
               for s in sent)


async def test_without_timestamps_a_cookie_keeps_none_of_them(
    net: Net, autojump_clock: MockClock
) -> None:
    net.a.settings.timestamps = False
    client, server = await connect_through_a_cookie(net, 20_000)
    (synack,) = synacks(net)
    assert not synack.flags & ECE and synack.timestamp is None
    assert not synack.sack_permitted and synack.wscale is None
    for tcb in (client, server):
        assert not tcb.ecn_flags
        assert not tcb.sack_ok
        assert tcb.snd_wscale == tcb.rcv_wscale == 0
    assert net.b.counters["InECT0Pkts"] == 0


async def test_a_listener_without_ecn_sends_no_ece_on_a_cookie(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.settings.ecn = 0
    client, server = await connect_through_a_cookie(net, 20_000)
    (synack,) = synacks(net)
    assert not synack.flags & ECE
    assert not client.ecn_flags and not server.ecn_flags
    assert server.sack_ok


@pytest.mark.parametrize("now", [0, 63, 64, 1000, 0xFFFFFFFF, 0xFFFFFFC0 + 5])
@pytest.mark.parametrize(
    "opts",
    [CookieOptions(None, False, False), CookieOptions(7, True, True),
     CookieOptions(14, False, True), CookieOptions(0, True, False)],
)
def test_the_options_round_trip_in_a_tsval_never_ahead_of_now(
    now: int, opts: CookieOptions
) -> None:
    ts = options_tsval(now, opts)
    assert decode_options(ts) == opts
    assert 0 <= (now - ts) & 0xFFFFFFFF < 64  # at most 63 ms behind, never ahead


