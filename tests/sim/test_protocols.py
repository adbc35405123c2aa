"""Services as protocol callbacks run by the packet loop (ustack.protocol),
against stream clients on a second stack, in virtual time."""

from __future__ import annotations

import hashlib

import h11
import trio
from trio.testing import MockClock

from tests.sim.conftest import B_IP, Net
from ustack import TcpStream
from ustack.protocol import Protocol, Transport
from ustack.services import CHARGEN_CYCLE, make_protocol_factory, pattern_bytes
from ustack.tcp.state import State


async def read_all(stream: TcpStream) -> bytes:
    chunks = []
    while data := await stream.receive_some():
        chunks.append(data)
    return b"".join(chunks)


def http_get(target: str, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


async def read_responses(stream: TcpStream, n: int) -> list[tuple[int, bytes]]:
    """Parse n responses with h11 as a client would."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    out: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while len(out) < n:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some())
        elif isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, body))
            if len(out) < n:
                client.start_next_cycle()
                client.send(
                    h11.Request(method="GET", target="/", headers=[("Host", "x")])
                )
                client.send(h11.EndOfMessage())
    return out


async def test_echo_protocol_returns_everything_then_fin(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.serve_protocol(7, make_protocol_factory("echo"))
    payload = bytes(range(256)) * 8000  # 2 MB: more than every buffer
    stream = await net.a.connect((B_IP, 7))
    async with stream, trio.open_nursery() as nursery:

        async def send() -> None:
            await stream.send_all(payload)
            await stream.send_eof()

        nursery.start_soon(send)
        assert await read_all(stream) == payload


async def test_discard_and_chargen_protocols(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.serve_protocol(9, make_protocol_factory("discard"))
    net.b.serve_protocol(19, make_protocol_factory("chargen"))
    async with await net.a.connect((B_IP, 9)) as stream:
        await stream.send_all(b"x" * 100_000)
        await stream.send_eof()
        assert await read_all(stream) == b""  # the server closed after EOF
    async with await net.a.connect((B_IP, 19)) as stream:
        got = b""
        while len(got) < 3 * len(CHARGEN_CYCLE):
            got += await stream.receive_some()
        assert got[: 2 * len(CHARGEN_CYCLE)] == CHARGEN_CYCLE * 2


async def test_http_protocol_keepalive_pipelining_and_close(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.serve_protocol(80, make_protocol_factory("http"))
    async with await net.a.connect((B_IP, 80)) as stream:
        # Three pipelined requests in one write, answered in order.
        await stream.send_all(http_get("/bytes/10") * 2 + http_get("/nothing"))
        replies = await read_responses(stream, 3)
        assert replies == [
            (200, pattern_bytes(10)),
            (200, pattern_bytes(10)),
            (404, b"not found\n"),
        ]
        # A body larger than every buffer, then Connection: close.
        await stream.send_all(http_get("/bytes/3000000", close=True))
        raw = await read_all(stream)
        assert raw.endswith(pattern_bytes(3_000_000))
        assert b"Content-Length: 3000000" in raw


async def test_http_protocol_sha256_with_expect_continue(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.serve_protocol(80, make_protocol_factory("http"))
    body = bytes(range(256)) * 4000
    head = (
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    async with await net.a.connect((B_IP, 80)) as stream:
        await stream.send_all(head)
        first = await stream.receive_some()
        assert first.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(body)
        raw = await read_all(stream)
        assert raw.endswith(hashlib.sha256(body).hexdigest().encode() + b"\n")


async def test_http_protocol_bad_request_gets_400_and_close(
    net: Net, autojump_clock: MockClock
) -> None:
    net.b.serve_protocol(80, make_protocol_factory("http"))
    async with await net.a.connect((B_IP, 80)) as stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        raw = await read_all(stream)
        assert raw.startswith(b"HTTP/1.1 400 ")


def task_count() -> int:
    """Every task in the run (the stacks' loops, the test, any handler)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    n = 0
    while todo:
        task = todo.pop()
        n += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return n


class Recorder(Protocol):
    """Records the callbacks; raises on a chosen payload."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.log.append("made")

    def data_received(self, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("boom")
        self.log.append(f"data {data!r}")

    def eof_received(self) -> bool | None:
        self.log.append("eof")
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(f"lost {exc is None}")


async def test_callbacks_in_order_and_no_task_per_connection(
    net: Net, autojump_clock: MockClock
) -> None:
    log: list[str] = []
    net.b.serve_protocol(5000, lambda: Recorder(log))
    before = task_count()
    stream = await net.a.connect((B_IP, 5000))
    await stream.send_all(b"hi")
    await trio.sleep(1)
    assert task_count() == before  # connected and served: no task for it
    await stream.send_eof()
    assert await read_all(stream) == b""  # our EOF made the protocol close
    await stream.aclose()
    await trio.sleep(5)
    assert log == ["made", "data b'hi'", "eof", "lost True"]
    assert [t for t in net.b.connections() if t.state is not State.CLOSED] == []


async def test_a_failing_protocol_resets_its_connection_only(
    net: Net, autojump_clock: MockClock
) -> None:
    log: list[str] = []
    net.b.serve_protocol(5000, lambda: Recorder(log))
    bad = await net.a.connect((B_IP, 5000))
    good = await net.a.connect((B_IP, 5000))
    await bad.send_all(b"boom")
    with trio.fail_after(10):
        try:
            await read_all(bad)
            reset = False
        except trio.BrokenResourceError:
            reset = True
    assert reset
    await good.send_all(b"ok")
    await trio.sleep(1)
    assert "data b'ok'" in log
