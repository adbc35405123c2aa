"""Every CLI error is one `ustack: ...` line naming what to change, with exit
status 2 (usage) or 1 (the command failed), and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ustack import cli
from ustack.cli import common
from ustack.errors import SetupError
from ustack.observe.pcap import PcapWriter


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("ustack: ") and "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["up", "--ip", "10.203.0.300"], "--ip '10.203.0.300' is not an IPv4"),
        (["up", "--host-ip", "foo"], "--host-ip 'foo' is not an IPv4"),
        (["up", "--host-ip", "10.203.0.1/33"], "--host-ip '10.203.0.1/33'"),
        (["up", "--host-ip", "10.203.0.1"], "needs a prefix length"),
        (["up", "--host-ip", "10.203.0.1/31"], "leaves no room"),
        (["up", "--ip", "10.203.0.1"], "--ip 10.203.0.1 is the kernel side's"),
        (["up", "--ip", "10.9.0.2"], "--ip 10.9.0.2 is outside --host-ip's subnet"),
        (["up", "--ip", "10.203.0.255"], "network/broadcast"),
        (["up", "--host-ip", "127.0.0.1/8", "--ip", "127.0.0.2"], "loopback"),
        (["get", "--host-ip", "224.0.0.1/24", "http://10.0.0.1/"], "multicast"),
        (["up", "--mtu", "70000"], "--mtu 70000: must be between 68 and 65535"),
        (["up", "--mtu", "20"], "--mtu 20"),
        (["up", "--ifname", "a-very-long-interface"], "--ifname"),
        (["up", "--set", "msl=-1"], "setting msl must be >= 0, got -1"),
        (["up", "--set", "wscale=15"], "setting wscale must be between 0 and 14"),
        (["up", "--set", "sack=maybe"], "setting sack wants a bool"),
        (["up", "--set", "msl=nan"], "setting msl wants a float"),
        (["up", "--set", "rto_min=5", "--set", "rto_max=1"], "rto_min (5) exceeds"),
        (["up", "--set", "port_low=9", "--set", "port_high=8"], "port_low (9)"),
        (["up", "--pcap", "/nonexistent/x.pcap"], "--pcap /nonexistent/x.pcap"),
        (["up", "--netns", "bad/name"], "--netns 'bad/name'"),
        (["nc", "10.203.0.1"], "usage: ustack nc HOST PORT"),
        (["nc", "10.203.0.1", "99999"], "port '99999' must be 1..65535"),
        (["nc", "-l", "-z", "7"], "-z and -l"),
        (["nc", "-l", "10.9.9.9", "7"], "listens only on its --ip"),
        (["nc", "-w", "0", "10.203.0.1", "7"], "-w 0"),
        (["get", "http://nosuchhost.invalid/"], "not in /etc/hosts"),
        (["get", "-H", "no colon", "http://10.0.0.1/"], "-H 'no colon'"),
        (["get", "-I", "-X", "POST", "http://10.0.0.1/"], "-I asks HEAD"),
        (["get", "-d", "@/nonexistent/f", "http://10.0.0.1/"], "-d @/nonexistent"),
        (["get", "--connect-timeout", "-1", "http://10.0.0.1/"], "--connect-timeout"),
        (["get", "-o", "/nonexistent/x", "http://10.0.0.1/"], "-o /nonexistent/x"),
        (["ss", "state", "bogus"], "unknown state 'bogus'"),
        (["ss", "dport", "eq", "http"], "dport 'http' is not a port"),
        (["ss", "frobnicate"], "unknown word 'frobnicate'"),
        (["ss", "dst", "10.0.0.300"], "dst '10.0.0.300'"),
        (["trace", "--host", "foo"], "--host 'foo'"),
        (["trace", "-c", "0"], "--count 0"),
        (["trace", "-w", "/nonexistent/x.pcap"], "-w /nonexistent/x.pcap"),
    ],
)
def test_usage_error_is_one_line_exit_2(
    argv: list[str], expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert expect in one_line(capsys.readouterr().err)


def test_device_and_subnet_collisions_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ipaddress

    devices = {
        "lo": [ipaddress.IPv4Interface("127.0.0.1/8")],
        "ustack0": [ipaddress.IPv4Interface("10.203.0.1/24")],
    }
    monkeypatch.setattr(common, "_kernel_devices", lambda: devices)
    with pytest.raises(SetupError, match="device ustack0 already exists"):
        common.check_free("ustack0", "10.203.0.1/24", "10.203.0.2")
    with pytest.raises(SetupError, match="10.203.0.1/24 is already on ustack0"):
        common.check_free("ustack1", "10.203.0.1/24", "10.203.0.2")
    with pytest.raises(SetupError, match="already on ustack0"):
        common.check_free("ustack1", "10.203.0.0/16", "10.203.9.2")
    common.check_free("ustack1", "10.204.0.1/24", "10.204.0.2")  # free


def test_kernel_devices_reads_this_namespace() -> None:
    devices = common._kernel_devices()
    assert "lo" in devices  # every namespace has lo


def test_collision_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ipaddress

    devices = {"ustack0": [ipaddress.IPv4Interface("10.203.0.1/24")]}
    monkeypatch.setattr(common, "_kernel_devices", lambda: devices)
    assert cli.main(["up"]) == 1
    assert "already exists" in one_line(capsys.readouterr().err)


def test_stale_control_socket_says_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ustack0.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: what a crash leaves behind
    assert cli.main(["ss", "--control", str(path)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "ustack up is not running (stale control socket" in line


def test_missing_control_socket_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["stats", "--control", str(tmp_path / "none.sock")]) == 1
    assert "is `ustack up` running" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"", "empty file"),
        (b"GET / HTTP/1.0\r\n\r\n" * 3, "not a pcap or pcapng file"),
        (b"\xd4\xc3", "not a pcap or pcapng file"),
        (b"\x0a\x0d\x0d\x0a" + b"\0" * 8, "bad byte-order magic"),
    ],
)
def test_trace_of_a_bad_file_is_one_line(
    content: bytes, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    assert cli.main(["trace", str(path)]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(path) in line and expect in line


def test_trace_of_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["trace", str(tmp_path / "none.pcap")]) == 1
    assert "No such file" in one_line(capsys.readouterr().err)


def _syn(src_port: int) -> bytes:
    from ustack.wire.ipv4 import build_tcp_packet
    from ustack.wire.tcp import SYN, TcpSegment

    seg = TcpSegment(src_port, 80, 1000, 0, SYN, 1024)
    return build_tcp_packet(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), seg, 0)


def test_trace_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`ustack trace FILE | head -1`: no "Broken pipe" message, and the exit
    status of a process ended by SIGPIPE (like cat or tcpdump)."""
    path = tmp_path / "many.pcap"
    with path.open("wb") as f:
        writer = PcapWriter(f)
        for i in range(3000):  # far more lines than a pipe buffer holds
            writer.write(1.0 + i / 1000, _syn(40000 + i))
        writer.flush()
    script = (
        f"{sys.executable} -m ustack trace {path} 2>{tmp_path}/err"
        " | head -1 >/dev/null; echo ${PIPESTATUS[0]}"
    )
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[2])},
    )
    assert out.stdout.strip() == str(128 + 13), out
    assert (tmp_path / "err").read_text() == ""


def test_os_errors_read_as_one_plain_phrase() -> None:
    import errno

    from ustack.errors import os_error

    refused = os_error(errno.ECONNREFUSED, "connection refused by peer")
    assert common.describe_os_error(refused).startswith("connection refused (")
    assert "Connection refused" not in common.describe_os_error(refused)
    reset = os_error(errno.EPIPE, "broken pipe")
    assert common.describe_os_error(reset) == "Broken pipe"
    other = os_error(errno.ENOBUFS, "the stack holds max_connections=3")
    assert common.describe_os_error(other) == (
        "No buffer space available: the stack holds max_connections=3"
    )
