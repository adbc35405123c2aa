"""A bug inside one connection costs that connection only."""

from __future__ import annotations

import errno

import pytest
import trio
from trio.testing import MockClock

from tests.sim.conftest import B_IP, Net
from ustack.tcp.tcb import Tcb


async def test_exception_in_a_tcb_resets_only_that_connection(
    net: Net, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = await net.b.listen(80)
    healthy = await net.a.connect((B_IP, 80))
    healthy_server = await listener.accept()
    doomed = await net.a.connect((B_IP, 80))
    doomed_server = await listener.accept()
    doomed_tcb = doomed_server.socket.tcb
    original = Tcb.on_segment

    def broken(self: Tcb, seg: object, now: float) -> None:
        if self is doomed_tcb:
            raise RuntimeError("simulated bug")
        original(self, seg, now)  # type: ignore[arg-type]

    monkeypatch.setattr(Tcb, "on_segment", broken)
    await doomed.send_all(b"trigger")
    with pytest.raises(trio.BrokenResourceError) as info:
        await doomed_server.receive_some()
    assert info.value.__cause__.errno == errno.ECONNABORTED  # type: ignore[union-attr]
    with pytest.raises(trio.BrokenResourceError):
        await doomed.receive_some()  # the peer got our RST
    assert net.b.counters["InternalErrors"] == 1
    await healthy.send_all(b"still fine")
    assert await healthy_server.receive_some() == b"still fine"
