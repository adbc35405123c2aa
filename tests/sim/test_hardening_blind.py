"""Blind injection into an established connection, through the whole stack
(RFC 5961): spoofed RST, SYN and data at in-window and out-of-window
sequence numbers. Only an exact RST (SEG.SEQ == RCV.NXT) kills it.

A is the client, B the server; the attacker injects into A's link as if B
had sent it, and watches what A answers on the wire.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net
from ustack import State, TcpStream
from ustack.tcp.seq import MASK, seq_diff
from ustack.tcp.tcb import Tcb
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, PSH, RST, SYN, TcpSegment, parse_tcp

A_RAW = IPv4Address(A_IP).packed
B_RAW = IPv4Address(B_IP).packed
PORT = 5000


@dataclass
class Conn:
    net: Net
    client: TcpStream
    server: TcpStream
    tcb: Tcb  # A's TCB, the target
    sport: int

    def spoof(
        self,
        seq: int,
        flags: int,
        payload: bytes = b"",
        ack: int | None = None,
        window: int = 1000,
    ) -> None:
        """Inject into A a segment that claims to come from B."""
        if ack is None:
            ack = self.tcb.snd_nxt
        seg = TcpSegment(
            PORT, self.sport, seq & MASK, ack & MASK, flags, window, payload
        )
        self.net.link_a.inject(build_tcp_packet(B_RAW, A_RAW, seg, 1))

    @property
    def rcv_wnd(self) -> int:
        return seq_diff(self.tcb.rcv_adv, self.tcb.rcv_nxt)

    def answers(self) -> list[TcpSegment]:
        """A's segments to B since the last call."""
        sent = self.net.link_a.sent or []
        self.net.link_a.sent = []
        return [parse_tcp(parse_ipv4(p).payload, b"", b"", verify=False) for p in sent]

    async def still_works(self) -> None:
        """Both directions still carry data intact."""
        msg = bytes(range(256)) * 200
        await self.server.send_all(msg)
        got = bytearray()
        while len(got) < len(msg):
            got += await self.client.receive_some()
        assert hashlib.sha256(got).digest() == hashlib.sha256(msg).digest()
        await self.client.send_all(b"ping")
        assert await self.server.receive_some() == b"ping"
        assert self.tcb.state is State.ESTABLISHED


@pytest.fixture
async def conn(net: Net) -> AsyncIterator[Conn]:
    listener = await net.b.listen(PORT)
    client = await net.a.connect((B_IP, PORT))
    server = await listener.accept()
    tcb = client.socket.tcb
    assert tcb is not None
    c = Conn(net, client, server, tcb, client.socket.getsockname()[1])
    await c.still_works()
    c.answers()
    net.link_a.sent = []
    yield c


def pure_acks(segs: list[TcpSegment]) -> list[tuple[int, int]]:
    return [(s.seq, s.ack) for s in segs if s.flags == ACK and not s.payload]


# ----------------------------------------------------------------------
# RST


async def test_exact_rst_kills(conn: Conn, autojump_clock: MockClock) -> None:
    before = conn.net.a.counters["EstabResets"]
    conn.spoof(conn.tcb.rcv_nxt, RST)
    with pytest.raises(trio.BrokenResourceError) as info:
        await conn.client.receive_some()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert conn.tcb.state is State.CLOSED
    assert conn.answers() == []  # a RST is never answered
    assert conn.net.a.counters["EstabResets"] == before + 1
    assert list(conn.net.a.connections()) == []


@pytest.mark.parametrize("offset", [1, 1460, "last"])
async def test_in_window_rst_gets_challenge_ack(
    conn: Conn, autojump_clock: MockClock, offset: int | str
) -> None:
    off = conn.rcv_wnd - 1 if offset == "last" else int(offset)
    before = conn.net.a.counters["TCPChallengeACK"]
    conn.spoof(conn.tcb.rcv_nxt + off, RST)
    await trio.sleep(0.01)
    # The challenge ACK: SEQ = SND.NXT, ACK = RCV.NXT (RFC 5961 3.2).
    assert pure_acks(conn.answers()) == [(conn.tcb.snd_nxt, conn.tcb.rcv_nxt)]
    assert conn.net.a.counters["TCPChallengeACK"] == before + 1
    await conn.still_works()


@pytest.mark.parametrize("where", ["right_edge", "far", "just_below", "far_below"])
async def test_out_of_window_rst_is_ignored(
    conn: Conn, autojump_clock: MockClock, where: str
) -> None:
    nxt, wnd = conn.tcb.rcv_nxt, conn.rcv_wnd
    seq = {
        "right_edge": nxt + wnd,
        "far": nxt + (1 << 31),
        "just_below": nxt - 1,
        "far_below": nxt - (1 << 30),
    }[where]
    counters = dict(conn.net.a.counters)
    conn.spoof(seq, RST)
    conn.spoof(seq, RST | ACK)
    await trio.sleep(0.5)
    assert conn.answers() == []
    assert conn.net.a.counters["TCPChallengeACK"] == counters.get("TCPChallengeACK", 0)
    await conn.still_works()


async def test_blind_rst_sweep_over_the_sequence_space(
    conn: Conn, autojump_clock: MockClock
) -> None:
    """The classic blind attack: one RST per window-sized step over all 2**32
    sequence numbers. Before RFC 5961 one of them would land in the window
    and kill the connection; now it only earns a challenge ACK."""
    wnd = conn.rcv_wnd
    assert wnd > 1000
    start = conn.tcb.rcv_nxt + 1 + wnd // 3  # misses RCV.NXT exactly
    n = (1 << 32) // wnd + 1
    for i in range(n):
        conn.spoof(start + i * wnd, RST)
        if i % 256 == 255:
            await trio.sleep(0)  # let the stack drain its link
    await trio.sleep(0.5)
    acks = pure_acks(conn.answers())
    hits = conn.net.a.counters["TCPChallengeACK"]
    print(f"{n} RSTs with step {wnd}: {hits} challenge ACKs")
    assert n >= 2**32 // wnd
    assert 1 <= len(acks) <= 2  # the step may straddle RCV.NXT: one or two hits
    await conn.still_works()


# ----------------------------------------------------------------------
# SYN


@pytest.mark.parametrize("flags", [SYN, SYN | ACK])
@pytest.mark.parametrize("in_window", [True, False])
async def test_syn_on_established(
    conn: Conn, autojump_clock: MockClock, flags: int, in_window: bool
) -> None:
    nxt = conn.tcb.rcv_nxt
    seq = nxt + 10 if in_window else nxt + (1 << 31)
    before = conn.net.a.counters["TCPChallengeACK"]
    conn.spoof(seq, flags)
    await trio.sleep(0.01)
    # In window: challenge ACK (RFC 5961 4.2); outside: the ACK any
    # unacceptable segment gets (RFC 9293 3.10.7.4). Both carry RCV.NXT.
    assert pure_acks(conn.answers()) == [(conn.tcb.snd_nxt, nxt)]
    assert conn.net.a.counters["TCPChallengeACK"] == before + in_window
    assert len(list(conn.net.a.connections())) == 1
    await conn.still_works()


# ----------------------------------------------------------------------
# Data


@pytest.mark.parametrize("where", ["beyond_window", "far", "old"])
async def test_out_of_window_data_is_acked_not_delivered(
    conn: Conn, autojump_clock: MockClock, where: str
) -> None:
    nxt, wnd = conn.tcb.rcv_nxt, conn.rcv_wnd
    seq = {"beyond_window": nxt + wnd, "far": nxt + (1 << 31), "old": nxt - 5000}[where]
    conn.spoof(seq, ACK | PSH, b"X" * 100)
    await trio.sleep(0.01)
    assert pure_acks(conn.answers()) == [(conn.tcb.snd_nxt, nxt)]
    assert conn.tcb.rcvbuf == b"" and conn.tcb.ooo.size == 0
    assert conn.tcb.rcv_nxt == nxt
    await conn.still_works()


@pytest.mark.parametrize("ack_kind", ["too_new", "too_old"])
async def test_in_window_data_with_unacceptable_ack_is_not_delivered(
    conn: Conn, autojump_clock: MockClock, ack_kind: str
) -> None:
    """RFC 5961 5.2: the ACK must lie in [SND.UNA - MAX.SND.WND, SND.NXT]."""
    tcb = conn.tcb
    nxt = tcb.rcv_nxt
    ack = (
        tcb.snd_nxt + 100_000
        if ack_kind == "too_new"
        else (tcb.snd_una - tcb.max_snd_wnd - 100_000)
    )
    conn.spoof(nxt, ACK | PSH, b"X" * 100, ack=ack)
    await trio.sleep(0.01)
    assert tcb.rcvbuf == b"" and tcb.rcv_nxt == nxt
    assert pure_acks(conn.answers()) == [(tcb.snd_nxt, nxt)]
    await conn.still_works()


async def test_in_window_data_without_ack_flag_is_dropped(
    conn: Conn, autojump_clock: MockClock
) -> None:
    nxt = conn.tcb.rcv_nxt
    conn.spoof(nxt, PSH, b"X" * 100)
    await trio.sleep(0.5)
    assert conn.tcb.rcvbuf == b"" and conn.tcb.rcv_nxt == nxt
    assert conn.answers() == []
    await conn.still_works()


async def test_in_window_data_with_valid_ack_is_delivered(
    conn: Conn, autojump_clock: MockClock
) -> None:
    """The control: a spoofed segment that is fully acceptable IS taken (TCP
    cannot tell it apart), so the tests above can fail."""
    nxt = conn.tcb.rcv_nxt
    conn.spoof(nxt, ACK | PSH, b"injected")
    assert await conn.client.receive_some() == b"injected"
    assert conn.tcb.rcv_nxt == (nxt + 8) & MASK
    # The two ends are now desynchronized (their ACK exchange is rate-limited
    # since the fix, see test_hardening_regressions): cut the wire anyway.
    conn.net.link_a.filter = conn.net.link_b.filter = lambda packet: []


# ----------------------------------------------------------------------
# Challenge ACK budget


async def test_challenge_acks_are_rate_limited(
    conn: Conn, autojump_clock: MockClock
) -> None:
    limit = conn.net.a.settings.challenge_ack_limit
    c = conn.net.a.counters
    sent0, limited0 = c["TCPChallengeACK"], c["TCPChallengeACKLimited"]
    await trio.sleep(1 - trio.current_time() % 1)  # start of a fresh second
    n = 3 * limit
    for i in range(n):
        conn.spoof(conn.tcb.rcv_nxt + 1 + i, RST)
    await trio.sleep(0.01)
    acks = pure_acks(conn.answers())
    assert len(acks) == limit
    assert c["TCPChallengeACK"] - sent0 == limit
    assert c["TCPChallengeACKLimited"] - limited0 == n - limit
    await trio.sleep(1)
    conn.spoof(conn.tcb.rcv_nxt + 5, SYN)
    await trio.sleep(0.01)
    assert len(pure_acks(conn.answers())) == 1  # a new second, a new budget
    await conn.still_works()
