#!/usr/bin/env python3
"""rawtun: the ceiling for any TCP stack written in Python over a TUN device.

A bare loop on the TUN fd (no trio, no TCB, no retransmission timers, no
buffers, no application) that does the least packet work a TCP server must do,
so the same kernel clients that talk to `ustack up` can talk to it:

- SYN -> SYN-ACK (MSS from the MTU, window scale 7, fixed ISN; no timestamps,
  no SACK).
- discard (port 9): counts in-order payload; one cumulative ACK per flow per
  batch of packets read. Out-of-order data is dropped (no reassembly) and
  answered at once by a duplicate ACK of RCV.NXT, so the sender's fast
  retransmit repairs a loss.
- echo (port 7): each data segment is answered at once with one ACK+data
  segment carrying the same bytes.
- chargen (port 19): once the handshake completes, sends MSS-sized segments of
  a constant payload up to the peer's advertised window after every batch of
  ACKs; three duplicate ACKs -> go back to SND.UNA (the only loss recovery).
- FIN -> FIN+ACK at once (passive close) and the flow is forgotten; RST ->
  forgotten. Anything else (pure ACKs, other ports, non-TCP) is only counted.

Per packet it parses the IPv4+TCP headers with struct and, for every segment
it writes, builds the headers with struct. Plain mode computes both checksums
with `int.from_bytes(...) % 0xFFFF`; the chargen payload's checksum
contribution is computed once per segment size (checksums are additive), and
header + payload go out in one os.writev. With --offload (IFF_VNET_HDR,
TUNSETOFFLOAD csum + TSO4, as `ustack up` by default) every packet carries a
virtio-net header, TCP checksums are left to the kernel (only the
pseudo-header is summed) and chargen writes up to 64 KB per TSO segment.
Reads drain the fd after each poll wake-up.

State per flow is a small list (RCV.NXT, SND.NXT, SND.UNA, window, ...). What
it does not do: verify checksums, reassemble, buffer, retransmit on timeout,
delayed ACKs, keepalive, TIME_WAIT. Memory scenarios do not apply to it.

    sudo ip netns exec NS python tools/rawtun.py --mtu 1500 [--offload]

prints `rawtun ready` when it serves and, on SIGTERM/SIGINT, one JSON line of
counters on stdout.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import select
import signal
import struct
import sys
import time
from pathlib import Path

ISN = 0x10000000  # our sends stay below 2**32 for transfers < 3.9 GB
M32 = 0xFFFFFFFF  # the peer's sequence numbers wrap
WSCALE = 7
WINDOW = 0xFFFF  # advertised (scaled by 2**WSCALE: 8 MB)
SYN, ACK_FLAG, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08

_ip_hdr = struct.Struct("!BBHHHBBH4s4s")
_tcp_hdr = struct.Struct("!HHIIBBHHH")
_tcp_in = struct.Struct("!HHIIBBH")
_pseudo = struct.Struct("!4s4sBBH")
_vnet = struct.Struct("=BBHHHH")  # virtio_net_hdr: flags, gso_type, hdr_len, ...

# flow list indices
RCV_NXT, SND_NXT, SND_UNA, SND_WND, MSS, PEER_WS, DUPACKS, SENDING = range(8)


def ones_fold(value: int) -> int:
    """A value mod 0xFFFF as a ones'-complement sum (0 -> 0xFFFF, nonzero data)."""
    return value % 0xFFFF


def checksum_of(s: int) -> int:
    """The checksum field for a ones'-complement sum given mod 0xFFFF."""
    s %= 0xFFFF
    return 0xFFFF - s if s else 0


class RawTun:
    def __init__(self, fd: int, my_ip: str, mtu: int, offload: bool = False) -> None:
        self.fd = fd
        # With offload (IFF_VNET_HDR + TUNSETOFFLOAD csum/TSO4, as `ustack up`
        # uses by default) every packet has a 10-byte virtio-net header; the
        # kernel completes TCP checksums and cuts chargen's 64 KB segments.
        self.offload = offload
        self.my_ip = ipaddress.IPv4Address(my_ip).packed
        self.mtu = mtu
        self.my_mss = mtu - 40
        self.flows: dict[tuple[bytes, int, int], list[int]] = {}
        self.payloads: dict[int, tuple[bytes, int]] = {}
        self.stop = False
        self.counters = {
            "packets_in": 0,
            "packets_out": 0,
            "payload_in": 0,
            "payload_out": 0,
            "write_errors": 0,
            "go_back_n": 0,
            "busy_seconds": 0.0,
        }
        self._pattern = bytes(range(256)) * (65536 // 256 + 1)

    # -- writing -------------------------------------------------------------
    def _payload(self, size: int) -> tuple[bytes, int]:
        p = self.payloads.get(size)
        if p is None:
            data = self._pattern[:size]
            pad = b"\0" if size & 1 else b""
            p = (data, int.from_bytes(data + pad, "big") % 0xFFFF)
            if len(self.payloads) < 256:
                self.payloads[size] = p
        return p

    def send(
        self,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        data: bytes | memoryview = b"",
        options: bytes = b"",
        data_sum: int | None = None,
        mss: int = 0xFFFF,
    ) -> None:
        tcp_len = 20 + len(options) + len(data)
        doff = (20 + len(options)) // 4 << 4
        hdr = _tcp_hdr.pack(
            sport, dport, seq & M32, ack & M32, doff, flags, WINDOW, 0, 0
        )
        hdr += options
        vhdr = b""
        if self.offload:
            # NEEDS_CSUM: the field holds the pseudo-header sum; GSO beyond MSS.
            thl = 20 + len(options)
            if len(data) > mss:
                vhdr = _vnet.pack(1, 1, 20 + thl, mss, 20, 16)
            else:
                vhdr = _vnet.pack(1, 0, 0, 0, 20, 16)
            ps = int.from_bytes(_pseudo.pack(self.my_ip, dst, 0, 6, tcp_len), "big")
            csum = ps % 0xFFFF or 0xFFFF
            data_sum = 0
        elif data_sum is None:
            if len(data) & 1:
                data_sum = int.from_bytes(bytes(data) + b"\0", "big")
            else:
                data_sum = int.from_bytes(data, "big")
        if not self.offload:
            s = (
                int.from_bytes(
                    _pseudo.pack(self.my_ip, dst, 0, 6, tcp_len) + hdr, "big"
                )
                + data_sum
            )
            csum = checksum_of(s)
        hdr = hdr[:16] + csum.to_bytes(2, "big") + hdr[18:]
        total = 20 + tcp_len
        ip = _ip_hdr.pack(0x45, 0, total, 0, 0x4000, 64, 6, 0, self.my_ip, dst)
        ipc = checksum_of(int.from_bytes(ip, "big"))
        ip = ip[:10] + ipc.to_bytes(2, "big") + ip[12:]
        try:
            if data:
                os.writev(self.fd, (vhdr, ip, hdr, data))
            else:
                os.write(self.fd, vhdr + ip + hdr)
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            self.counters["write_errors"] += 1
            return
        self.counters["packets_out"] += 1
        self.counters["payload_out"] += len(data)

    # -- reading -------------------------------------------------------------
    def handle(
        self,
        p: bytes | memoryview,
        to_ack: set[tuple[bytes, int, int]],
        to_send: set[tuple[bytes, int, int]],
    ) -> None:
        if p[0] != 0x45 or p[9] != 6:
            return
        sport, dport, seq, ack, off, flags, wnd = _tcp_in.unpack_from(p, 20)
        doff = (off >> 4) * 4
        plen = len(p) - 20 - doff
        src = bytes(p[12:16])
        key = (src, sport, dport)
        if flags & RST:
            self.flows.pop(key, None)
            return
        if flags & SYN:
            mss, ws = 536, -1
            i, end = 40, 20 + doff
            while i < end:  # options: MSS and window scale
                kind = p[i]
                if kind == 0:
                    break
                if kind == 1:
                    i += 1
                    continue
                ln = p[i + 1]
                if kind == 2:
                    mss = int.from_bytes(p[i + 2 : i + 4], "big")
                elif kind == 3:
                    ws = p[i + 2]
                i += max(ln, 2)
            opts = struct.pack("!BBH", 2, 4, self.my_mss)
            if ws >= 0:
                opts += bytes((1, 3, 3, WSCALE))
            self.flows[key] = [
                (seq + 1) & M32,
                ISN + 1,
                ISN + 1,
                wnd,
                min(mss, self.my_mss),
                max(ws, 0),
                0,
                0,
            ]
            self.send(src, dport, sport, ISN, seq + 1, SYN | ACK_FLAG, options=opts)
            return
        f = self.flows.get(key)
        if f is None:
            return
        if flags & ACK_FLAG:
            new_wnd = wnd << f[PEER_WS]
            same_wnd = new_wnd == f[SND_WND]
            f[SND_WND] = new_wnd
            if dport == 19:
                if ack > f[SND_UNA] or (not f[SENDING] and ack == ISN + 1):
                    f[SND_UNA] = ack
                    f[DUPACKS] = 0
                    f[SENDING] = 1
                elif ack == f[SND_UNA] and plen == 0 and same_wnd and f[SND_NXT] > ack:
                    f[DUPACKS] += 1
                    if f[DUPACKS] == 3:
                        f[SND_NXT] = ack
                        self.counters["go_back_n"] += 1
                to_send.add(key)
        if plen:
            if seq == f[RCV_NXT]:
                f[RCV_NXT] = (seq + plen) & M32
                self.counters["payload_in"] += plen
                if dport == 7:
                    data = p[20 + doff :]
                    self.send(
                        src, dport, sport, f[SND_NXT], f[RCV_NXT], ACK_FLAG | PSH, data
                    )
                    f[SND_NXT] += plen
                    f[SND_UNA] = f[SND_NXT]
                else:
                    to_ack.add(key)
            else:  # out of order: dropped; a duplicate ACK at once for each
                self.send(src, dport, sport, f[SND_NXT], f[RCV_NXT], ACK_FLAG)
        if flags & FIN and (seq + plen) & M32 == f[RCV_NXT]:
            del self.flows[key]
            to_ack.discard(key)
            to_send.discard(key)
            self.send(src, dport, sport, f[SND_NXT], f[RCV_NXT] + 1, FIN | ACK_FLAG)

    def flush(
        self, to_ack: set[tuple[bytes, int, int]], to_send: set[tuple[bytes, int, int]]
    ) -> None:
        for key in to_ack:
            f = self.flows.get(key)
            if f is not None:
                self.send(key[0], key[2], key[1], f[SND_NXT], f[RCV_NXT], ACK_FLAG)
        for key in to_send:
            f = self.flows.get(key)
            if f is None or not f[SENDING]:
                continue
            mss = f[MSS]
            seg = (65535 - 40) // mss * mss if self.offload else mss
            limit = f[SND_UNA] + f[SND_WND]
            nxt = f[SND_NXT]
            src, sport, dport = key
            while nxt < limit:
                size = min(seg, limit - nxt)
                if size < mss and nxt > f[SND_UNA]:
                    break  # a partial segment only when nothing is in flight
                if size > mss:
                    size -= size % mss  # whole MSS-sized pieces when offloaded
                data, dsum = self._payload(size)
                self.send(
                    src,
                    dport,
                    sport,
                    nxt,
                    f[RCV_NXT],
                    ACK_FLAG,
                    data,
                    data_sum=dsum,
                    mss=mss,
                )
                nxt += size
            f[SND_NXT] = nxt

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        read, fd, size = os.read, self.fd, 65536 + 64
        skip = 10 if self.offload else 0
        counters = self.counters
        clock = time.perf_counter
        while not self.stop:
            if not poller.poll(200):
                continue
            t0 = clock()
            to_ack: set[tuple[bytes, int, int]] = set()
            to_send: set[tuple[bytes, int, int]] = set()
            n = 0
            while n < 512:
                try:
                    p = read(fd, size)
                except BlockingIOError:
                    break
                n += 1
                self.handle(memoryview(p)[skip:] if skip else p, to_ack, to_send)
            counters["packets_in"] += n
            if to_ack or to_send:
                self.flush(to_ack, to_send)
            counters["busy_seconds"] += clock() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ifname", default="ustack0")
    parser.add_argument("--host-ip", default="10.203.0.1/24")
    parser.add_argument("--ip", default="10.203.0.2")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument(
        "--offload", action="store_true", help="virtio-net header, csum + TSO4"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ustack.link.tun import TunLink  # device set-up only; the loop is below

    link = TunLink.open(args.ifname, args.host_ip, args.mtu, offload=args.offload)
    raw = RawTun(link.fileno(), args.ip, args.mtu, args.offload)

    def stop(_signum: int, _frame: object) -> None:
        raw.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("rawtun ready", flush=True)
    try:
        raw.run()
    finally:
        print(json.dumps(raw.counters), flush=True)
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
