"""tools/soak.py in virtual time: many connections with random lifetimes and
close styles through an impaired link; afterwards nothing may be left."""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from trio.testing import MockClock

from tests.sim.conftest import A_IP, B_IP, Net

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import soak  # noqa: E402


def test_soak_leaves_nothing_behind() -> None:
    cfg = soak.Config(
        seconds=6,
        conns=40,
        max_bytes=40_000,
        seed=3,
        drain=300,
        impair="loss=2%,dup=1%,reorder=2%,delay=2ms",
        styles=("fin", "shutdown", "rst", "abandon", "keepalive"),
    )
    report = soak.run(cfg, virtual=True)
    print(report.summary())
    assert report.leaks == []
    assert report.corrupted == 0
    assert report.ok
    for style in cfg.styles:
        assert report.styles[style] >= 20, report.styles
    assert report.outcomes["fin:ok"] >= 20 and report.outcomes["shutdown:ok"] >= 20
    assert report.counters["A"]["RetransSegs"] > 0  # the impairment did bite
    assert report.counters["A"]["EstabResets"] > 0  # RST-style closes happened


async def test_find_leaks_sees_a_connection_left_open(
    net: Net, autojump_clock: MockClock
) -> None:
    """The leak check can fail: an open connection, its TIME_WAIT record
    later, and its timers are all reported."""
    listener = await net.b.listen(7)
    client = await net.a.connect((B_IP, 7))
    server = await listener.accept()
    leaks = soak.find_leaks(net.a, "A")
    assert any("TCB ESTABLISHED" in leak for leak in leaks), leaks
    await client.aclose()
    await server.aclose()
    await trio.sleep(0.1)
    assert any("TIME_WAIT" in leak for leak in soak.find_leaks(net.a, "A"))
    await trio.sleep(2 * net.a.settings.msl + 1)
    assert soak.find_leaks(net.a, "A") == []
    assert soak.find_leaks(net.b, "B") == []
    assert A_IP != B_IP
