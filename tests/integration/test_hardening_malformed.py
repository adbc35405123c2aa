"""Malformed and hostile packets (issue 4, point 6) against a live `ustack up`
that is serving a 20 MB download to a kernel socket at the same time.

The packets are crafted with scapy inside the test namespace and written
into the TUN device with an AF_PACKET socket (SOCK_DGRAM, ETH_P_IP, bound to
ustack0): that path skips the kernel's own IP checks (a raw IP socket would
fix the checksum and total length), so ustack sees the bytes exactly as
built. Every spoofed source is inside 10.203.0.0/24 or a broadcast/multicast
address; nothing leaves the namespace, which is deleted afterwards.

The injector is also the download's client: after each round of crafted
packets it reads its share of the body, so the download runs in step with
the injection on a fast host as under an emulated CPU (no rate limit to
tune), and only finishes after the last malformed packet.

Checks: the download advanced with every round and finished intact (sha256
of byte i = i % 251), ustack is still up, and `ustack stats --json` shows
each malformed kind dropped under its reason, once per packet sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
SIZE = 20_000_000
UstackUp = Callable[..., UstackProcess]

# Runs inside the namespace: argv[1] = packets per kind (= rounds), argv[2] =
# download size. Prints a JSON object {"sent": {kind: packets sent}, "during":
# body bytes read when the last round was sent, "bytes": body bytes in all,
# "sha256": of the body}.
INJECT = r"""
import hashlib, json, socket, sys
from scapy.all import IP, TCP, raw

N, SIZE = int(sys.argv[1]), int(sys.argv[2])
HOST, US = "10.203.0.1", "10.203.0.2"
CLOSED = 4444  # nobody listens: an accepted segment would be answered by RST


def ip(**kw):
    kw.setdefault("src", HOST)
    return IP(dst=US, **kw)


def tcp(i, **kw):
    kw.setdefault("sport", 20000 + i)
    kw.setdefault("dport", CLOSED)
    kw.setdefault("flags", "S")
    kw.setdefault("seq", 1000 + i)
    return TCP(**kw)


def opts(i, data):  # raw option bytes with a correct TCP checksum
    return raw(ip() / tcp(i, dataofs=5 + len(data) // 4) / data)


def total_len(i, n):
    b = bytearray(raw(ip() / tcp(i) / (b"x" * 20)))
    b[2:4] = n.to_bytes(2, "big")
    b[10:12] = b"\0\0"
    s = sum(int.from_bytes(b[k:k + 2], "big") for k in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    b[10:12] = (0xFFFF - s).to_bytes(2, "big")
    return bytes(b)


def padded(i):
    # total length says 40 (IP+TCP), 12 bytes of link padding follow: valid.
    return raw(ip() / tcp(i)) + b"\xee" * 12


KINDS = {
    "bad_ip_csum": lambda i: raw(ip(chksum=0x1234) / tcp(i)),
    "bad_tcp_csum": lambda i: raw(ip() / tcp(i, chksum=0x1234)),
    "ihl_lt_5": lambda i: raw(ip(ihl=4) / tcp(i)),
    "ihl_beyond_packet": lambda i: raw(ip(ihl=15) / tcp(i)),
    "doff_lt_5": lambda i: raw(ip() / tcp(i, dataofs=4)),
    "doff_beyond_packet": lambda i: raw(ip() / tcp(i, dataofs=15)),
    "total_len_longer": lambda i: total_len(i, 1000),
    "total_len_shorter_cuts_tcp": lambda i: total_len(i, 30),
    "total_len_shorter_padding": padded,
    "opt_truncated": lambda i: opts(i, b"\x01\x01\x02\x04"),
    "opt_zero_len": lambda i: opts(i, b"\x02\x00\x00\x00"),
    "opt_len_past_header": lambda i: opts(i, b"\x08\x0a\x00\x00"),
    "opt_unknown_past_header": lambda i: opts(i, b"\x1e\x14\x00\x00"),
    "frag_mf": lambda i: raw(ip(flags="MF") / tcp(i)),
    "frag_offset": lambda i: raw(ip(frag=100) / tcp(i)),
    "syn_fin": lambda i: raw(ip() / tcp(i, flags="SF")),
    "syn_rst": lambda i: raw(ip() / tcp(i, flags="SR")),
    "no_flags": lambda i: raw(ip() / tcp(i, flags="")),
    "no_flags_listener": lambda i: raw(ip() / tcp(i, flags="", dport=80)),
    "syn_fin_listener": lambda i: raw(ip() / tcp(i, flags="SF", dport=80)),
    "syn_rst_listener": lambda i: raw(ip() / tcp(i, flags="SR", dport=80)),
    "src_broadcast": lambda i: raw(ip(src="255.255.255.255") / tcp(i)),
    "src_subnet_broadcast": lambda i: raw(ip(src="10.203.0.255") / tcp(i)),
    "src_multicast": lambda i: raw(ip(src="224.0.0.5") / tcp(i)),
    "src_own": lambda i: raw(ip(src=US) / tcp(i)),
    "sport_0": lambda i: raw(ip() / tcp(i, sport=0)),
    "dport_0": lambda i: raw(ip() / tcp(i, dport=0)),
}

s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("ustack0", socket.htons(0x0800)))
packets = {k: [f(i) for i in range(N)] for k, f in KINDS.items()}
sent = {k: 0 for k in KINDS}

web = socket.create_connection((US, 80), timeout=60)
web.sendall(f"GET /bytes/{SIZE} HTTP/1.0\r\nHost: {US}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = web.recv(65536)
    assert chunk, f"no HTTP response: {head!r}"
    head += chunk
head, first = head.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 200 "), head
digest = hashlib.sha256(first)
got = len(first)


def read_until(limit):  # body bytes up to `limit`, or to the end
    global got
    while got < limit:
        chunk = web.recv(min(1 << 16, limit - got))
        if not chunk:
            return
        digest.update(chunk)
        got += len(chunk)


# The last tenth of the body is read only after the injection: the download
# is still running when the last crafted packet goes in, however slow the CPU.
SHARE = SIZE - SIZE // 10
for i in range(N):  # interleave the kinds, and the download with them
    for k in KINDS:
        s.send(packets[k][i])
        sent[k] += 1
    read_until((i + 1) * SHARE // N)
during = got
read_until(SIZE + 1)
web.close()
print(json.dumps(
    {"sent": sent, "during": during, "bytes": got, "sha256": digest.hexdigest()}
))
"""

# kind -> the counter that must grow by exactly one per packet.
DROPPED_AS = {
    "bad_ip_csum": "InHdrErrors.bad_ip_csum",
    "bad_tcp_csum": "InErrs.bad_tcp_csum",
    "ihl_lt_5": "InHdrErrors.bad_ihl",
    "ihl_beyond_packet": "InHdrErrors.bad_ihl",
    "doff_lt_5": "InErrs.bad_doff",
    "doff_beyond_packet": "InErrs.bad_doff",
    "total_len_longer": "InHdrErrors.bad_len",
    "total_len_shorter_cuts_tcp": "InErrs.short",
    # Fragments now go to reassembly (issue 13); each one counts there.
    "frag_mf": "ReasmReqds",
    "frag_offset": "ReasmReqds",
}


def pattern_sha256(n: int) -> str:
    period = bytes(range(251))
    block = period * (1 << 20)
    h = hashlib.sha256()
    done = 0
    while done < n:
        step = min(len(block), n - done)
        h.update(block[:step])
        done += step
    return h.hexdigest()


def stats(stack: UstackProcess) -> dict[str, int]:
    out = stack.run(*ustack_command(), "stats", "--json").stdout
    counters: dict[str, int] = json.loads(out)
    return counters


def test_malformed_packets_during_a_download(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    per_kind = 200
    before = stats(stack)
    # The time limit is only a backstop against a hang: the injection and the
    # download pace each other, so a slow CPU makes them slower, not wrong.
    out = stack.python(INJECT, str(per_kind), str(SIZE), timeout=600).stdout
    report = json.loads(out)
    sent: dict[str, int] = report["sent"]
    assert report["during"] == SIZE - SIZE // 10, (
        "the download did not advance with the injection",
        report["during"],
    )
    assert report["bytes"] == SIZE
    assert report["sha256"] == pattern_sha256(SIZE)
    assert stack.proc.poll() is None, stack.describe()

    after = stats(stack)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(sent.values())
    print(f"sent {total} crafted packets ({per_kind} of each of {len(sent)} kinds)")
    print(
        "counter changes:",
        json.dumps({k: v for k, v in sorted(diff.items()) if v}, indent=1),
    )
    assert diff["InReceives"] >= total

    expected: dict[str, int] = {}
    for kind, counter in DROPPED_AS.items():
        expected[counter] = expected.get(counter, 0) + sent[kind]
    for counter, n in expected.items():
        assert diff.get(counter, 0) == n, (counter, diff.get(counter, 0), n)

    # Well-formed but odd segments to the closed port 4444 are answered with
    # RST (RFC 9293 3.10.7.1), except those carrying RST; so are SYNs with a
    # malformed option, which are kept (issue 10 item 13); at the listener a
    # SYN+RST is ignored (3.10.7.2: "an incoming RST should be ignored").
    # (Invalid sources and flagless segments to the listener: see
    # tests/sim/test_hardening_regressions.py.)
    assert diff.get("OutRsts", 0) >= (
        sent["total_len_shorter_padding"]
        + sent["syn_fin"]
        + sent["no_flags"]
        + sent["dport_0"]
        + sum(sent[k] for k in sent if k.startswith("opt_"))
    )
