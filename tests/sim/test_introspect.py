"""`ustack ss` rows (ustack.observe.introspect) for connections held in CLOSE-WAIT,
FIN-WAIT-2 and TIME-WAIT on purpose, between two stacks in virtual time; and
the control socket answering for a stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net, sim_settings
from ustack import Stack, TcpStream
from ustack.link.memory import memory_link_pair
from ustack.observe.control import ControlServer, request, subscribe
from ustack.observe.introspect import connection_rows, counter_rows, listener_rows
from ustack.observe.trace import LiveLadder, event_from_json


async def wait_state(stack: Stack, state: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll (virtual time) until `stack` has exactly one row in `state`."""
    with trio.fail_after(timeout):
        while True:
            rows = [
                r
                for r in connection_rows(stack, trio.current_time())
                if r["state"] == state
            ]
            if rows:
                assert len(rows) == 1, rows
                return rows[0]
            await trio.sleep(0.01)


async def connected_pair(net: Net, port: int) -> tuple[TcpStream, TcpStream]:
    listener = await net.b.listen(port)
    client = await net.a.connect((B_IP, port))
    server = await listener.accept()
    return client, server


async def test_half_close_gives_fin_wait_2_and_close_wait(
    net: Net, autojump_clock: MockClock
) -> None:
    client, server = await connected_pair(net, 7000)
    await server.send_all(b"x" * 1000)  # unread by the client: its Recv-Q
    await client.send_eof()
    await wait_state(net.a, "FIN-WAIT-2")
    await wait_state(net.b, "CLOSE-WAIT")
    # Let in-flight data and delayed ACKs (40 ms) settle before reading queues:
    # B's 1000 bytes may still be unacknowledged when the states are reached.
    await trio.sleep(0.2)
    a = await wait_state(net.a, "FIN-WAIT-2")
    b = await wait_state(net.b, "CLOSE-WAIT")
    assert a["local"].startswith(f"{A_IP}:") and a["peer"] == f"{B_IP}:7000"
    assert b["local"] == f"{B_IP}:7000" and b["peer"] == a["local"]
    assert a["recv_q"] == 1000 and a["send_q"] == 0
    assert b["recv_q"] == 0 and b["send_q"] == 0
    # Not orphaned (the application may still read): no FIN-WAIT-2 timer.
    # (A delayed ACK of the unread data may still be pending.)
    assert a["orphan"] is False and a["timer"] in (None, "delack")
    assert a["cwnd"] > 0 and a["rto"] >= net.a.settings.rto_min
    assert a["rtt"] is not None  # the handshake gave an RTT sample
    # CLOSE-WAIT can still send: the client reads it.
    await server.send_all(b"more")
    got = b""
    while len(got) < 1004:
        got += await client.receive_some()
    assert got == b"x" * 1000 + b"more"


async def test_active_closer_row_counts_down_in_time_wait(
    net: Net, autojump_clock: MockClock
) -> None:
    client, server = await connected_pair(net, 7001)
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()
    row = await wait_state(net.a, "TIME-WAIT")
    two_msl = 2 * net.a.settings.msl
    assert row["timer"] == "timewait"
    assert 0 < row["timer_left"] <= two_msl
    first = row["timer_left"]
    await trio.sleep(two_msl / 4)
    later = connection_rows(net.a, trio.current_time())
    assert later[0]["state"] == "TIME-WAIT"
    assert later[0]["timer_left"] == pytest.approx(first - two_msl / 4, abs=0.02)
    # The passive closer is gone (LAST-ACK -> CLOSED).
    assert connection_rows(net.b, trio.current_time()) == []
    await trio.sleep(two_msl)
    assert connection_rows(net.a, trio.current_time()) == []


async def test_orphan_fin_wait_2_has_a_timer(
    net: Net, autojump_clock: MockClock
) -> None:
    client, server = await connected_pair(net, 7002)
    await client.aclose()  # full close while the peer keeps its side open
    row = await wait_state(net.a, "FIN-WAIT-2")
    assert row["orphan"] is True
    assert row["timer"] == "fin_wait2"
    assert 0 < row["timer_left"] <= net.a.settings.fin_timeout
    b = await wait_state(net.b, "CLOSE-WAIT")
    assert b["timer"] is None
    await server.aclose()


async def test_retransmit_timer_and_count_when_the_network_eats_data(
    net: Net, autojump_clock: MockClock
) -> None:
    client, server = await connected_pair(net, 7003)
    net.link_a.filter = lambda packet: []
    await client.send_all(b"lost" * 100)
    with trio.fail_after(60):
        while True:
            rows = connection_rows(net.a, trio.current_time())
            if rows[0]["retrans"] >= 2:
                break
            await trio.sleep(0.05)
    row = rows[0]
    assert row["state"] == "ESTAB"
    assert row["timer"] == "on"
    assert row["send_q"] == 400
    net.link_a.filter = None
    assert await server.receive_some() == b"lost" * 100


async def test_listener_rows_show_accept_queue(
    net: Net, autojump_clock: MockClock
) -> None:
    listener = await net.b.listen(7004, backlog=5)
    await net.a.connect((B_IP, 7004))
    await net.a.connect((B_IP, 7004))
    await trio.sleep(0.1)
    (row,) = listener_rows(net.b)
    assert row["state"] == "LISTEN" and row["local"] == f"{B_IP}:7004"
    assert row["accept_queue"] == 2 and row["recv_q"] == 2
    assert row["backlog"] == 5 and row["send_q"] == 5
    await listener.aclose()


def test_counter_rows_fill_standard_names_and_sort() -> None:
    rows = counter_rows({"OutSegs": 3, "InErrs.bad_csum": 1})
    assert rows["OutSegs"] == 3 and rows["ActiveOpens"] == 0
    assert list(rows) == sorted(rows)


async def test_control_socket_ss_stats_and_trace(tmp_path: Path) -> None:
    """Real time and a real Unix socket (no mock clock: socket I/O)."""
    link_a, link_b = memory_link_pair()
    path = tmp_path / "ctl.sock"
    async with (
        Stack(link_a, A_IP, sim_settings()) as a,
        Stack(link_b, B_IP, sim_settings()) as b,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(ControlServer(b, path).serve)
        assert path.stat().st_mode & 0o777 == 0o600
        listener = await b.listen(80)

        events: list[dict[str, Any]] = []
        subscribed = trio.Event()
        done = trio.Event()

        async def tracer() -> None:
            async for message in subscribe(path, {"cmd": "trace", "port": 80}):
                if message["event"] == "hello":
                    subscribed.set()
                    continue
                events.append(message)
                if message["event"] == "state" and message["new"] == "CLOSED":
                    done.set()
                    return

        nursery.start_soon(tracer)
        with trio.fail_after(10):
            await subscribed.wait()
        client = await a.connect((B_IP, 80))
        server = await listener.accept()
        await client.send_all(b"hi")
        assert await server.receive_some() == b"hi"

        reply = await request(path, {"cmd": "ss"})
        assert reply["ip"] == B_IP
        (conn,) = reply["connections"]
        assert conn["state"] == "ESTAB" and conn["local"] == f"{B_IP}:80"
        assert [r["port"] for r in reply["listeners"]] == [80]
        json.dumps(reply)  # all plain JSON

        stats = await request(path, {"cmd": "stats"})
        assert stats["counters"]["PassiveOpens"] == 1
        assert stats["counters"]["InSegs"] >= 3

        with pytest.raises(OSError, match="unknown command"):
            await request(path, {"cmd": "nope"})

        await server.aclose()  # ustack (b) closes first
        assert await client.receive_some() == b""
        await client.aclose()
        with trio.fail_after(10):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert not path.exists()  # unlinked on exit

    kinds = [(e["event"], e.get("new")) for e in events]
    assert ("state", "ESTABLISHED") in kinds and ("state", "CLOSED") in kinds
    packets = [e for e in events if e["event"] == "packet"]
    assert [e["outgoing"] for e in packets[:2]] == [False, True]  # SYN in, SYN-ACK out
    ladder = LiveLadder(B_IP, 80)
    lines = [line for e in events for line in ladder.feed(event_from_json(e))]  # type: ignore[arg-type]
    text = "\n".join(lines)
    assert "connection 1: 10.0.0.2:80 <-> 10.0.0.1:" in text
    assert "ustack ESTABLISHED -> FIN_WAIT_1 (known)" in text
    assert "<- SYN seq=0 len=0" in text
    assert "-- FIN,ACK" in text
