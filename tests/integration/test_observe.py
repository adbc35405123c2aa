"""Observing ustack from outside: `ustack up --pcap` read back by tshark,
`ustack ss` / `ustack stats` over the control socket, `ustack trace FILE`.

Connections are held in FIN-WAIT-2, TIME-WAIT and CLOSE-WAIT on purpose by
kernel-side Python clients that decide when to close.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netns import UstackProcess, ustack_command

from ustack.observe.pcap import read_pcap_file

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
UstackUp = Callable[..., UstackProcess]


def ustack(stack: UstackProcess, *args: str) -> str:
    return stack.run(*ustack_command(), *args, timeout=30).stdout.decode()


def ss_json(stack: UstackProcess, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ustack(stack, "ss", "--json", *args))
    return rows


def held_client(stack: UstackProcess, body: str, port: int) -> subprocess.Popen[bytes]:
    """A kernel client that prints a line when it is in position, then waits
    for a line on stdin before its final step."""
    code = (
        "import socket, sys\n"
        f"s = socket.create_connection(({STACK!r}, {port}), timeout=20)\n"
        + textwrap.dedent(body)
    )
    return stack.ns.popen(
        sys.executable,
        "-c",
        code,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def step(proc: subprocess.Popen[bytes], expect: bytes) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded by the client's socket timeout
    assert line.strip() == expect, (line, proc.stderr.read() if proc.stderr else b"")


def release(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


# HTTP/1.0: ustack's http service closes first, after the response.
HTTP10_CLIENT = """
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
while s.recv(65536):
    pass
print("eof", flush=True)
sys.stdin.readline()  # hold our side open: ustack waits in FIN-WAIT-2
s.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def test_ss_shows_fin_wait_2_then_time_wait_counting_down(ustack_up: UstackUp) -> None:
    stack = ustack_up("--set", "msl=30", "--set", "fin_timeout=60")
    proc = held_client(stack, HTTP10_CLIENT, 80)
    try:
        step(proc, b"eof")
        stack.ns.wait_tcp_state("CLOSE-WAIT", peer=f"{STACK}:80")
        (row,) = ss_json(stack, "--state", "fin-wait-2")
        assert row["local"] == f"{STACK}:80" and row["peer"].startswith("10.203.0.1:")
        assert row["orphan"] is True  # the service closed its socket
        assert row["timer"] == "fin_wait2" and 0 < row["timer_left"] <= 60
        assert row["recv_q"] == 0 and row["send_q"] == 0
        release(proc)
        step(proc, b"closed")
        rows = _wait_rows(stack, "time-wait")
        (first,) = rows
        assert first["peer"] == row["peer"] and first["timer"] == "timewait"
        assert 0 < first["timer_left"] <= 60
        (second,) = ss_json(stack, "--state", "time-wait", "--port", "80")
        assert second["timer_left"] < first["timer_left"]  # counting down
        assert ss_json(stack, "--state", "fin-wait-2") == []
        # The plain table: ss's names and `ss -o`'s timer column.
        table = ustack(stack, "ss", "--state", "time-wait")
        header, line = table.splitlines()
        assert header.split()[:3] == ["State", "Recv-Q", "Send-Q"]
        assert line.split()[0] == "TIME-WAIT" and "timer:(timewait," in line
        release(proc)
    finally:
        proc.kill()
        proc.wait(10)


def _wait_rows(stack: UstackProcess, state: str) -> list[dict[str, Any]]:
    for _ in range(200):
        rows = ss_json(stack, "--state", state)
        if rows:
            return rows
    raise AssertionError(f"no {state} row in ustack ss")


CHARGEN_HALF_CLOSE = """
s.shutdown(socket.SHUT_WR)
assert s.recv(100)
print("half-closed", flush=True)
sys.stdin.readline()  # not reading: chargen fills the window
s.close()
"""


def test_ss_shows_close_wait_after_peer_half_close(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    proc = held_client(stack, CHARGEN_HALF_CLOSE, 19)
    try:
        step(proc, b"half-closed")
        (row,) = _wait_rows(stack, "close-wait")
        assert row["local"] == f"{STACK}:19" and row["state"] == "CLOSE-WAIT"
        assert row["orphan"] is False
        assert row["rto"] > 0 and row["cwnd"] > 0
        listen = ss_json(stack, "--state", "listen", "--port", "19")
        assert [r["local"] for r in listen] == [f"{STACK}:19"]
        assert ss_json(stack, "--port", "7") == [
            r for r in ss_json(stack) if r["local"].endswith(":7")
        ]
        release(proc)
    finally:
        proc.kill()
        proc.wait(10)


def test_stats_counts_traffic(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    before = json.loads(ustack(stack, "stats", "--json"))
    assert before["PassiveOpens"] == 0 and before["ActiveOpens"] == 0
    stack.run("curl", "-sf", "-o", "/dev/null", f"http://{STACK}/", timeout=30)
    stack.run("nc", "-z", "-w", "5", STACK, "4242", check=False, timeout=30)  # RST
    after = json.loads(ustack(stack, "stats", "--json"))
    assert after["PassiveOpens"] == 1
    assert after["InSegs"] >= 5 and after["OutSegs"] >= 4
    assert after["OutRsts"] >= 1
    plain = ustack(stack, "stats").splitlines()
    names = [line.split()[0] for line in plain[1:]]
    assert names == sorted(names) and "PassiveOpens" in names


def test_control_socket_is_root_only_and_removed_on_exit(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    path = Path(f"/run/ustack/ustack0@{stack.ns.name}.sock")
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert stack.stop() == 0
    assert not path.exists()
    out = stack.run(*ustack_command(), "ss", check=False, timeout=30)
    assert out.returncode == 1 and b"no `ustack up` is running" in out.stderr


def test_pcap_read_back_by_tshark(ustack_up: UstackUp, tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark not installed: run .ci/setup.sh"
    pcap = tmp_path / "cap.pcap"
    stack = ustack_up("--pcap", str(pcap))
    body = stack.run("curl", "-sf", f"http://{STACK}/bytes/20000", timeout=30).stdout
    assert len(body) == 20000
    assert stack.stop() == 0
    ours = read_pcap_file(str(pcap))
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "ip.src",
            "-e",
            "tcp.flags.str",
            "-e",
            "tcp.len",
            "-e",
            "tcp.checksum.status",
            "-e",
            "ip.checksum.status",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    rows = [line.split(",") for line in out.splitlines()]
    assert len(rows) == len(ours) >= 10
    flags = [(src, f.replace("\u00b7", "")) for src, f, *_ in rows]
    assert flags[0] == ("10.203.0.1", "S")  # tshark's flags string, e.g. ·······A··S·
    assert flags[1] == (STACK, "AS")
    assert sum(f.endswith("F") for _, f in flags) == 2  # one FIN each way
    assert {src for src, f in flags if f.endswith("F")} == {STACK, "10.203.0.1"}
    assert not any("R" in f for _, f in flags)
    assert sum(int(r[2]) for r in rows if r[0] == STACK) > 20000  # headers + body
    assert {r[3] for r in rows} == {"1"} and {r[4] for r in rows} == {"1"}  # good
    # ustack's own reader draws it: one connection, handshake and close.
    ladder = ustack(stack, "trace", str(pcap), "--port", "80").splitlines()
    assert ladder[0].startswith("connection 1: 10.203.0.1:")
    assert "SYN seq=0 len=0" in ladder[2] and "SYN,ACK seq=0 ack=1" in ladder[3]
    assert ladder[-1].split()[1] in ("TIME_WAIT", "CLOSED")
    svg = tmp_path / "ladder.svg"
    ustack(stack, "trace", str(pcap), "--svg", str(svg))
    assert svg.read_text().startswith("<svg")


# Read 2 MB of chargen (ustack is the sender), then hold the connection open.
CHARGEN_READ_AND_HOLD = """
got = 0
while got < 2_000_000:
    got += len(s.recv(65536))
print("read", flush=True)
sys.stdin.readline()
s.close()
"""


@pytest.mark.parametrize("congestion", ["bbr", "cubic"])
def test_ss_shows_bbr_and_pacing_of_a_live_sender(
    ustack_up: UstackUp, congestion: str
) -> None:
    """`ustack ss` through the real CLI and control socket, on a connection
    ustack is sending on: BBR's model and the pacing and delivery rates, as
    Linux's `ss -i` prints them (`bbr:(bw:...,mrtt:...,pacing_gain:...,
    cwnd_gain:...)`, `pacing_rate`, `delivery_rate`); none for CUBIC."""
    stack = ustack_up("--set", f"congestion={congestion}")
    proc = held_client(stack, CHARGEN_READ_AND_HOLD, 19)
    try:
        step(proc, b"read")
        text = ustack(stack, "ss", "-H", "sport", "=", ":19")
        (row,) = [
            r for r in ss_json(stack)
            if r["local"] == f"{STACK}:19" and r["state"] == "ESTAB"
        ]
    finally:
        release(proc)
        proc.wait(30)
    assert f"{STACK}:19" in text, text
    if congestion == "bbr":
        assert row["bbr"]["bw"] > 0 and row["bbr"]["mrtt"] > 0
        assert row["pacing_rate"] > 0 and row["delivery_rate"] > 0
        for cell in ("bbr:(bw:", ",mrtt:", "pacing_gain:", "cwnd_gain:",
                     "pacing_rate ", "delivery_rate "):
            assert cell in text, (cell, text)
    else:
        assert row["bbr"] is None and row["pacing_rate"] is None
        assert "bbr:" not in text and "pacing_rate" not in text
