"""Teardown timers under targeted drops, in virtual time: FIN retransmission
and giving up, TIME_WAIT re-ACK, keepalive, zero-window persist.

Timing facts come from the stacks' packet taps (virtual timestamps), so they
are exact up to float rounding.
"""

from __future__ import annotations

import errno
import socket

import pytest
import trio
from trio.testing import MockClock

from tests.sim.lifecycle_net import B_IP, ImpairedNet, Seen, impaired_net
from ustack import State
from ustack.link.impair import parse_rule
from ustack.wire.tcp import ACK, FIN, RST


def fins(log: list[Seen]) -> list[Seen]:
    return [s for s in log if s.outgoing and s.seg.flags & FIN]


def intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def connected(net: ImpairedNet, port: int = 9):  # type: ignore[no-untyped-def]
    listener = await net.b.listen(port)
    client = await net.a.connect((B_IP, port))
    server = await listener.accept()
    return client, server


@pytest.mark.parametrize("orphan", [True, False])
async def test_fin_retransmitted_with_doubling_then_given_up(
    orphan: bool, autojump_clock: MockClock
) -> None:
    """B's ACKs of A's FIN are all dropped: A resends its FIN at RTO, 2 RTO,
    4 RTO ... then, after orphan_retries (closed) or retries2 (shut down),
    sends RST, reports ETIMEDOUT and frees the connection."""
    spec = "delay=5ms,drop=!fin:in:all:after=fin/out"
    # tlp=False: the RTOs alone (a tail loss probe would take the first's place).
    async with impaired_net(spec, retries2=4, orphan_retries=3, tlp=False) as net:
        client, server = await connected(net)
        tcb = client.socket.tcb
        assert tcb is not None
        rto = tcb.rto.rto
        assert rto == pytest.approx(0.2)  # RTT 10 ms: the 200 ms floor
        if orphan:
            await client.aclose()
            retries = 3
        else:
            await client.send_eof()
            retries = 4
        start = trio.current_time()
        with trio.fail_after(60):
            while list(net.a.connections()):
                await trio.sleep(0.05)
        sent = fins(net.a_log)
        assert len(sent) == 1 + retries
        times = [s.time for s in sent]
        assert times[0] == pytest.approx(start)
        expected = [rto * 2**i for i in range(retries)]
        assert intervals(times) == pytest.approx(expected)
        # After the last retry's (doubled) timeout: RST, connection freed.
        rsts = [s for s in net.a_log if s.outgoing and s.seg.flags & RST]
        assert len(rsts) == 1
        assert rsts[0].time - times[-1] == pytest.approx(rto * 2**retries)
        assert list(net.a.connections()) == []
        assert net.a.orphan_count == 0
        assert [s.seg.flags & FIN for s in net.b_log if not s.outgoing].count(FIN) >= 1
        if not orphan:
            with pytest.raises(TimeoutError) as info:
                await client.socket.recv(10)
            assert info.value.errno == errno.ETIMEDOUT
        del server


async def test_time_wait_acks_retransmitted_fin_and_restarts_2msl(
    autojump_clock: MockClock,
) -> None:
    """A closes first; its last ACK (answering B's FIN) is dropped. B
    retransmits its FIN; A, in TIME_WAIT, ACKs again and restarts 2MSL; B
    ends CLOSED without error."""
    spec = "delay=5ms,drop=ack:out:1:after=fin/in"
    async with impaired_net(spec, msl=0.5) as net:
        client, server = await connected(net)
        a_tcb, b_tcb = client.socket.tcb, server.socket.tcb
        assert a_tcb is not None and b_tcb is not None
        closed_at: list[float] = []
        net.a.state_observers.append(
            lambda tcb, old, new, now: (
                # TIME_WAIT ends as a compact record, not as a_tcb.
                closed_at.append(now)
                if old is State.TIME_WAIT and new is State.CLOSED
                else None
            )
        )
        await client.aclose()
        assert await server.receive_some() == b""
        await server.aclose()
        with trio.fail_after(30):
            while (
                any(True for _ in net.a.connections())
                or any(True for _ in net.b.connections())
                or any(True for _ in net.a.time_wait())
            ):
                await trio.sleep(0.01)
        b_fins = [s.time for s in net.a_log if not s.outgoing and s.seg.flags & FIN]
        assert len(b_fins) == 2  # B's FIN and its retransmission
        acks_after = [
            s
            for s in net.a_log
            if s.outgoing and s.seg.flags == ACK and s.time >= b_fins[0]
        ]
        assert len(acks_after) == 2  # the dropped one and the repeat
        assert acks_after[1].time == pytest.approx(b_fins[1])
        assert net.link.counters["out.rule_drop"] == 1
        # 2MSL counted from the retransmitted FIN, not the first one.
        assert closed_at == [pytest.approx(b_fins[1] + 2 * 0.5)]
        assert b_tcb.state is State.CLOSED
        assert b_tcb.error is None
        assert not any(s.seg.flags & RST for s in net.a_log + net.b_log)


def set_keepalive(stream, idle: int, intvl: int, cnt: int) -> None:  # type: ignore[no-untyped-def]
    sock = stream.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)


def probes(net: ImpairedNet, since: float) -> list[Seen]:
    return [
        s
        for s in net.a_log
        if s.outgoing and s.time >= since and s.seg.flags == ACK and not s.seg.payload
    ]


async def test_keepalive_answered_keeps_connection(autojump_clock: MockClock) -> None:
    async with impaired_net("delay=5ms") as net:
        client, server = await connected(net)
        tcb = client.socket.tcb
        assert tcb is not None
        set_keepalive(client, idle=10, intvl=2, cnt=3)
        start = trio.current_time()
        await trio.sleep(45)
        sent = probes(net, start)
        # Each probe is answered, so the next one waits a full idle time.
        assert [s.time - start for s in sent] == pytest.approx(
            [10, 20.01, 30.02, 40.03], abs=1e-6
        )
        assert all(s.seg.seq == (tcb.snd_nxt - 1) & 0xFFFFFFFF for s in sent)
        assert tcb.state is State.ESTABLISHED
        await client.send_all(b"still here")
        assert await server.receive_some() == b"still here"


async def test_keepalive_gives_up_on_vanished_peer(autojump_clock: MockClock) -> None:
    async with impaired_net("delay=5ms") as net:
        client, _server = await connected(net)
        set_keepalive(client, idle=10, intvl=2, cnt=3)
        start = trio.current_time()
        net.link.add_rule(parse_rule("any:in:all"))  # the peer vanishes
        with pytest.raises(TimeoutError) as info:
            await client.socket.recv(10)
        assert info.value.errno == errno.ETIMEDOUT
        sent = probes(net, start)
        assert [s.time - start for s in sent] == pytest.approx([10, 12, 14])
        rsts = [s for s in net.a_log if s.outgoing and s.seg.flags & RST]
        assert [s.time - start for s in rsts] == pytest.approx([16])
        assert list(net.a.connections()) == []


async def test_zero_window_persist_keeps_connection_alive(
    autojump_clock: MockClock,
) -> None:
    """B's application stops reading; A probes the zero window with backoff,
    B answers every probe, and the connection outlives many RTOs (retries2=3
    would have killed a connection whose retransmissions went unanswered)."""
    async with impaired_net("delay=5ms", rcv_buf=65536, retries2=3) as net:
        client, server = await connected(net)
        payload = bytes(range(256)) * 1024  # 256 KB: far more than B's window
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            await trio.sleep(300)
            tcb = client.socket.tcb
            assert tcb is not None and tcb.state is State.ESTABLISHED
            assert tcb.snd_wnd == 0
            zero_probes = [
                s
                for s in net.a_log
                if s.outgoing and s.seg.seq == (tcb.snd_una - 1) & 0xFFFFFFFF
            ]
            assert len(zero_probes) >= 4
            gaps = intervals([s.time for s in zero_probes])
            assert all(b >= a - 1e-9 for a, b in zip(gaps, gaps[1:], strict=False))
            assert gaps[1] == pytest.approx(2 * gaps[0])
            got = bytearray()
            while len(got) < len(payload):
                got.extend(await server.receive_some())
        assert bytes(got) == payload
