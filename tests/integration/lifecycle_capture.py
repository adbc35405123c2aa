"""Packet capture on ustack's TUN device inside a test namespace, with no
dependency: an AF_PACKET socket run as a small program in the namespace,
kernel receive timestamps (SO_TIMESTAMPNS), one line per TCP segment."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from netns import Netns

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

CAPTURE = r"""
import socket, struct, sys, time
ifname, path, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
s.bind((ifname, 0))
s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
end = time.monotonic() + limit  # bounded: never outlives the test by much
print("capturing", flush=True)
with open(path, "w") as f:
    while (left := end - time.monotonic()) > 0:
        s.settimeout(min(left, 0.2))
        try:
            data, anc, _, addr = s.recvmsg(65535, 256)
        except socket.timeout:
            continue
        ts = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == 35:
                sec, nsec = struct.unpack("qq", value[:16])
                ts = sec + nsec / 1e9
        # pkttype 4: the kernel sent it (towards ustack); else ustack sent it.
        who = "k" if addr[2] == 4 else "u"
        f.write(f"{ts:.6f} {who} {data[:60].hex()} {len(data)}\n")
        f.flush()
"""


@dataclass
class Segment:
    time: float
    from_ustack: bool
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload_len: int


class Capture:
    """`with Capture(ns, path) as cap: ...; cap.segments()`."""

    def __init__(
        self, ns: Netns, path: str, ifname: str = "ustack0", limit: float = 60.0
    ) -> None:
        self.path = path
        self.proc = ns.popen(
            sys.executable,
            "-c",
            CAPTURE,
            ifname,
            path,
            str(limit),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by `limit`
        if line.strip() != b"capturing":
            err = self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"capture did not start: {line!r} {err!r}")

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def segments(self) -> list[Segment]:
        out = []
        with open(self.path) as f:
            for line in f:
                ts, who, hexdata, length = line.split()
                b = bytes.fromhex(hexdata)
                if len(b) < 40 or b[9] != 6:
                    continue
                ihl = (b[0] & 0xF) * 4
                t = b[ihl:]
                total = int.from_bytes(b[2:4], "big")
                doff = (t[12] >> 4) * 4
                out.append(
                    Segment(
                        float(ts),
                        who == "u",
                        int.from_bytes(t[0:2], "big"),
                        int.from_bytes(t[2:4], "big"),
                        int.from_bytes(t[4:8], "big"),
                        int.from_bytes(t[8:12], "big"),
                        t[13],
                        total - ihl - doff,
                    )
                )
        return out

    def wait_for(self, predicate, timeout: float):  # type: ignore[no-untyped-def]
        """Poll the capture until predicate(segments) is true (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            segs = self.segments()
            if predicate(segs):
                return segs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"capture condition not met in {timeout} s; "
                    f"{len(segs)} segments: {segs[-20:]}"
                )
            time.sleep(0.05)
