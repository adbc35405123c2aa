"""A bounded SYN flood against a live `ustack up` while a kernel client
connects and downloads: the client gets in (SYN cookies), the download is
intact, ustack's memory stays bounded, and the counters show the cookies.

The flood: 20,000 SYNs from random addresses of 10.203.0.0/24 (never .1 or
.2) at 5,000 per second, written into the TUN device inside the test's
namespace (tools/synflood.py). ustack's SYN-ACKs to those addresses reach
the kernel, which owns none of them and does not forward (ip_forward is 0
in a fresh namespace): they are dropped there.

How much of the flood ustack must have handled is measured against what the
TUN device delivered, not against the 20,000 sent: on a slow CPU (a VM under
qemu's TCG) ustack reads more slowly than the flooder writes, and the kernel
drops the excess at the TUN's queue, counted as the device's TX drops. Every
SYN not dropped there was delivered, and each of those must show up as a
received packet and as a SYN cookie or a half-open connection. A stack that
dropped what it read, or stopped reading, fails those bars or the download.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
SIZE = 5_000_000
FLOOD = 20_000
UstackUp = Callable[..., UstackProcess]
SYNFLOOD = Path(__file__).resolve().parents[2] / "tools" / "synflood.py"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json").stdout
    counters: dict[str, int] = json.loads(out)
    return counters


def tun_tx(stack: UstackProcess) -> tuple[int, int]:
    """Packets the kernel queued towards ustack on ustack0 and ustack read,
    and packets it dropped on the way: at the TUN's own queue (the device's
    TX drops) or in the qdisc in front of it (whichever kernel version
    queues where)."""
    link = stack.run("ip", "-s", "-j", "link", "show", "ustack0").stdout
    tx = json.loads(link)[0]["stats64"]["tx"]
    qdiscs = stack.run("tc", "-s", "-j", "qdisc", "show", "dev", "ustack0").stdout
    qdisc_drops = sum(q.get("drops", 0) for q in json.loads(qdiscs))
    return int(tx["packets"]), int(tx["dropped"]) + qdisc_drops


def pattern_sha256(n: int) -> str:
    period = bytes(range(251))
    return hashlib.sha256((period * (n // 251 + 1))[:n]).hexdigest()


def test_syn_flood_with_a_legitimate_download(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up("--set", "max_syn_backlog=128")
    forward = stack.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()
    assert forward == b"0", "the namespace would forward the SYN-ACKs"
    pid = stack.proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"up" in cmdline.split(b"\0"), cmdline  # the stack itself, not a wrapper
    rss_before = rss_kib(pid)
    before = stats(stack)
    tx_before = tun_tx(stack)

    flood = stack.ns.popen(
        sys.executable,
        str(SYNFLOOD),
        "--count",
        str(FLOOD),
        "--rate",
        "5000",
        "--seed",
        "4",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    body = tmp_path / "body"
    try:
        # Wait until the flood is well under way (SYN queue full), then connect.
        stack.run("sleep", "1")
        mid = stats(stack)
        curl = stack.run(
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "90",
            "-o",
            str(body),
            "-w",
            "%{time_connect}",
            f"http://{STACK}/bytes/{SIZE}",
            timeout=120,
        )
        flood_running_during_download = flood.poll() is None
        out, err = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(10)
    assert flood.returncode == 0, err.decode(errors="replace")
    report = json.loads(out)
    rss_peak = rss_kib(pid)
    after = stats(stack)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    tx_after = tun_tx(stack)
    read = tx_after[0] - tx_before[0]  # taken by ustack
    dropped = tx_after[1] - tx_before[1]  # the queue was full
    # Drops may hit the download's packets too: at least this many SYNs got in.
    delivered = FLOOD - dropped

    print(f"flood: {report}; curl connect time {curl.stdout.decode()} s")
    print(
        f"VmRSS before {rss_before} KiB, after flood {rss_peak} KiB "
        f"(+{rss_peak - rss_before} KiB)"
    )
    print(f"TUN: ustack read {read} packets, the queue dropped {dropped}")
    print("counters:", json.dumps({k: v for k, v in sorted(diff.items()) if v}))

    assert report["sent"] == FLOOD
    assert mid.get("SyncookiesSent", 0) > 0, "the SYN queue was not full yet"
    assert flood_running_during_download or mid.get("SyncookiesSent", 0) > 0
    assert body.stat().st_size == SIZE
    assert hashlib.sha256(body.read_bytes()).hexdigest() == pattern_sha256(SIZE)
    assert diff["SyncookiesSent"] > 0
    assert delivered > 128, "the TUN dropped nearly the whole flood"
    assert diff["InReceives"] >= read >= delivered
    # 128 half-open connections at most: everything else was a cookie.
    assert diff["PassiveOpens"] <= 128 + 10 + diff.get("SyncookiesRecv", 0)
    assert diff["SyncookiesSent"] + diff["PassiveOpens"] >= delivered
    assert rss_peak - rss_before < 100 * 1024, "memory grew by more than 100 MB"
    assert stack.proc.poll() is None, stack.describe()
