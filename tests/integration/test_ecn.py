"""ECN (RFC 3168) against the kernel's TCP, seen by tshark in ustack's own
capture. The kernel side runs with net.ipv4.tcp_ecn=1 (network sysctls are
per namespace: it is set in the test's namespace only), so it asks for ECN
on its active opens; ustack, with its default ecn=2, agrees as a server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns import Netns, UstackProcess, ustack_command

pytestmark = pytest.mark.integration

UstackUp = Callable[..., UstackProcess]
USTACK = "10.203.0.2"
ECE, CWR = 0x40, 0x80

# A kernel client holding a connection to ustack's discard service open
# while `ustack ss` looks at it, then sending `n` bytes through it.
UPLOAD = """
import socket, subprocess, sys
n = int(sys.argv[1])
s = socket.create_connection(("10.203.0.2", 9), timeout=20)
print(subprocess.run(sys.argv[2:], capture_output=True, text=True).stdout, flush=True)
s.sendall(bytes(n))
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
"""


def kernel_asks_for_ecn(ns: Netns) -> None:
    ns.run("sysctl", "-qw", "net.ipv4.tcp_ecn=1")
    assert ns.run("sysctl", "-n", "net.ipv4.tcp_ecn").stdout.strip() == b"1"


@dataclass(frozen=True)
class Seg:
    src: str
    flags: int
    ecn: int
    len: int
    rexmit: bool


def segments(capture: Path) -> list[Seg]:
    """Every TCP segment in the capture: source, flags, IP ECN field, length,
    and whether it is a retransmission (it starts below the highest sequence
    number its sender had sent on that connection)."""
    out = subprocess.run(
        [
            "tshark", "-r", str(capture), "-Y", "tcp", "-T", "fields",
            "-e", "ip.src", "-e", "tcp.flags", "-e", "ip.dsfield.ecn",
            "-e", "tcp.len", "-e", "tcp.srcport", "-e", "tcp.seq",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    rows: list[Seg] = []
    sent_up_to: dict[tuple[str, str], int] = {}
    for line in out.splitlines():
        src, flags, ecn, length, port, seq = line.split("\t")
        end = int(seq) + int(length)  # tshark's relative sequence numbers
        highest = sent_up_to.get((src, port), 0)
        sent_up_to[(src, port)] = max(highest, end)
        rexmit = int(length) > 0 and int(seq) < highest
        rows.append(Seg(src, int(flags, 16), int(ecn), int(length), rexmit))
    return rows


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json", timeout=30).stdout
    counters: dict[str, int] = json.loads(out)
    return counters


def download(stack: UstackProcess, tmp_path: Path, size: int) -> None:
    down = tmp_path / "down.bin"
    stack.run(
        "curl", "-sS", "--fail", "--max-time", "60", "-o", str(down),
        f"http://{USTACK}/bytes/{size}", timeout=90,
    )
    assert down.stat().st_size == size


def test_ecn_negotiated_with_the_kernel(
    netns: Netns, ustack_up: UstackUp, tmp_path: Path
) -> None:
    kernel_asks_for_ecn(netns)
    capture = tmp_path / "ecn.pcap"
    stack = ustack_up("--pcap", str(capture))
    download(stack, tmp_path, 200_000)
    ss_json = [*ustack_command(), "ss", "--json"]
    upload = stack.python(UPLOAD, "100000", *ss_json, timeout=60).stdout.decode()
    rows = json.loads(upload)
    conn = next(r for r in rows if r["local"].endswith(":9") and r["state"] == "ESTAB")
    assert conn["ecn"] is True
    counters = stats(stack)
    assert counters["InECT0Pkts"] > 0 and counters["InCEPkts"] == 0
    assert stack.stop() == 0
    segs = segments(capture)
    syns = [s for s in segs if s.flags == 0x02 | ECE | CWR]
    synacks = [s for s in segs if s.flags & 0x12 == 0x12]
    assert len(syns) == 2 and all(s.src == "10.203.0.1" for s in syns)
    # RFC 3168 6.1.1: ECN-setup SYN (ECE+CWR), SYN-ACK with ECE alone, not ECT.
    assert len(synacks) == 2
    assert all(s.flags & (ECE | CWR) == ECE and s.src == USTACK for s in synacks)
    assert all(s.ecn == 0 for s in syns + synacks)
    ours = [s for s in segs if s.src == USTACK and not s.flags & 0x02]
    theirs = [s for s in segs if s.src != USTACK and not s.flags & 0x02]
    # ustack's new data is ECT(0); its pure ACKs (RFC 3168 6.1.4) and any
    # retransmission (6.1.5: one may come on a loaded machine) are not.
    assert [s for s in ours if s.len and not s.rexmit]
    assert all(s.ecn == 2 for s in ours if s.len and not s.rexmit)
    assert all(s.ecn == 0 for s in ours if not s.len or s.rexmit)
    # The kernel agrees: it sends its new data (the upload) as ECT(0), which
    # it does only once ECN is negotiated (Linux tcp_ecn_send).
    assert [s for s in theirs if s.len and not s.rexmit]
    assert all(s.ecn == 2 for s in theirs if s.len and not s.rexmit)


def test_ce_marks_get_echoed_and_both_senders_react(
    netns: Netns, ustack_up: UstackUp, tmp_path: Path
) -> None:
    """CE on ECT packets both ways (`--impair ecn=`): ustack echoes ECE to the
    kernel's CE-marked data and the kernel answers with CWR; the kernel echoes
    ECE to ustack's and ustack answers with CWR (RFC 3168 6.1.2-6.1.3)."""
    kernel_asks_for_ecn(netns)
    capture = tmp_path / "ce.pcap"
    stack = ustack_up(
        "--pcap", str(capture), "--impair", "ecn=3%,delay=2ms,seed=5"
    )
    download(stack, tmp_path, 1_000_000)
    stack.python(UPLOAD, "1000000", "true", timeout=60)
    counters = stats(stack)
    assert stack.stop() == 0
    segs = segments(capture)
    kernel = [s for s in segs if s.src != USTACK]
    ours = [s for s in segs if s.src == USTACK]
    assert any(s.ecn == 3 for s in kernel)  # the impairment marked them
    assert any(s.flags & ECE and not s.flags & 0x02 for s in ours)
    assert any(s.flags & CWR and not s.flags & 0x02 for s in kernel)
    assert any(s.flags & ECE and not s.flags & 0x02 for s in kernel)
    assert any(s.flags & CWR and not s.flags & 0x02 for s in ours)
    assert counters["InCEPkts"] > 0 and counters["TCPDeliveredCE"] > 0
    assert counters["InECT0Pkts"] > 0
