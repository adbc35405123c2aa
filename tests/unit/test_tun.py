"""TunLink without a kernel device: a SOCK_SEQPACKET pair stands in for the fd."""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterator

import pytest
import pytun
import trio

from ustack.errors import SetupError
from ustack.link import tun
from ustack.link.tun import TunLink


class FakeDevice:
    name = "fake0"

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.closed = 0

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        self.closed += 1


Pair = tuple[TunLink, socket.socket, FakeDevice]


@pytest.fixture
def pair() -> Iterator[Pair]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    dev = FakeDevice(ours.fileno())
    yield TunLink(dev, mtu=1500), theirs, dev
    ours.close()
    theirs.close()


IPV4 = b"\x45" + bytes(19)
IPV6 = b"\x60" + bytes(39)


def test_read_batch_drains_and_drops_non_ipv4(pair: Pair) -> None:
    link, peer, _ = pair
    assert link.read_batch() == []
    for pkt in (IPV4, IPV6, IPV4 + b"x", b"\x45" + bytes(60000)):
        peer.send(pkt)
    assert link.read_batch() == [IPV4, IPV4 + b"x", b"\x45" + bytes(60000)]
    assert link.dropped_non_ipv4 == 1


def test_read_batch_respects_max(pair: Pair) -> None:
    link, peer, _ = pair
    for _ in range(5):
        peer.send(IPV4)
    assert len(link.read_batch(3)) == 3
    assert len(link.read_batch(3)) == 2


async def test_wait_readable(pair: Pair) -> None:
    link, peer, _ = pair
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.sleep(0.01)
            peer.send(IPV4)

        nursery.start_soon(later)
        with trio.fail_after(5):
            await link.wait_readable()
    assert link.read_batch() == [IPV4]


def test_write_counts_drops_when_full(pair: Pair) -> None:
    link, peer, _ = pair
    for _ in range(100_000):
        link.write(IPV4 + bytes(1000))
        if link.tx_dropped:
            break
    assert link.tx_dropped == 1
    assert peer.recv(2000) == IPV4 + bytes(1000)


def test_write_counts_enobufs(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    link, _, _ = pair

    def enobufs(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOBUFS, "No buffer space available")

    monkeypatch.setattr(os, "write", enobufs)
    link.write(IPV4)
    assert link.tx_dropped == 1


def test_close_is_idempotent(pair: Pair) -> None:
    link, _, dev = pair
    link.close()
    link.close()
    assert dev.closed == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            errno.EPERM,
            "creating TUN device ustack0 needs root (CAP_NET_ADMIN): run with sudo",
        ),
        (errno.ENOENT, "modprobe tun"),
        (errno.EBUSY, "ustack0 is busy"),
    ],
)
def test_open_errors_are_setup_errors(
    monkeypatch: pytest.MonkeyPatch, code: int, expected: str
) -> None:
    def refuse(name: str, flags: int) -> None:
        raise pytun.Error(code, os.strerror(code))

    monkeypatch.setattr(tun.pytun, "TunTapDevice", refuse)
    with pytest.raises(SetupError, match=re.escape(expected)):
        TunLink.open()
