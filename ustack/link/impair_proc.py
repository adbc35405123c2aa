"""The impaired path in its own OS process, keeping its own clock.

`ImpairedLink` runs inside the stack's event loop, so whenever the stack's
process is preempted or busy the emulated path stalls with it and then lets
its held packets (data one way, ACKs the other) go in one batch: the path
itself turns host stalls into ACK aggregation, which a rate-based sender
(BBR) reads as extra bandwidth (docs/benchmarks.md, issue 14 "the bottleneck
queue"). A real router's queue drains on its own clock whatever the end
hosts do; so does this one.

`spawn_impaired(tun, config)` starts `python -m ustack.link.impair_proc`,
hands it the TUN fd and one end of an AF_UNIX SOCK_SEQPACKET socketpair
(one packet per message, boundaries kept), and returns a `SocketLink` for
the stack: the same `Link` interface as `TunLink`, reading and writing the
other end. The child runs the two `Pipe`s of `ustack.link.impair` (the same
impairment code, so both modes impair alike) on a plain select() loop: it
sleeps until the next release time (to the microsecond, plus a 200 us
slack) or until a side is readable, as a real-time task (SCHED_FIFO 1) so
that releases are not late for want of a CPU. The stack reads each packet
with its kernel receive stamp (SO_TIMESTAMPNS) and processes it at that
time (`SocketLink.arrival_times`, `Stack._input_stamped`).

Shutdown: `SocketLink.close()` shuts the socket for writing; the child sees
end-of-file, writes its counters as one JSON line to a status pipe and
exits; `summary()` then shows them (as `ImpairedLink.summary()` does).
If the parent dies the socket closes too, so the child never outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import trio

from ustack.link import vnet
from ustack.link.impair import IN, OUT, ImpairConfig, Pipe, _Rules, parse_impair_spec

# Large enough for a 64 KB offload segment plus its virtio-net header.
MESSAGE_SIZE = 65535 + vnet.LENGTH + 64
# Per-socket buffer: a few ms of packets at any rate the benchmarks use, so
# neither side drops when the other is briefly slow to read.
SOCKET_BUFFER = 4 << 20
CLOSE_TIMEOUT = 5.0
# SO_TIMESTAMPNS (asm-generic/socket.h; Python 3.11 has no name for it):
# each message read carries, as SCM_TIMESTAMPNS, the CLOCK_REALTIME
# struct timespec of when it was queued on the socket.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
# A stamp older than this is not believed (the realtime clock was stepped).
MAX_AGE = 1.0
# How late the loop may wake for a release, so that packets due within it
# leave in one wake-up (like an hrtimer's slack): at ~14,000 packets/s a
# wake-up per packet costs the path process a good part of a CPU.
RELEASE_SLACK = 200e-6
# The path process's scheduling (see _raise_priority).
PATH_RT_PRIORITY = 1
PATH_NICE = -10


class SocketLink:
    """The stack's end of the socketpair. See `ustack.link.base.Link`."""

    def __init__(
        self,
        sock: socket.socket,
        mtu: int,
        vnet_hdr: bool,
        child: subprocess.Popen[bytes] | None = None,
        status_fd: int | None = None,
    ) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self.mtu = mtu
        self.vnet_hdr = vnet_hdr
        self._version_at = vnet.LENGTH if vnet_hdr else 0
        self._child = child
        self._status_fd = status_fd
        self.counters: Counter[str] = Counter()
        self.dropped_non_ipv4 = 0
        self.tx_dropped = 0
        self.child_status = ""  # what went wrong collecting the counters
        # The last batch's packets: when each reached the socket (realtime,
        # kernel stamps) and the realtime clock at the end of the read.
        self._stamps: list[float] = []
        self._read_at = 0.0

    def fileno(self) -> int:
        return self._fd

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._fd)

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        sock = self._sock
        if sock is None:
            return []
        packets: list[bytes] = []
        stamps: list[float] = []
        self._stamps = stamps
        recvmsg, at = sock.recvmsg, self._version_at
        unpack = _TIMESPEC.unpack_from
        while len(packets) < max_packets:
            try:
                packet, ancillary, _, _ = recvmsg(MESSAGE_SIZE, _CMSG_SPACE)
            except BlockingIOError:
                break
            if not packet:  # end-of-file: the path process is gone
                raise OSError(errno.EPIPE, "the impaired-path process exited")
            if len(packet) <= at or packet[at] >> 4 != 4:
                self.dropped_non_ipv4 += 1
                continue
            packets.append(packet)
            stamp = -1.0  # no stamp: arrived now
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = unpack(data)
                    stamp = sec + nsec * 1e-9
            stamps.append(stamp)
        self._read_at = time.time()
        return packets

    def arrival_times(self, now: float) -> list[float]:
        """When each packet of the last batch arrived, on the caller's clock
        (`now`: that clock's reading just after read_batch). The path
        process wrote it to the socket when it left the emulated link: the
        time a NIC would have received it, where Linux takes its ACK clock
        (tcp_mstamp, in the softirq right after the NIC). The stack's own
        clock reads later by however long the process was preempted or
        busy, and one time for a whole batch (issue 14)."""
        read_at = self._read_at
        return [
            now if stamp < 0 else now - min(max(read_at - stamp, 0.0), MAX_AGE)
            for stamp in self._stamps
        ]

    def write(self, packet: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.send(packet)
        except BlockingIOError:
            self.tx_dropped += 1  # like a full TUN queue: drop, count
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EPIPE, errno.ECONNRESET):
                raise
            self.tx_dropped += 1

    def close(self) -> None:
        """End the child (EOF on the socket), collect its counters. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(RuntimeError):  # outside trio.run
            trio.lowlevel.notify_closing(self._fd)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        status_fd, self._status_fd = self._status_fd, None
        if status_fd is not None:
            self._read_status(status_fd)
        sock.close()
        child = self._child
        if child is not None:
            try:
                child.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                self.child_status = "path process did not exit; killed"

    def _read_status(self, fd: int) -> None:
        buf = bytearray()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        try:
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    break
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                buf.extend(chunk)
        finally:
            os.close(fd)
        try:
            self.counters.update(json.loads(buf or b"{}"))
        except ValueError:
            self.child_status = "path process sent no counters"

    def summary(self) -> str:
        """One line of the child's counters, like `ImpairedLink.summary()`."""
        parts = [f"{k}={v}" for k, v in sorted(self.counters.items()) if v]
        if self.tx_dropped:
            parts.append(f"socket_tx_drop={self.tx_dropped}")
        if self.child_status:
            parts.append(f"({self.child_status})")
        return " ".join(parts) if parts else "nothing impaired"


def spawn_impaired(tun: Any, config: ImpairConfig) -> SocketLink:
    """Start the path process on `tun` (a `TunLink`); return the stack's link.

    The child gets its own copies of the TUN fd, one socket end and the
    status pipe's write end; the parent keeps the TUN open (it owns the
    device) but never reads it.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (ours, theirs):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    status_r, status_w = os.pipe()
    tun_fd = tun.fileno()
    vnet_hdr = bool(getattr(tun, "vnet_hdr", False))
    argv = [
        sys.executable,
        "-m",
        "ustack.link.impair_proc",
        "--tun-fd",
        str(tun_fd),
        "--sock-fd",
        str(theirs.fileno()),
        "--status-fd",
        str(status_w),
        "--mtu",
        str(tun.mtu),
        "--spec",
        config.describe(),
    ]
    if vnet_hdr:
        argv.append("--vnet")
    try:
        child = subprocess.Popen(argv, pass_fds=(tun_fd, theirs.fileno(), status_w))
    except BaseException:
        ours.close()
        os.close(status_r)
        raise
    finally:
        theirs.close()
        os.close(status_w)
    return SocketLink(ours, tun.mtu, vnet_hdr, child, status_r)


# ----------------------------------------------------------------------
# The child: two pipes on an epoll loop


class PathLoop:
    """Moves packets TUN -> inbound pipe -> socket and socket -> outbound
    pipe -> TUN, each released at its own due time on the monotonic clock.

    Kept free of process set-up so tests can drive it on any two fds.
    """

    def __init__(
        self,
        tun_fd: int,
        sock: socket.socket,
        config: ImpairConfig,
        mtu: int,
        vnet_hdr: bool,
    ) -> None:
        self.tun_fd = tun_fd
        self.sock = sock
        self.counters: Counter[str] = Counter()
        rules = _Rules(config.rules)
        into_stack, into_kernel = (True, False) if vnet_hdr else (None, None)
        self.inbound = Pipe(
            IN, config.inbound, rules, mtu, self.counters, None, into_stack
        )
        self.outbound = Pipe(
            OUT, config.outbound, rules, mtu, self.counters, None, into_kernel
        )
        self._at = vnet.LENGTH if vnet_hdr else 0
        self._read_size = max(65535, mtu + 4) + self._at
        self.eof = False
        self.slack = RELEASE_SLACK

    def _from_tun(self, now: float) -> None:
        read, fd, size, at = os.read, self.tun_fd, self._read_size, self._at
        push = self.inbound.push
        for _ in range(256):
            try:
                packet = read(fd, size)
            except BlockingIOError:
                return
            if len(packet) <= at or packet[at] >> 4 != 4:
                self.counters["in.non_ipv4"] += 1
                continue
            push(packet, now)

    def _from_sock(self, now: float) -> None:
        recv, push = self.sock.recv, self.outbound.push
        for _ in range(256):
            try:
                packet = recv(MESSAGE_SIZE)
            except BlockingIOError:
                return
            except ConnectionError:
                self.eof = True
                return
            if not packet:
                self.eof = True  # the stack closed its end
                return
            push(packet, now)

    def release(self, now: float) -> None:
        fd = self.tun_fd
        for packet in self.outbound.pop_due(now):
            try:
                os.write(fd, packet)
            except OSError as exc:
                if not isinstance(exc, BlockingIOError) and exc.errno != errno.ENOBUFS:
                    raise
                self.counters["out.tun_drop"] += 1
        send = self.sock.send
        for packet in self.inbound.pop_due(now):
            try:
                send(packet)
            except BlockingIOError:
                self.counters["in.socket_drop"] += 1
            except OSError:
                self.eof = True
                return

    def timeout(self, now: float) -> float:
        """Seconds to the next release (-1: wait for input only)."""
        times = [
            t for t in (self.inbound.next_release(), self.outbound.next_release())
            if t is not None
        ]
        if not times:
            return -1
        return max(min(times) - now, 0.0)

    def run(self, clock: Any = time.monotonic) -> None:
        """Until the socket reaches end-of-file."""
        sock_fd = self.sock.fileno()
        fds = [self.tun_fd, sock_fd]
        c = self.counters
        while not self.eof:
            # select() takes its timeout in microseconds (a timeval, woken
            # by an hrtimer within its ~50 us slack) where epoll and poll
            # round it up to whole milliseconds: releases up to 1 ms late
            # are up to 1 ms of jitter on every packet, data and ACKs,
            # which a delivery-rate estimator over a ~40 ms interval reads
            # as a few % of extra bandwidth (docs/benchmarks.md, issue 14:
            # the bottleneck's queue). A router's link releases on time.
            # It wakes RELEASE_SLACK after the next due time (packets due
            # meanwhile go in the same pass); wake-ups later than that, the
            # process waiting for a CPU, count in path.late_*.
            before = clock()
            wait = self.timeout(before)
            if wait > 0:
                wait += self.slack
            ready, _, _ = select.select(fds, (), (), None if wait < 0 else wait)
            now = clock()
            if wait >= 0 and not ready:
                late_us = int((now - before - wait) * 1e6)
                c["path.timed_wakeups"] += 1
                if late_us > 2000:
                    c["path.late_over_2ms"] += 1
                if late_us > c["path.late_max_us"]:
                    c["path.late_max_us"] = late_us
            for fd in ready:
                if fd == sock_fd:
                    self._from_sock(now)
                else:
                    self._from_tun(now)
            self.release(now)


def _raise_priority() -> None:
    """A router's link keeps its own time on its own hardware, and Linux's
    own netem releases packets from an hrtimer in softirq, ahead of every
    task. Here the path shares the CPUs with the stack, the kernel's peer
    and whatever else runs, and a release late for want of a CPU is jitter
    on every packet it holds (ACKs most: a delivery-rate sample's interval
    is measured between two of them; a woken nice-0 task may wait for the
    next 4 ms tick). So the path process runs SCHED_FIFO at the lowest
    real-time priority: it preempts ordinary tasks when a release is due
    and sleeps in between (the kernel's RT throttling still leaves others
    5% of a CPU should it ever spin). Without the right to (not root, no
    CAP_SYS_NICE) it tries nice -10, else stays as it is. The same path
    carries every sender, so comparisons stay fair."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PATH_RT_PRIORITY))
    except OSError:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, PATH_NICE)


def child_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ustack.link.impair_proc")
    ap.add_argument("--tun-fd", type=int, required=True)
    ap.add_argument("--sock-fd", type=int, required=True)
    ap.add_argument("--status-fd", type=int, required=True)
    ap.add_argument("--mtu", type=int, required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--vnet", action="store_true")
    a = ap.parse_args(argv)
    # Ctrl-C reaches the whole process group: the stack decides when the
    # path ends (it closes the socket), so its exit summary stays complete.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _raise_priority()
    sock = socket.socket(fileno=a.sock_fd)
    sock.setblocking(False)
    os.set_blocking(a.tun_fd, False)
    loop = PathLoop(a.tun_fd, sock, parse_impair_spec(a.spec), a.mtu, a.vnet)
    try:
        loop.run()
    finally:
        with contextlib.suppress(OSError):
            os.write(a.status_fd, json.dumps(dict(loop.counters)).encode() + b"\n")
        os.close(a.status_fd)
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
