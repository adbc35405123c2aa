"""The impaired path in its own process (ustack.link.impair_proc).

`PathLoop` is driven by hand with plain `now` numbers (virtual time) on
socketpairs standing in for the TUN fd and the stack's socket; `SocketLink`
and the real child process are checked end to end on socketpairs (no root,
no TUN), waiting for events, never for wall time.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import trio

from ustack.link import impair_proc
from ustack.link.impair import parse_impair_spec
from ustack.link.impair_proc import MAX_AGE, PathLoop, SocketLink, spawn_impaired


def ipv4(n: int, size: int = 100) -> bytes:
    """A fake IPv4 packet (version nibble 4) tagged with n."""
    return bytes([0x45, 0]) + n.to_bytes(4, "big") + bytes(size - 6)


def tag(packet: bytes) -> int:
    return int.from_bytes(packet[2:6], "big")


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 17))
        except BlockingIOError:
            return out


@dataclass
class Rig:
    loop: PathLoop
    kernel: socket.socket  # the far side of the "TUN"
    stack: socket.socket  # the stack's end of the socketpair


MakeRig = Callable[[str], Rig]


@pytest.fixture
def rig_for() -> Iterator[MakeRig]:
    opened: list[socket.socket] = []

    def make(spec: str) -> Rig:
        tun_ours, kernel = pair()
        stack, child = pair()
        opened.extend((tun_ours, kernel, stack, child))
        loop = PathLoop(tun_ours.fileno(), child, parse_impair_spec(spec), 1500, False)
        return Rig(loop, kernel, stack)

    yield make
    for s in opened:
        s.close()


def test_delay_holds_each_direction_until_due(rig_for: MakeRig) -> None:
    rig = rig_for("delay=20ms,seed=1")
    rig.kernel.send(ipv4(1))  # kernel -> stack (inbound)
    rig.stack.send(ipv4(2))  # stack -> kernel (outbound)
    rig.loop._from_tun(0.0)
    rig.loop._from_sock(0.0)
    assert rig.loop.timeout(0.0) == pytest.approx(0.020)
    rig.loop.release(0.019)
    assert drain(rig.stack) == [] and drain(rig.kernel) == []
    rig.loop.release(0.020)
    assert [tag(p) for p in drain(rig.stack)] == [1]
    assert [tag(p) for p in drain(rig.kernel)] == [2]
    assert rig.loop.timeout(0.020) == -1  # nothing pending: wait for input
    c = rig.loop.counters
    assert c["in.delivered"] == 1 and c["out.delivered"] == 1


def test_rate_spaces_packets_on_the_loops_own_clock(rig_for: MakeRig) -> None:
    # 1500-byte packets at 1.5 MB/s: one per ms after the one-packet burst.
    rig = rig_for("in.rate=1500kB,seed=1")
    for n in range(5):
        rig.kernel.send(ipv4(n, 1500))
    rig.loop._from_tun(0.0)
    released = []
    for ms in range(6):
        rig.loop.release(ms / 1000)
        released.append(len(drain(rig.stack)))
    assert released == [1, 1, 1, 1, 1, 0]


def test_loss_counted_and_boundaries_kept(rig_for: MakeRig) -> None:
    rig = rig_for("out.loss=50%,seed=3")
    for n in range(200):
        rig.stack.send(ipv4(n, 60 + n))
    rig.loop._from_sock(0.0)
    rig.loop.release(0.0)
    got = drain(rig.kernel)
    c = rig.loop.counters
    assert c["out.packets"] == 200
    assert 0 < c["out.loss"] < 200 and len(got) == 200 - c["out.loss"]
    assert all(len(p) == 60 + tag(p) for p in got)  # one packet per message
    assert [tag(p) for p in got] == sorted(tag(p) for p in got)


def test_eof_on_the_socket_ends_the_loop(rig_for: MakeRig) -> None:
    rig = rig_for("delay=1ms,seed=1")
    rig.stack.shutdown(socket.SHUT_WR)
    rig.loop._from_sock(0.0)
    assert rig.loop.eof


def test_socket_link_reads_batches_and_writes() -> None:
    ours, theirs = pair()
    link = SocketLink(ours, 1500, False)
    try:
        for n in range(3):
            theirs.send(ipv4(n))
        theirs.send(b"\x60" + bytes(39))  # IPv6: dropped and counted

        async def main() -> list[bytes]:
            await link.wait_readable()
            return link.read_batch(2) + link.read_batch()

        got = trio.run(main)
        assert [tag(p) for p in got] == [0, 1, 2]
        assert link.dropped_non_ipv4 == 1
        link.write(ipv4(9))
        assert [tag(p) for p in drain(theirs)] == [9]
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(OSError, match="exited"):
            link.read_batch()
    finally:
        link.close()
        link.close()  # idempotent
        theirs.close()


class ShiftedClock:
    """time.time() `by` seconds ahead: the read looks that much later than
    the kernel's SO_TIMESTAMPNS stamps, without waiting for it."""

    def __init__(self, by: float) -> None:
        self.by = by

    def time(self) -> float:
        return time.time() + self.by


@pytest.mark.parametrize(("late", "age"), [(0.25, None), (5.0, MAX_AGE)])
def test_socket_link_gives_each_packet_its_arrival_time(
    monkeypatch: pytest.MonkeyPatch, late: float, age: float | None
) -> None:
    """Packets read `late` seconds after the path process wrote them arrive
    that long before `now` on the caller's clock (at most MAX_AGE: a stamp
    further back means the realtime clock was stepped), in order."""
    ours, theirs = pair()
    link = SocketLink(ours, 1500, False)
    try:
        for n in range(3):
            theirs.send(ipv4(n))
        monkeypatch.setattr(impair_proc, "time", ShiftedClock(late))

        async def main() -> list[bytes]:
            await link.wait_readable()
            return link.read_batch()

        assert [tag(p) for p in trio.run(main)] == [0, 1, 2]
        times = link.arrival_times(100.0)
        assert len(times) == 3 and times == sorted(times)
        if age is None:
            assert all(100.0 - MAX_AGE < t <= 100.0 - late for t in times)
        else:
            assert times == [100.0 - age] * 3
    finally:
        link.close()
        theirs.close()


def test_path_loop_waits_to_the_microsecond(
    rig_for: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop sleeps until the next release plus its slack (select's
    timeval, to the microsecond), not rounded up to a whole millisecond as
    epoll would."""
    rig = rig_for("delay=300us,seed=1")
    rig.kernel.send(ipv4(1))
    rig.loop._from_tun(0.0)
    waits: list[float | None] = []

    def fake_select(r: object, w: object, x: object, timeout: float | None) -> tuple:
        waits.append(timeout)
        rig.loop.eof = True
        return [], [], []

    monkeypatch.setattr(impair_proc.select, "select", fake_select)
    rig.loop.run(clock=lambda: 0.0001)
    assert waits == [pytest.approx(0.0002 + impair_proc.RELEASE_SLACK, abs=1e-12)]
    assert impair_proc.RELEASE_SLACK < 0.0005


class StampedLink:
    """A link that knows when its packets arrived (as SocketLink does)."""

    mtu = 1500

    def __init__(self, packets: list[bytes], ages: list[float]) -> None:
        self.packets, self.ages = packets, ages

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        out, self.packets = self.packets, []
        return out

    def arrival_times(self, now: float) -> list[float]:
        return [now - age for age in self.ages]


def test_stack_hands_each_packet_its_arrival_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ustack.stack import Stack

    link = StampedLink([ipv4(1), ipv4(2)], [0.004, 0.001])
    stack = Stack(link, "10.0.0.2")  # type: ignore[arg-type]
    seen: list[tuple[int, float]] = []

    def record(packet: bytes, now: float, verify: bool = True) -> None:
        seen.append((tag(packet), now))

    monkeypatch.setattr(stack, "_input", record)

    async def main() -> float:
        stack._drain()
        return trio.current_time()

    after = trio.run(main)
    assert [n for n, _ in seen] == [1, 2]
    (_, t1), (_, t2) = seen
    assert t1 < t2 < after  # 4 ms and 1 ms before the read
    assert t2 - t1 == pytest.approx(0.003)


class FakeTun:
    """What spawn_impaired needs of a TunLink: an fd, the MTU, vnet_hdr."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.mtu = 1500
        self.vnet_hdr = False

    def fileno(self) -> int:
        return self.sock.fileno()


def wait_recv(sock: socket.socket, timeout: float = 30.0) -> bytes:
    ready, _, _ = select.select([sock], [], [], timeout)
    assert ready, "nothing arrived through the path process"
    return sock.recv(1 << 17)


def test_child_process_carries_both_ways_and_reports_counters() -> None:
    tun_child, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = spawn_impaired(FakeTun(tun_child), parse_impair_spec("delay=2ms,seed=4"))
    try:
        tun_child.close()  # the child holds its own copy
        kernel.send(ipv4(7))
        ready, _, _ = select.select([link.fileno()], [], [], 30.0)
        assert ready, "nothing arrived through the path process"
        assert [tag(p) for p in link.read_batch()] == [7]
        link.write(ipv4(8))
        assert tag(wait_recv(kernel)) == 8
    finally:
        link.close()
        kernel.close()
    assert link._child is not None and link._child.returncode == 0
    assert link.counters["in.delivered"] == 1
    assert link.counters["out.delivered"] == 1
    assert link.counters["path.timed_wakeups"] >= 2  # slept until each release
    assert "in.packets=1" in link.summary() and "out.packets=1" in link.summary()
