"""Blind injection into ustack's connection with a kernel client (RFC 5961).

A kernel client asks ustack's http service for /bytes/N and holds off
reading. An injector in the namespace learns ustack's RCV.NXT for the
connection from ustack's trace stream (control socket), then writes spoofed
segments "from the kernel client" into the TUN (AF_PACKET):

- in-window RSTs (not exact), in-window SYNs, out-of-window RSTs, SYNs and
  data: the connection survives, the download completes intact, ustack
  counts challenge ACKs;
- one exact RST (SEG.SEQ == RCV.NXT): ustack's side is gone. The kernel
  client still holds its side (RFC 9293 3.5.2, half-open); its next segment
  (the window update when it reads) is answered by ustack with RST
  (3.10.7.1), so it sees ECONNRESET and never the whole body.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
SIZE = 8_000_000
UstackUp = Callable[..., UstackProcess]

CLIENT = r"""
import hashlib, socket, sys
size = int(sys.argv[1])
s = socket.create_connection(("10.203.0.2", 80), timeout=30)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()  # the injector is sniffing: send the request
s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % size)
sys.stdin.readline()  # the injection is done: read everything
got = bytearray()
try:
    while chunk := s.recv(1 << 20):
        got += chunk
    result = "eof"
except ConnectionResetError:
    result = "reset"
body = bytes(got).partition(b"\r\n\r\n")[2]
period = bytes(range(251))
want = (period * (size // 251 + 1))[:size]
intact = hashlib.sha256(body).digest() == hashlib.sha256(want).digest()
print(json.dumps({"result": result, "body": len(body), "intact": intact}))
""".replace("import hashlib,", "import json, hashlib,")

# argv: client port, mode ("blind" or "exact"). Learns ustack's RCV.NXT for
# the connection from ustack's own trace stream (the control socket's
# "trace" command: every packet in and out), watching for 1.5 s while the
# request goes out, then injects through the TUN with AF_PACKET.
INJECT = r"""
import base64, json, socket, sys, time
from ustack.observe.control import control_path
from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4
from ustack.wire.tcp import ACK, PSH, RST, SYN, FIN, TcpSegment, parse_tcp

port, mode = int(sys.argv[1]), sys.argv[2]
HOST, US = bytes([10, 203, 0, 1]), bytes([10, 203, 0, 2])
trace = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
trace.connect(str(control_path("ustack0")))
trace.sendall(json.dumps({"cmd": "trace", "port": 80}).encode() + b"\n")
trace.settimeout(0.1)
print("sniffing", flush=True)
rcv_nxt = None
ack = None
buf = b""
end = time.monotonic() + 1.5
while time.monotonic() < end:
    try:
        data = trace.recv(1 << 20)
    except TimeoutError:
        continue
    buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        ev = json.loads(line)
        if ev.get("event") != "packet" or ev["outgoing"]:
            continue
        ip = parse_ipv4(base64.b64decode(ev["packet"]))
        seg = parse_tcp(ip.payload, ip.src, ip.dst)
        if ip.src != HOST or seg.src_port != port or seg.flags & RST:
            continue
        rcv_nxt = (seg.seq + len(seg.payload) + (seg.flags & FIN)) & 0xFFFFFFFF
        ack = seg.ack
# Leave gracefully: half-close, then read until ustack closes its end (an
# abrupt close used to crash `ustack up`: see test_hardening_regressions.py).
trace.shutdown(socket.SHUT_WR)
trace.settimeout(10)
while trace.recv(1 << 20):
    pass
trace.close()
assert rcv_nxt is not None, "no segment of the client seen"
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("ustack0", socket.htons(0x0800)))


def send(seq, flags, payload=b"", ack_no=None):
    seg = TcpSegment(port, 80, seq & 0xFFFFFFFF, (ack if ack_no is None else ack_no)
                     & 0xFFFFFFFF, flags, 500, payload)
    s.send(build_tcp_packet(HOST, US, seg, 1))


sent = {}


def hit(kind, *args, **kw):
    send(*args, **kw)
    sent[kind] = sent.get(kind, 0) + 1


if mode == "exact":
    hit("rst_exact", rcv_nxt, RST)
else:
    for i in range(50):
        hit("rst_in_window", rcv_nxt + 1 + 997 * i, RST)
        hit("syn_in_window", rcv_nxt + 5 + 991 * i, SYN)
        hit("rst_out", rcv_nxt + (1 << 31) + i * 7919, RST)
        hit("syn_out", rcv_nxt - 100_000 - i, SYN)
        hit("data_out", rcv_nxt + (1 << 30) + i, ACK | PSH, b"EVIL" * 100)
        hit("data_bad_ack", rcv_nxt, ACK | PSH, b"EVIL" * 100, ack_no=ack + (1 << 30))
        hit("data_no_ack", rcv_nxt, PSH, b"EVIL" * 100)
        time.sleep(0.01)  # 50 rounds over 0.5 s: within the challenge-ACK budget
print(json.dumps({"rcv_nxt": rcv_nxt, "sent": sent}), flush=True)
"""


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json", timeout=30).stdout
    counters: dict[str, int] = json.loads(out)
    return counters


def run_case(stack: UstackProcess, mode: str) -> tuple[dict, dict, dict[str, int]]:
    before = stats(stack)
    client = stack.ns.popen(
        sys.executable,
        "-c",
        CLIENT,
        str(SIZE),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    injector = None
    try:
        assert client.stdout is not None and client.stdin is not None
        port = client.stdout.readline().strip().decode()
        assert port.isdigit(), client.stderr.read() if client.stderr else port
        injector = stack.ns.popen(
            sys.executable,
            "-c",
            INJECT,
            port,
            mode,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert injector.stdout is not None
        assert injector.stdout.readline().strip() == b"sniffing"
        client.stdin.write(b"go\n")
        client.stdin.flush()
        inj_out, inj_err = injector.communicate(timeout=30)
        assert injector.returncode == 0, inj_err.decode(errors="replace")
        injected = json.loads(inj_out)
        client.stdin.write(b"read\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=90)
        assert client.returncode == 0, err.decode(errors="replace")
        result = json.loads(out)
    finally:
        for proc in (client, injector):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    after = stats(stack)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(mode, injected, result, {k: v for k, v in sorted(diff.items()) if v})
    return injected, result, diff


def test_blind_injection_does_not_harm_a_kernel_download(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    injected, result, diff = run_case(stack, "blind")
    assert result == {"result": "eof", "body": SIZE, "intact": True}
    sent = injected["sent"]
    # Each in-window RST and SYN earns a challenge ACK (RFC 5961 3.2, 4.2).
    challenged = sent["rst_in_window"] + sent["syn_in_window"]
    assert diff.get("TCPChallengeACK", 0) == challenged
    assert diff.get("EstabResets", 0) == 0
    assert diff["InSegs"] >= sum(sent.values())


def test_exact_rst_kills_ustacks_side(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    injected, result, diff = run_case(stack, "exact")
    assert injected["sent"] == {"rst_exact": 1}
    assert result["result"] == "reset"
    assert result["body"] < SIZE
    assert diff.get("TCPChallengeACK", 0) == 0
    # ustack dropped the connection on the RST (ESTABLISHED, or FIN-WAIT-1 if
    # it had queued the whole body and its FIN) and then refused the
    # client's next segments with RSTs.
    assert diff.get("OutRsts", 0) >= 1
    rows = json.loads(stack.run(*ustack_command(), "ss", "--json", timeout=30).stdout)
    assert [
        r
        for r in rows
        if r.get("local", "").endswith(":80") and r.get("state") != "LISTEN"
    ] == []
