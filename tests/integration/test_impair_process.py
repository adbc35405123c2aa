"""`ustack up --impair SPEC --impair-process` against the kernel: the path
runs in its own process, transfers complete through it both ways, and the
stack's exit summary still shows the path's counters (sent back by the
child at shutdown)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import UstackProcess

from ustack.services.http_app import pattern_bytes

pytestmark = pytest.mark.integration

BASE = "http://10.203.0.2"
SIZE = 1_000_000
UstackUp = Callable[..., UstackProcess]


@pytest.mark.parametrize("offload", ["--no-offload", "--offload"])
def test_impair_process_serves_and_reports_counters(
    ustack_up: UstackUp, tmp_path: Path, offload: str
) -> None:
    stack = ustack_up(
        offload,
        "--impair",
        "loss=1%,delay=5ms,rate=50mbit,seed=3",
        "--impair-process",
        "--services",
        "http",
    )
    # The path is another process in the namespace, child of `ustack up`.
    ps = stack.run("ps", "-eo", "ppid,args").stdout.decode()
    assert any(
        "ustack.link.impair_proc" in line and line.split()[0] == str(stack.proc.pid)
        for line in ps.splitlines()
    ), ps
    got = stack.run(
        "curl", "-sS", "--fail", "--max-time", "60", f"{BASE}/bytes/{SIZE}", timeout=70
    ).stdout
    assert got == pattern_bytes(SIZE)
    body = tmp_path / "body"
    data = os.urandom(SIZE)
    body.write_bytes(data)
    answer = stack.run(
        "curl", "-sS", "--fail", "--max-time", "60", "--data-binary",
        f"@{body}", f"{BASE}/sha256", timeout=70,
    ).stdout
    assert answer.decode().strip() == hashlib.sha256(data).hexdigest()
    assert stack.stop() == 0
    errors = stack.errors()
    assert "impairment (own process): " in errors, errors
    line = next(ln for ln in errors.splitlines() if "impairment counters:" in ln)
    counters = {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}
    wire_packets = SIZE // 1460
    assert counters["out.packets"] >= wire_packets, line
    assert counters["in.packets"] >= wire_packets, line
    assert counters["out.delivered"] > 0 and counters["in.delivered"] > 0, line
    assert counters.get("out.loss", 0) > 0 and counters.get("in.loss", 0) > 0, line
    if offload == "--offload":
        assert counters.get("out.gso_split", 0) > 0, line
    assert "did not exit" not in line and "no counters" not in line, line
