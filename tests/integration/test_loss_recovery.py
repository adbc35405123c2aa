"""ustack as the sender under loss, against the kernel's TCP (issue: loss
recovery at Linux's level). curl downloads from ustack through a lossy,
delayed link; the transfer must be intact and repaired by fast recovery,
RACK and tail loss probes, with at most a handful of RTOs.

Figures (how fast, against Linux's CUBIC/Reno/BBR) come from the lossy
benchmark in tools/bench.py, not from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration

SIZE = 2_000_000
UstackUp = Callable[..., UstackProcess]


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json", timeout=30).stdout
    counters: dict[str, int] = json.loads(out)
    return counters


@pytest.mark.parametrize("congestion", ["cubic", "reno", "bbr"])
@pytest.mark.parametrize("seed", [1, 2])
def test_download_under_loss_needs_few_rtos(
    seed: int, congestion: str, ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up(
        "--no-offload",
        "--services",
        "http",
        "--set",
        f"congestion={congestion}",
        "--impair",
        f"loss=1%,delay=10ms,seed={seed}",
    )
    down = tmp_path / "down.bin"
    stack.run(
        "curl", "-sS", "--fail", "--max-time", "120", "-o", str(down),
        f"http://10.203.0.2/bytes/{SIZE}", timeout=150,
    )
    assert down.read_bytes() == pattern(SIZE)
    counters = stats(stack)
    # About 1% of ~1400 segments each way are lost: recovery repairs them.
    assert counters.get("TCPSackRecovery", 0) >= 1
    assert counters.get("TCPTimeouts", 0) <= 3, counters


@pytest.mark.parametrize("offload", [False, True])
def test_bbr_download_on_the_mixed_path_is_intact(
    offload: bool, ustack_up: UstackUp, tmp_path: Path
) -> None:
    """BBR paces (with offload, ~1 ms super-segments) through loss,
    duplication and reordering; curl gets every byte in order."""
    stack = ustack_up(
        *(() if offload else ("--no-offload",)),
        "--services",
        "http",
        "--set",
        "congestion=bbr",
        "--impair",
        "loss=5%,dup=2%,reorder=5%,delay=5ms,seed=3",
    )
    down = tmp_path / "down.bin"
    stack.run(
        "curl", "-sS", "--fail", "--max-time", "120", "-o", str(down),
        f"http://10.203.0.2/bytes/{SIZE}", timeout=150,
    )
    assert down.read_bytes() == pattern(SIZE)
    assert stats(stack).get("TCPSackRecovery", 0) >= 1
