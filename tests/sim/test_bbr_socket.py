"""TCP_CONGESTION b"bbr" through the socket API (issue 14, Build 3): a
socket that asks for BBR with setsockopt gets a BBR connection that the
stack's timer heap paces, as `--set congestion=bbr` does. Two stacks in
virtual time; the receiver's link is a 20 Mbit/s bottleneck with 10 ms of
delay on its ACKs."""

from __future__ import annotations

import socket

import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, sim_settings
from ustack import Stack, TcpStream
from ustack.link.impair import ImpairedLink, Impairment
from ustack.link.memory import memory_link_pair
from ustack.observe.introspect import connection_rows, ss_table
from ustack.tcp.cc.bbr import Bbr
from ustack.tcp.pacing import UNPACED_SEGMENTS
from ustack.wire.ipv4 import parse_ipv4
from ustack.wire.tcp import parse_tcp

PORT = 9
NBYTES = 1 << 20


async def transfer(
    congestion: bytes | None,
) -> tuple[list[float], set[float], list[str]]:
    """Send NBYTES from A to B over a socket with TCP_CONGESTION set to
    `congestion` (None: not set); return the times A sent each data
    segment, the times ACKs reached A, and A's `ustack ss` cells for the
    connection once all was received."""
    link_a, link_b = memory_link_pair()
    sends: list[float] = []
    acks: set[float] = set()

    def on_a(packet: bytes) -> list[bytes]:
        seg = parse_tcp(parse_ipv4(packet).payload, b"", b"", verify=False)
        if seg.payload:
            sends.append(trio.current_time())
        return [packet]

    def on_b(packet: bytes) -> list[bytes]:
        acks.add(trio.current_time())
        return [packet]

    link_a.filter, link_b.filter = on_a, on_b
    path = ImpairedLink(
        link_b,
        inbound=Impairment(rate=20e6 / 8, queue=500),
        outbound=Impairment(delay=0.01),
    )
    settings = sim_settings(snd_buf=1 << 20, rcv_buf=1 << 20)
    async with (
        Stack(link_a, A_IP, settings, network="10.0.0.0/24") as a,
        Stack(path, B_IP, settings, network="10.0.0.0/24") as b,
    ):
        listener = await b.listen(PORT)
        received = 0

        async def sink() -> None:
            nonlocal received
            stream = await listener.accept()
            while chunk := await stream.receive_some():
                received += len(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink)
            sock = a.socket()
            if congestion is not None:
                sock.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion
                )
            await sock.connect((B_IP, PORT))
            tcb = sock.tcb
            assert tcb is not None
            expect = (congestion or a.settings.congestion.encode()).decode()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION) \
                == expect.encode()
            assert tcb.congestion_name == expect
            stream = TcpStream(sock)
            await stream.send_all(b"x" * NBYTES)
            await stream.send_eof()
            with trio.fail_after(30):
                while received < NBYTES:
                    await trio.sleep(0.01)
            rows = connection_rows(a, trio.current_time())
            ss = next(
                cells
                for row, cells in zip(rows, ss_table(rows), strict=True)
                if row["peer"] == f"{B_IP}:{PORT}"
            )
            if congestion == b"bbr":
                assert isinstance(tcb.cc, Bbr)
                assert tcb.pacer is not None and tcb.pacer.rate > 0
                assert tcb.pacer.rate == tcb.cc.pacing_rate_for(None, 0.0)
            else:
                assert tcb.pacer is None
            await stream.aclose()
            nursery.cancel_scope.cancel()
    return sends, acks, ss


def timer_driven(sends: list[float], acks: set[float]) -> float:
    """The share of data segments (after the unpaced first ten) sent at an
    instant when no ACK arrived: released by the pacing timer, not by an
    ACK."""
    paced = sends[UNPACED_SEGMENTS:]
    return sum(1 for t in paced if t not in acks) / len(paced)


async def test_setsockopt_bbr_gives_a_paced_connection(
    autojump_clock: MockClock,
) -> None:
    sends, acks, ss = await transfer(b"bbr")
    # ACKs clock most sends (one arrives every ~1 ms, a burst's length), but
    # a tenth or so go when the pacing timer fires between ACKs.
    assert timer_driven(sends, acks) > 0.05
    # `ustack ss` shows it as Linux's ss -i shows a BBR socket.
    info = ss[-1]
    assert "bbr:(bw:" in info and "pacing_gain:" in info and "cwnd_gain:" in info
    assert "pacing_rate " in info and "delivery_rate " in info


async def test_default_cubic_socket_is_ack_clocked(
    autojump_clock: MockClock,
) -> None:
    sends, acks, ss = await transfer(None)
    assert timer_driven(sends, acks) == 0.0
    assert "bbr:" not in ss[-1] and "pacing_rate" not in ss[-1]
