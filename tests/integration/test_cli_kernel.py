"""The newcomer's CLI against the kernel: `up --netns`, collisions, `nc -l/-z`,
live `trace -c/-w/--host`, the stack stopping under `trace`, pcapng from
tshark. Every packet stays in a namespace the test created (and deletes)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import USTACK_DEFAULT_ARGS, Netns, UstackProcess, ustack_command

from ustack.observe.pcap import read_pcap_file

pytestmark = pytest.mark.integration

NETNS_DIR = Path("/run/netns")
UstackUp = Callable[..., UstackProcess]


def wait_for(proc: subprocess.Popen[bytes], path: Path, text: str) -> str:
    """Wait until `text` appears in the file `proc` writes to (or it exits)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared: {path.read_text()!r}")


def _up_netns(
    name: str, tmp_path: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*ustack_command(), "up", "--netns", name, "--set", "msl=0.5", *extra],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    return proc, out, err


def _cleanup(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if (NETNS_DIR / name).exists():
        Netns(name).delete()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_up_netns_serves_inside_and_deletes_it(
    stop: signal.Signals, tmp_path: Path
) -> None:
    name = f"ustack-t-{secrets.token_hex(4)}"
    proc, out, err = _up_netns(name, tmp_path)
    try:
        ready = wait_for(proc, out, "ready")
        assert f"in netns {name}" in ready
        # The hint goes to stderr, which may be written after "ready".
        wait_for(proc, err, f"ip netns exec {name}")
        ns = Netns(name)
        body = ns.run("curl", "-s", "--max-time", "20", "http://10.203.0.2/bytes/10")
        assert body.stdout == bytes(range(10))
        # The kernel side lives in the namespace, not in this one.
        assert b"10.203.0.1/24" in ns.run("ip", "-4", "addr", "show", "ustack0").stdout
        here = subprocess.run(["ip", "-4", "addr"], capture_output=True).stdout
        assert b"10.203.0.1/24" not in here or name in here.decode()
        # `ustack ss` finds the stack by itself inside the namespace.
        table = ns.run(*ustack_command(), "ss", "-H", "-l").stdout.decode()
        assert "10.203.0.2:80" in table and "State" not in table
        proc.send_signal(stop)
        assert proc.wait(30) == 0, err.read_text()
        assert not (NETNS_DIR / name).exists()
    finally:
        _cleanup(name, proc)


def test_up_netns_deleted_after_an_error(tmp_path: Path) -> None:
    name = f"ustack-t-{secrets.token_hex(4)}"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc, out, err = _up_netns(name, tmp_path, "--control", f"{blocker}/x.sock")
    try:
        assert proc.wait(30) == 1
        lines = err.read_text().strip().splitlines()
        assert lines[-1].startswith("ustack: ") and "Traceback" not in err.read_text()
        assert not (NETNS_DIR / name).exists()
    finally:
        _cleanup(name, proc)


def test_up_netns_refuses_an_existing_namespace(netns: Netns, tmp_path: Path) -> None:
    proc, out, err = _up_netns(netns.name, tmp_path)
    try:
        assert proc.wait(30) == 1
        assert f"network namespace {netns.name} already exists" in err.read_text()
        assert (NETNS_DIR / netns.name).exists()  # not ours: left alone
    finally:
        if proc.poll() is None:
            proc.kill()


def test_second_up_on_the_same_device_is_refused(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    out = stack.ns.run(*ustack_command(), "up", *USTACK_DEFAULT_ARGS, check=False)
    assert out.returncode == 1
    line = out.stderr.decode().strip()
    assert line.startswith("ustack: network device ustack0 already exists")
    other = ("--ifname", "ustack1", "--host-ip", "10.203.0.5/16", "--ip", "10.203.9.9")
    out = stack.ns.run(*ustack_command(), "up", *other, check=False)
    assert out.returncode == 1
    assert "10.203.0.1/24 is already on ustack0" in out.stderr.decode()


NC_ARGS = (*USTACK_DEFAULT_ARGS, "--set", "msl=0.5")


def test_nc_listen_serves_one_kernel_client(netns: Netns, tmp_path: Path) -> None:
    err = tmp_path / "nc.err"
    with err.open("wb") as e:
        nc = netns.popen(
            *ustack_command(),
            "nc",
            "-l",
            "-v",
            "5000",
            *NC_ARGS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=e,
        )
    try:
        wait_for(nc, err, "listening on 10.203.0.2 5000")
        client = textwrap.dedent(
            """
            import socket
            s = socket.create_connection(("10.203.0.2", 5000), timeout=20)
            s.sendall(b"hello from the kernel")
            got = b""
            while chunk := s.recv(65536):  # to ustack nc's FIN (its stdin's EOF)
                got += chunk
            s.close()
            print(got.decode())
            """
        )
        kernel = netns.popen(sys.executable, "-c", client, stdout=subprocess.PIPE)
        wait_for(nc, err, "connection from 10.203.0.1")
        stdout, _ = nc.communicate(b"hello from ustack", timeout=30)
        assert stdout == b"hello from the kernel"
        assert nc.returncode == 0
        assert kernel.communicate(timeout=30)[0].strip() == b"hello from ustack"
    finally:
        if nc.poll() is None:
            nc.kill()
            nc.wait(10)


def test_nc_z_reports_open_and_refused(netns: Netns) -> None:
    server = netns.popen(
        sys.executable,
        "-c",
        "import socket, time\n"
        "s = socket.create_server(('0.0.0.0', 9000)); time.sleep(60)",
    )
    try:
        netns.wait_listening(9000)
        ok = netns.run(*ustack_command(), "nc", "-zv", "10.203.0.1", "9000", *NC_ARGS)
        assert ok.stderr.decode().strip() == (
            "ustack: connection to 10.203.0.1 9000 port succeeded"
        )
        refused = netns.run(
            *ustack_command(), "nc", "-z", "10.203.0.1", "9001", *NC_ARGS, check=False
        )
        assert refused.returncode == 1
        assert refused.stderr.decode().strip() == (
            "ustack: connect to 10.203.0.1 9001 failed: connection refused (the "
            "peer answered the SYN with RST: nothing listens there)"
        )
    finally:
        server.kill()
        server.wait(10)


def test_live_trace_count_write_and_host(ustack_up: UstackUp, tmp_path: Path) -> None:
    stack = ustack_up()
    capture, err = tmp_path / "live.pcap", tmp_path / "trace.err"
    with err.open("wb") as e:
        tracer = stack.ns.popen(
            *ustack_command(),
            "trace",
            "--host",
            "10.203.0.1",
            "--port",
            "80",
            "-c",
            "3",
            "-w",
            str(capture),
            stdout=subprocess.PIPE,
            stderr=e,
        )
    try:
        wait_for(tracer, err, "tracing ustack 10.203.0.2 port 80 host 10.203.0.1")
        stack.ns.run("curl", "-s", "--max-time", "20", "http://10.203.0.2/bytes/10")
        stdout, _ = tracer.communicate(timeout=30)
        assert tracer.returncode == 0  # stopped by itself after 3 segments
        text = stdout.decode()
        arrows = [line for line in text.splitlines() if " seq=" in line]
        assert len(arrows) == 3 and "SYN seq=0" in arrows[0]  # SYN, SYN-ACK, ACK
        assert "SYN,ACK" in arrows[1] and "ACK seq=1 ack=1" in arrows[2]
        packets = read_pcap_file(str(capture))
        assert len(packets) == 3
        assert all(p.packet[9] == 6 for p in packets)  # TCP
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait(10)


def test_live_trace_says_when_the_stack_stops(
    ustack_up: UstackUp, tmp_path: Path
) -> None:
    stack = ustack_up()
    err = tmp_path / "trace.err"
    with err.open("wb") as e:
        tracer = stack.ns.popen(
            *ustack_command(), "trace", stdout=subprocess.DEVNULL, stderr=e
        )
    try:
        wait_for(tracer, err, "tracing ustack")
        assert stack.stop() == 0
        assert tracer.wait(30) == 1
        last = err.read_text().strip().splitlines()[-1]
        assert last == "ustack: the stack stopped (its control socket closed)"
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait(10)


def test_trace_reads_tsharks_pcapng(ustack_up: UstackUp, tmp_path: Path) -> None:
    capture = tmp_path / "demo.pcap"
    stack = ustack_up("--pcap", str(capture))
    stack.ns.run("curl", "-s", "--max-time", "20", "http://10.203.0.2/bytes/10")
    assert stack.stop() == 0
    ng = tmp_path / "demo.pcapng"
    subprocess.run(
        ["tshark", "-r", str(capture), "-F", "pcapng", "-w", str(ng)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    env = dict(os.environ)
    run = [*ustack_command(), "trace", "--port", "80"]
    classic = subprocess.run([*run, str(capture)], capture_output=True, env=env)
    nextgen = subprocess.run([*run, str(ng)], capture_output=True, env=env)
    assert classic.returncode == nextgen.returncode == 0
    assert b"FIN" in classic.stdout and nextgen.stdout == classic.stdout
