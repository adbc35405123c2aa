"""Bulk HTTP transfers through `ustack up --impair` against the kernel's TCP
(curl): POST /sha256 (kernel -> ustack) and GET /bytes/N (ustack -> kernel).

The per-commit size is small (see SIZE); USTACK_LONG=1 runs the 50 MB
version of the issue (minutes per seed with this loss rate).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import UstackProcess

pytestmark = pytest.mark.integration

BASE = "http://10.203.0.2"
SPEC = "loss=5%,dup=2%,reorder=5%,delay=5ms"
SIZE = 50_000_000 if os.environ.get("USTACK_LONG") == "1" else 2_000_000
UstackUp = Callable[..., UstackProcess]


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_way_intact_through_impaired_link(
    seed: int, ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up("--services", "http", "--impair", f"{SPEC},seed={seed}")
    body = tmp_path / "body.bin"
    data = random.Random(seed).randbytes(SIZE)
    body.write_bytes(data)
    limit = "600" if SIZE > 10_000_000 else "120"
    up = stack.run(
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        limit,
        "--data-binary",
        f"@{body}",
        f"{BASE}/sha256",
        timeout=float(limit) + 30,
    )
    assert up.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()
    down = tmp_path / "down.bin"
    stack.run(
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        limit,
        "-o",
        str(down),
        f"{BASE}/bytes/{SIZE}",
        timeout=float(limit) + 30,
    )
    got = down.read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(pattern(SIZE)).digest()
    assert stack.stop() == 0
    counters = stack.errors()
    for key in ("in.loss", "out.loss", "in.dup", "out.dup", "in.reorder"):
        assert f"{key}=" in counters, counters
