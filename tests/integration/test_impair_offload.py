"""`ustack up --offload --impair loss=...` against the kernel: super segments
are cut into wire packets both ways, the transfers complete, and the
impairment counters count wire-sized packets."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import UstackProcess

pytestmark = pytest.mark.integration

BASE = "http://10.203.0.2"
SIZE = 2_000_000
UstackUp = Callable[..., UstackProcess]


def pattern(n: int) -> bytes:
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def kernel_csum_errors(stack: UstackProcess) -> int:
    lines = stack.run("cat", "/proc/net/snmp").stdout.decode().splitlines()
    tcp = [ln.split()[1:] for ln in lines if ln.startswith("Tcp:")]
    return int(dict(zip(tcp[0], tcp[1], strict=True))["InCsumErrors"])


def test_offload_impairment_cuts_super_segments(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up("--offload", "--impair", "loss=1%,seed=5")
    got = stack.run(
        "curl", "-sS", "--fail", "--max-time", "60", f"{BASE}/bytes/{SIZE}", timeout=70
    ).stdout
    assert got == pattern(SIZE)
    body = tmp_path / "body"
    data = os.urandom(SIZE)
    body.write_bytes(data)
    answer = stack.run(
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "60",
        "--data-binary",
        f"@{body}",
        f"{BASE}/sha256",
        timeout=70,
    ).stdout
    assert answer.decode().strip() == hashlib.sha256(data).hexdigest()
    # Every piece written to the kernel had a checksum the kernel completed.
    assert kernel_csum_errors(stack) == 0
    assert stack.stop() == 0
    line = next(
        ln for ln in stack.errors().splitlines() if "impairment counters:" in ln
    )
    counters = {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}
    wire_packets = SIZE // 1460
    # Both directions carried 64 KB super segments (offload on) and cut them:
    # the packets impaired are at least one per MSS of data, not one per 64 KB.
    assert counters.get("out.gso_split", 0) > 0, line
    assert counters.get("in.gso_split", 0) > 0, line
    assert counters["out.packets"] >= wire_packets, line
    assert counters["in.packets"] >= wire_packets, line
    assert counters.get("out.loss", 0) > 0 and counters.get("in.loss", 0) > 0, line
