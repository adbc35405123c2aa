"""The stack: one trio task that moves packets between a link and the TCBs.

It owns demultiplexing by 4-tuple, listeners with their SYN and accept
queues, ephemeral ports, the single timer heap for every connection, and the
wake-ups of application tasks. It never parses bytes itself (ustack.wire
does) and never decides protocol behaviour (ustack.tcp does). It knows
nothing of sockets: ustack.api wraps it (`ustack.Stack` adds `socket`,
`connect` and `listen`), so the import graph runs one way, api -> stack.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import math
import random
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Self

import trio

from ustack.config import Settings
from ustack.counters import Counters
from ustack.errors import os_error
from ustack.ip.icmp_errors import IcmpError
from ustack.ip.layer import IpLayer
from ustack.ipident import ATOMIC_ID, IpIdents
from ustack.link import vnet
from ustack.link.base import Link
from ustack.protocol import ProtocolFactory, TcbTransport
from ustack.sockopts import SocketOptions
from ustack.tcp.ecn import IN_COUNTERS as IN_ECN_COUNTERS
from ustack.tcp.isn import IsnGenerator, boot_secret, system_clock
from ustack.tcp.state import State
from ustack.tcp.syncookie import SynCookies, add_synack_options
from ustack.tcp.tcb import DEFAULT_MSS, Tcb, reset_for
from ustack.tcp.timewait import TimeWait, TimeWaitTable
from ustack.udp.table import UdpTable
from ustack.wire.icmp import DEST_UNREACHABLE, PORT_UNREACHABLE, PROTOCOL_UNREACHABLE
from ustack.wire.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    TcpPacketBuilder,
    build_tcp_packet,
    parse_ipv4,
    parse_tcp_packet,
    with_full_tcp_checksum,
)
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, WireError, parse_tcp
from ustack.wire.udp import PROTO_UDP

Key = tuple[bytes, int, int]  # (remote ip, remote port, local port)
BATCH = 256  # packets read per wake-up before the TCBs are flushed
_VNET_LEN = vnet.LENGTH
# The kernel vouches for the checksum (vnet.checksum_trusted).
_TRUST = vnet.F_NEEDS_CSUM | vnet.F_DATA_VALID
_VNET_ONE_SEGMENT = vnet.tcp_header(20, 20, 0, 1)  # partial checksum, no GSO
_BUSY_POLL_SLICE = 0.001  # s: busy polling yields to other tasks this often
_PORTS_SEQ = struct.Struct("!HHI")  # a quoted TCP header's first 8 bytes
_SYN_RECEIVED = State.SYN_RECEIVED  # module constants: no attribute lookups
_CLOSED = State.CLOSED
_TIME_WAIT = State.TIME_WAIT


class Conn:
    """The stack's bookkeeping for one TCB (kept in `tcb.owner`)."""

    __slots__ = (
        "key",
        "_lot",
        "listener",
        "heap_deadline",
        "dirty",
        "orphan",
        "last_state",
        "transport",
    )

    def __init__(self, key: Key, listener: Listening | None = None) -> None:
        self.key = key
        # Created when a task first waits: most wake-ups find nobody parked,
        # and an idle connection should not carry a ParkingLot (~250 B).
        self._lot: trio.lowlevel.ParkingLot | None = None
        self.listener = listener  # set until the connection is accepted
        self.heap_deadline: float | None = None
        self.dirty = False
        self.orphan = False
        self.last_state = State.CLOSED
        # Set for a connection served by protocol callbacks (ustack.protocol)
        # instead of a task: the loop calls it where it would wake a task.
        self.transport: TcbTransport | None = None

    @property
    def lot(self) -> trio.lowlevel.ParkingLot:
        """Where the connection's tasks wait for readable/writable/closed."""
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        return self._lot

    def wake(self) -> bool:
        """Wake every task waiting on this connection (they re-check);
        True if there was one."""
        lot = self._lot
        if lot:
            lot.unpark_all()
            return True
        return False


class Listening:
    """A listening port: SYN queue (half-open) and accept queue (RFC 9293 3.10.7.2)."""

    __slots__ = (
        "port",
        "backlog",
        "half_open",
        "ready",
        "lot",
        "closed",
        "options",
        "factory",
    )

    def __init__(self, port: int, backlog: int, options: SocketOptions) -> None:
        self.port = port
        self.backlog = backlog
        self.half_open = 0
        self.ready: deque[Tcb] = deque()
        self.lot = trio.lowlevel.ParkingLot()
        self.closed = False
        self.options = options  # socket options inherited by accepted sockets
        # With a protocol factory, established connections skip the accept
        # queue: each gets a protocol object driven by the packet loop.
        self.factory: ProtocolFactory | None = None


class Stack:
    """The engine of a user-space TCP/IP stack answering as `ip` on `link`
    (`ustack.Stack`, in ustack.api, adds the socket API on top).

    Use as `async with Stack(link, ip="10.0.0.2") as stack:`; the packet loop
    runs while the block does, and leaving it closes every connection (FIN,
    then RST for whatever has not finished within `settings.shutdown_grace`).
    """

    def __init__(
        self,
        link: Link,
        ip: str,
        settings: Settings | None = None,
        network: str | None = None,
    ) -> None:
        """`network` (e.g. "10.203.0.0/24") lets the stack also refuse
        packets from that subnet's broadcast address."""
        self.link = link
        self.ip = ip
        self.ip_bytes = ipaddress.IPv4Address(ip).packed
        # Sources that no real host has (RFC 1122 3.2.1.3, RFC 1812 5.3.7):
        # ours (LAND), broadcast, and the subnet broadcast.
        self._bad_sources = {self.ip_bytes, b"\xff\xff\xff\xff"}
        if network is not None:
            net = ipaddress.IPv4Network(network, strict=False)
            self._bad_sources.add(net.broadcast_address.packed)
        self.settings = settings if settings is not None else Settings()
        self.mss = link.mtu - 40  # IPv4 and TCP headers without options
        self._vnet = bool(getattr(link, "vnet_hdr", False))
        # With segmentation offload a TCB may hand over segments of many MSS,
        # up to the largest IPv4 packet (less room for IP and TCP headers).
        self.tso_limit = 65535 - 20 - 60 if self._vnet else 0
        # Every TCP segment of one wire segment: prefix, IPv4 and TCP headers
        # in one pack (with offload only the pseudo-header sum, behind the
        # constant virtio-net header). IP ID 0: DF datagrams (RFC 6864).
        self._tcp_builder = TcpPacketBuilder(
            self.ip_bytes, ident=ATOMIC_ID,
            prefix=_VNET_ONE_SEGMENT if self._vnet else b"",
            partial_csum=self._vnet,
        )
        self.counters: Counter[str] = Counters()
        self._conns: dict[Key, Tcb] = {}
        self._listeners: dict[int, Listening] = {}
        self._bound: Counter[int] = (
            Counter()
        )  # ports held by bound, unlistening sockets
        self._heap: list[tuple[float, int, Tcb]] = []
        self._heap_stale = 0  # entries whose TCB moved its timer or closed
        # TIME_WAIT records: compact rows, not TCBs (ustack/tcp/timewait.py).
        self._timewait = TimeWaitTable(self.ip_bytes, self.counters)
        self._conns_changed = trio.Event()
        self._heap_seq = itertools.count()
        self._dirty: list[Tcb] = []
        # ISNs and timestamp offsets: one secret and one clock for every
        # process of this boot, so neither restarts with ustack (isn.py).
        self._isn = IsnGenerator(boot_secret())
        self._system_clock: Callable[[], float] = system_clock
        self._cookies = SynCookies()
        self._cookies_until = -math.inf
        self._ip_idents = IpIdents()  # for datagrams without DF
        self._rng = random.SystemRandom()
        self._orphans = 0
        self._wait_scope: trio.CancelScope | None = None
        self._wait_deadline = math.inf  # _wait_scope's deadline, as a plain float
        self._woke = False  # the batch woke a task: it runs before we poll
        self._nursery: trio.Nursery | None = None
        self._running = False
        # Packet taps (pcap, live traces): called as tap(outgoing, packet, now).
        self.taps: list[Callable[[bool, bytes, float], None]] = []
        # State observers (logging, traces): observer(conn, old, new, now), where
        # conn is a Tcb, or a TimeWait record for the TIME_WAIT -> CLOSED step.
        self.state_observers: list[
            Callable[[Tcb | TimeWait, State, State, float], None]
        ] = []
        # Timer observers (debug logging): observer(tcb, timer_name, now), with
        # timer_name one of retransmit, persist, fin_wait2, delack, keepalive.
        self.timer_observers: list[Callable[[Tcb, str, float], None]] = []
        # Fragments, ICMP and path MTU; UDP sockets (ustack.ip, ustack.udp).
        self.ip_layer = IpLayer(
            self.ip_bytes,
            link.mtu,
            self.settings,
            self.counters,
            self._write,
            self._next_ident,
        )
        self.ip_layer.on_error = self._on_icmp_error
        self.udp = UdpTable(
            self.ip_bytes, self.settings, self.counters, self._send_datagram
        )

    # ------------------------------------------------------------------
    # Lifecycle

    async def __aenter__(self) -> Self:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._running = True
        self._nursery.start_soon(self._packet_loop)
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        try:
            with trio.CancelScope(shield=True):
                await self._shutdown()
        finally:
            self._running = False
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()
            result = await self._nursery_cm.__aexit__(*exc_info)  # type: ignore[arg-type]
        return result

    async def _shutdown(self) -> None:
        """Orderly close of every connection, then RST for the stragglers."""
        now = trio.current_time()
        for listening in list(self._listeners.values()):
            self.close_listener(listening)
        for tcb in list(self._conns.values()):
            if tcb.state is not State.CLOSED:
                tcb.close(now)
                self.kick(tcb)
        with trio.move_on_after(self.settings.shutdown_grace):
            while self._conns:  # TIME_WAIT records live elsewhere
                self._conns_changed = trio.Event()
                await self._conns_changed.wait()
        now = trio.current_time()
        for tcb in list(self._conns.values()):
            tcb.abort(now)
            self.kick(tcb)
        self._conns.clear()
        self._timewait.clear()

    # ------------------------------------------------------------------
    # The packet loop

    async def _packet_loop(self) -> None:
        # One cancel scope covers many wake-ups: it only has to end the wait
        # when the earliest timer is due. A scope per wait cost ~10 us per
        # wake-up on a 2-core VM (issue 11), a twentieth of a 1-byte
        # exchange. A deadline that moves earlier lowers the scope's
        # (`_schedule`, `_timers_and_wait_deadline`); one that moves later
        # makes the scope end early once, harmlessly: the timers then find
        # nothing due and the next scope waits for the real one.
        while True:
            deadline = self._next_deadline()
            with trio.CancelScope(deadline=deadline) as scope:
                self._wait_scope, self._wait_deadline = scope, deadline
                await self._serve_link()
            self._wait_scope, self._wait_deadline = None, math.inf
            self._run_timers(trio.current_time())

    async def _serve_link(self) -> None:
        """Wait for the link, serve what it has, run due timers; until the
        caller's scope ends the wait (a timer is due) or cancels the stack."""
        link = self.link
        while True:
            # A checkpoint: with packets waiting it yields once to the tasks
            # the last batch woke, so they answer before the next batch.
            await link.wait_readable()
            served = self._drain()
            self._timers_and_wait_deadline()
            if served and self.settings.busy_poll and not self._woke:
                self._busy_poll(self.settings.busy_poll * 1e-6)
            self._woke = False

    def _drain(self) -> bool:
        """Serve batches until the link is empty; False if it had nothing."""
        link = self.link
        served = False
        stamped = getattr(link, "arrival_times", None)
        while True:
            batch = link.read_batch(BATCH)
            if not batch:
                return served
            served = True
            now = trio.current_time()
            if stamped is not None:
                self._input_stamped(batch, stamped(now))
            elif self._vnet:
                if self.taps:
                    for packet in batch:
                        self._input_vnet(packet, now)
                else:  # _input_vnet inlined: a call less per packet
                    inp = self._input
                    for packet in batch:
                        inp(memoryview(packet)[_VNET_LEN:], now, not packet[0] & _TRUST)
            else:
                if self.taps:
                    self._tap_all(batch, now)
                for packet in batch:
                    self._input(packet, now)
            self._flush_dirty(now)
            if len(batch) < BATCH:
                # The read that ended the batch found the device empty:
                # another read would only cost a syscall to say so again.
                return True

    def _input_stamped(self, batch: list[bytes], times: list[float]) -> None:
        """Each packet with the time it arrived, from a link that knows it
        (impair_proc.SocketLink): Linux takes its ACK and RTT clock in the
        softirq right after the NIC, not when a preempted process gets
        round to the packet (issue 14: delivery-rate samples)."""
        vnet = self._vnet
        for packet, t in zip(batch, times, strict=True):
            if vnet:
                self._input_vnet(packet, t)
            else:
                if self.taps:
                    self._tap_all([packet], t)
                self._input(packet, t)

    def _busy_poll(self, budget: float) -> None:
        """Linux busy polling (net.core.busy_read, sk_busy_loop): keep
        reading for `budget` seconds after the last packet instead of
        sleeping in epoll and paying the wake-up. Stops as soon as a batch
        wakes a task (it must run to answer; Linux stops on need_resched)
        and at least every millisecond, so other tasks, signals and trio's
        own timers wait no longer than that."""
        clock = time.perf_counter
        start = clock()
        until, yield_at = start + budget, start + _BUSY_POLL_SLICE
        while True:
            if self._drain():
                self._timers_and_wait_deadline()
                now = clock()
                if self._woke or now >= yield_at:
                    return
                until = now + budget
            elif clock() >= until:
                return

    def _timers_and_wait_deadline(self) -> None:
        """Run due timers; let the wait end no later than the next one."""
        deadline = self._next_deadline()
        if deadline <= (now := trio.current_time()):
            self._run_timers(now)
            deadline = self._next_deadline()
        if deadline < self._wait_deadline:
            self._lower_wait(deadline)

    def _lower_wait(self, deadline: float) -> None:
        """End the loop's wait no later than `deadline`."""
        scope = self._wait_scope
        if scope is not None:
            scope.deadline = self._wait_deadline = deadline

    def _next_deadline(self) -> float:
        """The earliest timer of the stack: TCBs, TIME_WAIT, IP reassembly."""
        deadline = self._heap[0][0] if self._heap else math.inf
        tw_deadline = self._timewait.next_deadline()
        if tw_deadline < deadline:
            deadline = tw_deadline
        ip_deadline = self.ip_layer.deadline
        if ip_deadline is not None and ip_deadline < deadline:
            deadline = ip_deadline
        return deadline

    def _tap_all(self, packets: list[bytes], now: float) -> None:
        for packet in packets:
            for tap in self.taps:
                tap(False, packet, now)

    def _input_vnet(self, packet: bytes, now: float) -> None:
        """A packet behind a virtio-net header (TUN with offload)."""
        trusted = vnet.checksum_trusted(packet[0])
        ip_packet = memoryview(packet)[vnet.LENGTH :]
        if self.taps:  # captures get complete checksums, not partial ones
            seen = with_full_tcp_checksum(ip_packet) if trusted else bytes(ip_packet)
            self._tap_all([seen], now)
        self._input(ip_packet, now, verify=not trusted)

    def _input(
        self, packet: bytes | memoryview, now: float, verify: bool = True
    ) -> None:
        counters = self.counters
        counters["InReceives"] += 1
        fast = parse_tcp_packet(packet, verify)
        if fast is not None:  # the usual segment: one unpack, no Ipv4Packet
            src, dst, seg = fast
            first = src[0]
            if dst == self.ip_bytes and not (
                first == 0 or first == 127 or first >= 224 or src in self._bad_sources
            ):
                counters["InSegs"] += 1
                if seg.ecn:  # RFC 3168: the TCB sees the IP ECN codepoint
                    counters[IN_ECN_COUNTERS[seg.ecn]] += 1
                self._input_tcp(src, seg, now)
                return
            # Not for us, or from no real peer: the full path counts why.
        try:
            ip = parse_ipv4(packet, fragments=True)
        except WireError as exc:
            counters["InHdrErrors." + exc.reason] += 1
            return
        if ip.dst != self.ip_bytes:
            counters["InAddrErrors"] += 1
            return
        src = ip.src
        # 0/8 "this network", 127/8 loopback, 224/4 multicast and 240/4 are
        # never a TCP peer's source address (RFC 1122 3.2.1.3): drop silently.
        first = src[0]
        if first == 0 or first == 127 or first >= 224 or src in self._bad_sources:
            counters["InAddrErrors.bad_source"] += 1
            return
        if ip.frag:  # RFC 791 3.2: reassemble, then deliver the whole
            whole = self.ip_layer.reassemble(ip, packet, now)
            if whole is None:
                return
            ip, packet = whole
            verify = True
        if ip.proto == PROTO_TCP:
            try:
                seg = parse_tcp(ip.payload, ip.src, ip.dst, verify)
            except WireError as exc:
                counters["InErrs"] += 1
                counters["InErrs." + exc.reason] += 1
                if exc.reason == "bad_tcp_csum":
                    counters["InCsumErrors"] += 1
                return
            counters["InSegs"] += 1
            if ip.ecn:  # RFC 3168: the TCB sees the IP ECN codepoint
                seg.ecn = ip.ecn
                counters[IN_ECN_COUNTERS[ip.ecn]] += 1
            self._input_tcp(src, seg, now)
        elif ip.proto == PROTO_UDP:
            self._woke = True  # a reader may be waiting: no busy polling
            if not self.udp.input(src, ip.payload, verify):
                self._unreachable(src, packet, PORT_UNREACHABLE, now)
        elif ip.proto == PROTO_ICMP:
            self.ip_layer.input_icmp(src, ip.payload, now)
        else:
            counters["InUnknownProtos"] += 1
            self._unreachable(src, packet, PROTOCOL_UNREACHABLE, now)

    def _unreachable(
        self, src: bytes, packet: bytes | memoryview, code: int, now: float
    ) -> None:
        """RFC 1122 3.2.2.1 / 4.1.3.1: port or protocol unreachable."""
        self.ip_layer.send_error(src, packet, DEST_UNREACHABLE, code, now)

    def _send_datagram(self, dst: bytes, proto: int, payload: bytes) -> None:
        self.ip_layer.send(dst, proto, payload, trio.current_time())

    def _on_icmp_error(self, err: IcmpError, now: float) -> None:
        """An ICMP error about one of our packets: learn the path MTU, then
        hand it to the connection or socket the quoted header names."""
        quoted = err.quoted
        if quoted.proto == PROTO_UDP:
            if err.mtu is not None:
                self.ip_layer.learn_mtu(quoted.dst, err.mtu, now)
            self.udp.on_icmp_error(err)
            return
        if quoted.proto != PROTO_TCP:
            if err.mtu is not None:
                self.ip_layer.learn_mtu(quoted.dst, err.mtu, now)
            return
        sport, dport, seq = _PORTS_SEQ.unpack_from(quoted.transport)
        tcb = self._conns.get((quoted.dst, dport, sport))
        if tcb is None or not tcb.icmp_acceptable(seq):
            return
        was = tcb.state
        if err.mtu is not None:
            self.ip_layer.learn_mtu(quoted.dst, err.mtu, now)
            tcb.on_path_mtu(self.ip_layer.mtu_to(quoted.dst, now), now)
        else:
            tcb.on_icmp_error(err.errno, err.hard, now)
        if was is State.SYN_RECEIVED and tcb.state is State.CLOSED:
            self._on_passive_established(tcb)  # leaves the SYN queue
        self._after(tcb)

    def _input_tcp(
        self, src: bytes, seg: TcpSegment, now: float, iss: int | None = None
    ) -> None:
        """`iss` is set when a SYN reopens a TIME_WAIT tuple (RFC 6191)."""
        key = (src, seg.src_port, seg.dst_port)
        tcb = self._conns.get(key)
        if tcb is not None:  # first: an established connection's segment
            was = tcb.state
            if was is _SYN_RECEIVED and self._accept_queue_full(tcb, seg):
                return
            try:
                tcb.on_segment(seg, now)
            except Exception as exc:  # a bug must cost one connection only
                self._internal_error(tcb, exc)
                return
            if was is _SYN_RECEIVED and tcb.state is not _SYN_RECEIVED:
                self._on_passive_established(tcb)
            conn: Conn = tcb.owner  # _mark_dirty, inlined (once a segment)
            if not conn.dirty:
                conn.dirty = True
                self._dirty.append(tcb)
            return
        if self._timewait:
            row = self._timewait.find(key)
            if row is not None:
                self._input_time_wait(row, src, seg, now)
                return
        listening = self._listeners.get(seg.dst_port)
        flags = seg.flags
        if listening is not None:
            # RFC 9293 3.10.7.2: LISTEN ignores RST, answers a bare ACK with RST.
            control = flags & (SYN | ACK | RST)
            if control == SYN:
                if flags & FIN or seg.src_port == 0:
                    # SYN+FIN is a scan, port 0 no real peer: drop, as Linux.
                    self.counters["InErrs.bad_syn"] += 1
                    return
                self._on_syn(listening, src, seg, now, iss)
                return
            if flags & RST or not control:
                return  # RFC 9293 3.10.7.2: RST ignored; no SYN/ACK: dropped
            if (
                control == ACK
                and now < self._cookies_until
                and self._accept_cookie(listening, src, seg, now)
            ):
                return
        # Nobody here: answer with RST (RFC 9293 3.10.7.1).
        reply = reset_for(seg)
        if reply is not None:
            self._send(src, reply)
            self.counters["OutRsts"] += 1

    def _on_syn(
        self,
        listening: Listening,
        src: bytes,
        seg: TcpSegment,
        now: float,
        iss: int | None = None,
    ) -> None:
        s = self.settings
        if len(listening.ready) >= listening.backlog:
            # Accept queue full: drop, the client will retransmit its SYN.
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            return
        if listening.half_open >= s.max_syn_backlog or len(self._conns) >= (
            s.max_connections
        ):
            # Out of room for state: answer statelessly (or drop).
            if s.syncookies:
                self._send_syn_cookie(src, seg, now)
            else:
                self.counters["ListenDrops"] += 1
            return
        key = (src, seg.src_port, seg.dst_port)
        tcb = self._new_tcb(key, now, listening.options, listening, iss)
        tcb.open_passive(seg, now)
        listening.half_open += 1
        self.counters["PassiveOpens"] += 1
        self._mark_dirty(tcb)

    def _new_tcb(
        self,
        key: Key,
        now: float,
        options: SocketOptions,
        listener: Listening | None = None,
        iss: int | None = None,
    ) -> Tcb:
        """A TCB for `key`, with its bookkeeping, registered for demux."""
        remote_ip, remote_port, local_port = key
        clock = self._system_clock()
        if iss is None:
            iss = self._isn(clock, self.ip_bytes, local_port, remote_ip, remote_port)
        tcb = Tcb(
            self.settings,
            (self.ip_bytes, local_port),
            (remote_ip, remote_port),
            iss,
            self.ip_layer.mtu_to(remote_ip, now) - 40,  # RFC 1191 path MTU
            now,
            self.counters,
        )
        tcb.tso_limit = self.tso_limit
        tcb.ts_offset = self._isn.ts_offset(self.ip_bytes, remote_ip, clock - now)
        tcb.owner = Conn(key, listener)
        self.apply_options(tcb, options)
        self._conns[key] = tcb
        return tcb

    def _send_syn_cookie(self, src: bytes, seg: TcpSegment, now: float) -> None:
        """SYN queue full: answer with a stateless SYN-ACK (RFC 4987 3.6)."""
        tuple4 = _tuple4(src, seg.src_port, self.ip_bytes, seg.dst_port)
        iss, _ = self._cookies.make(now, tuple4, seg.seq, seg.mss or DEFAULT_MSS)
        window = min(self.settings.rcv_buf, 0xFFFF)
        reply = TcpSegment(
            seg.dst_port,
            seg.src_port,
            iss,
            (seg.seq + 1) & 0xFFFFFFFF,
            SYN | ACK,
            window,
            mss=self.mss,  # ours; the cookie keeps the client's (rounded down)
        )
        # The TSval the TCB made from this cookie would send now (_new_tcb).
        shift = self._system_clock() - now
        tsval = int(now * 1000) + self._isn.ts_offset(self.ip_bytes, src, shift)
        add_synack_options(reply, seg, self.settings, tsval & 0xFFFFFFFF)
        self._send(src, reply)
        self._cookies_until = now + 128.0  # cookies live two 64 s ticks
        self.counters["SyncookiesSent"] += 1

    def _accept_cookie(
        self, listening: Listening, src: bytes, seg: TcpSegment, now: float
    ) -> bool:
        """An ACK with no connection may complete a SYN-cookie handshake."""
        tuple4 = _tuple4(src, seg.src_port, self.ip_bytes, seg.dst_port)
        client_isn = (seg.seq - 1) & 0xFFFFFFFF
        cookie = (seg.ack - 1) & 0xFFFFFFFF
        mss = self._cookies.check(now, tuple4, client_isn, cookie)
        if mss is None:
            self.counters["SyncookiesFailed"] += 1
            return False
        if (
            len(listening.ready) >= listening.backlog
            or len(self._conns) >= self.settings.max_connections
        ):
            self.counters["ListenOverflows"] += 1
            return True  # drop the ACK; the client retransmits its data or ACK
        self.counters["SyncookiesRecv"] += 1
        key = (src, seg.src_port, seg.dst_port)
        tcb = self._new_tcb(key, now, listening.options)
        conn: Conn = tcb.owner
        tcb.open_from_cookie(seg, mss, now)
        conn.last_state = State.ESTABLISHED
        self.counters["PassiveOpens"] += 1
        if seg.payload or seg.flags & FIN:
            tcb.on_segment(seg, now)
        conn.listener = listening
        self._enqueue_accepted(listening, tcb)
        self._mark_dirty(tcb)
        return True

    def _accept_queue_full(self, tcb: Tcb, seg: TcpSegment) -> bool:
        """Linux drops the handshake's final ACK while the accept queue is full;
        the SYN-ACK is retransmitted and the client's ACK retried later."""
        listening = tcb.owner.listener
        if listening is None or seg.flags & (ACK | RST | SYN) != ACK:
            return False
        if len(listening.ready) < listening.backlog:
            return False
        self.counters["ListenOverflows"] += 1
        return True

    def _on_passive_established(self, tcb: Tcb) -> None:
        conn: Conn = tcb.owner
        listening = conn.listener
        if listening is None:
            return
        listening.half_open -= 1
        if tcb.state is State.CLOSED:
            conn.listener = None
            return
        self._enqueue_accepted(listening, tcb)

    def _enqueue_accepted(self, listening: Listening, tcb: Tcb) -> None:
        """An established connection: to the accept queue, or straight to a
        new protocol object when the listener has a factory."""
        factory = listening.factory
        if factory is None:
            listening.ready.append(tcb)
            if listening.lot:
                listening.lot.unpark_all()
                self._woke = True
            return
        conn: Conn = tcb.owner
        conn.listener = None
        transport = TcbTransport(tcb, factory(), self)
        conn.transport = transport
        transport.made()  # the caller marks the TCB dirty: one flush for all

    def _mark_dirty(self, tcb: Tcb) -> None:
        conn: Conn = tcb.owner
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(tcb)

    def _flush_dirty(self, now: float) -> None:
        dirty, self._dirty = self._dirty, []
        for tcb in dirty:
            conn: Conn = tcb.owner
            conn.dirty = False
            try:
                transport = conn.transport
                if transport is not None:
                    # Before the flush, so the reply carries the ACK.
                    transport.service()
                tcb.flush(now)
            except Exception as exc:
                self._internal_error(tcb, exc)
                continue
            self._after(tcb, serviced=True)

    def _run_timers(self, now: float) -> None:
        if self._timewait.next_deadline() <= now:
            self._expire_time_wait(now)
        ip_deadline = self.ip_layer.deadline
        if ip_deadline is not None and ip_deadline <= now:
            self.ip_layer.expire(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, tcb = heapq.heappop(heap)
            conn: Conn = tcb.owner
            if conn.heap_deadline != deadline:
                self._heap_stale = max(0, self._heap_stale - 1)
                continue  # stale entry: the TCB's timer moved
            conn.heap_deadline = None
            if tcb.deadline is None or tcb.deadline > now:
                self._schedule(tcb)
                continue
            if self.timer_observers:
                self._report_timers(tcb, now)
            was = tcb.state
            try:
                tcb.on_timer(now)
            except Exception as exc:
                self._internal_error(tcb, exc)
                continue
            if was is State.SYN_RECEIVED and tcb.state is State.CLOSED:
                self._on_passive_established(tcb)
            self._after(tcb)

    def _report_timers(self, tcb: Tcb, now: float) -> None:
        fired = [
            name
            for name, deadline in (
                ("persist" if tcb.persist else "retransmit", tcb.rtx_deadline),
                (
                    "timewait" if tcb.state is State.TIME_WAIT else "fin_wait2",
                    tcb.close_deadline,
                ),
                ("delack", tcb.delack_deadline),
                ("keepalive", tcb.ka_deadline),
            )
            if deadline is not None and deadline <= now
        ]
        for name in fired:
            for observer in self.timer_observers:
                observer(tcb, name, now)

    # ------------------------------------------------------------------
    # After every TCB call: send its segments, reschedule, wake, reap.

    def _internal_error(self, tcb: Tcb, exc: Exception) -> None:
        """A bug met one connection: reset it, count it, keep the stack up."""
        self.counters["InternalErrors"] += 1
        print(
            f"ustack: internal error, connection reset: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        tcb.outbox.clear()
        tcb.abort(trio.current_time())
        tcb.error = os_error(errno.ECONNABORTED, f"internal error: {exc!r}")
        self._after(tcb)

    def _after(self, tcb: Tcb, serviced: bool = False) -> None:
        """`serviced`: the transport was just served before the flush
        (`_flush_dirty`); a flush frees no send buffer, so do not again."""
        conn: Conn = tcb.owner
        transport = conn.transport
        if transport is not None and not serviced and transport.service():
            # An ACK made room, or a timer or call changed something the
            # protocol acted on: send what it wrote now.
            try:
                tcb.flush(trio.current_time())
            except Exception as exc:
                self._internal_error(tcb, exc)
                return
        outbox = tcb.outbox
        if outbox:
            remote = tcb.remote_ip
            try:
                if self.taps:
                    for seg in outbox:
                        self._send(remote, seg, tcb.mss)
                else:  # _send, inlined: the usual segment, no capture
                    build = self._tcp_builder.build
                    write = self.link.write
                    mss = tcb.mss if self._vnet else 0xFFFF
                    sent = 0
                    for seg in outbox:
                        if len(seg.payload) <= mss:
                            write(build(remote, seg))
                            sent += 1
                        else:  # a GSO super segment
                            self._send(remote, seg, mss)
                    self.counters["OutSegs"] += sent
            except Exception as exc:
                outbox.clear()
                self._internal_error(tcb, exc)
                return
            outbox.clear()
        state = tcb.state
        if state is not conn.last_state:
            old, conn.last_state = conn.last_state, state
            for observer in self.state_observers:
                observer(tcb, old, state, trio.current_time())
        if state is not _CLOSED and state is not _TIME_WAIT:
            # _schedule's usual outcome, inlined: the entry held fires first.
            deadline = tcb.deadline
            held = conn.heap_deadline
            if deadline is not None and (held is None or held > deadline):
                self._schedule(tcb)
            if transport is None and conn.wake():
                self._woke = True
            return
        if state is _CLOSED:
            self._reap(tcb, conn)
        else:
            self._enter_time_wait(tcb, conn)
        if transport is not None:
            # Break the tcb -> conn -> transport -> tcb cycle now, so the
            # connection is freed by reference counting, not a later cyclic
            # GC pass (100,000 TIME_WAITs would otherwise pin their TCBs).
            conn.transport = None
            transport.lost()
        elif conn.wake():
            self._woke = True

    def _send(self, dst: bytes, seg: TcpSegment, mss: int = 0xFFFF) -> None:
        # Every TCP datagram has DF: IP ID 0 (RFC 6864; see ustack/ipident.py).
        if not self.taps and len(seg.payload) <= mss:
            self.link.write(self._tcp_builder.build(dst, seg))
        elif self._vnet:
            # Offload: the kernel completes the checksum (and segments a
            # payload longer than the MSS); we only sum the pseudo-header.
            packet = build_tcp_packet(
                self.ip_bytes, dst, seg, ATOMIC_ID, partial_csum=True
            )
            plen = len(seg.payload)
            if plen <= mss:  # one wire segment: the header is a constant
                header = _VNET_ONE_SEGMENT
            else:
                header = vnet.tcp_header(20, len(packet) - 20 - plen, plen, mss)
            if self.taps:  # captures get complete checksums, not partial ones
                self._tap_out(with_full_tcp_checksum(packet))
            self.link.write(header + packet)
        else:
            self._write(build_tcp_packet(self.ip_bytes, dst, seg, ATOMIC_ID))
        self.counters["OutSegs"] += 1

    def _write(self, packet: bytes) -> None:
        """Send a packet whose checksums are complete."""
        if self.taps:
            self._tap_out(packet)
        self.link.write(vnet.PLAIN + packet if self._vnet else packet)

    def _tap_out(self, packet: bytes) -> None:
        now = trio.current_time()
        for tap in self.taps:
            tap(True, packet, now)

    def _next_ident(self, dst: bytes) -> int:
        """The IP ID of a datagram to `dst` without DF (fragmentable)."""
        return self._ip_idents(dst)

    def _schedule(self, tcb: Tcb) -> None:
        deadline = tcb.deadline
        conn: Conn = tcb.owner
        held = conn.heap_deadline
        if deadline is None or (held is not None and held <= deadline):
            # Re-armed later (the RTO on every ACK) or cancelled: the entry
            # held fires first, finds nothing due and re-arms for the TCB's
            # deadline then (lazily, as a timer wheel's cascade would): one
            # heap push per timer period instead of one per packet.
            return
        if held is not None:
            self._heap_stale += 1  # the old entry stays until popped or pruned
        conn.heap_deadline = deadline
        heapq.heappush(self._heap, (deadline, next(self._heap_seq), tcb))
        if self._heap_stale * 2 > len(self._heap):
            self._prune_heap()
        if deadline < self._wait_deadline:
            self._lower_wait(deadline)

    def _prune_heap(self) -> None:
        """Drop stale timer entries (moved timers, closed connections), so a
        far-off timer of a closed connection (keepalive: 2 h) cannot pin it."""
        self._heap[:] = [  # in place: _run_timers may hold the list
            entry for entry in self._heap if entry[2].owner.heap_deadline == entry[0]
        ]
        heapq.heapify(self._heap)
        self._heap_stale = 0

    def _reap(self, tcb: Tcb, conn: Conn) -> None:
        if self._conns.get(conn.key) is tcb:
            del self._conns[conn.key]
            self._conns_changed.set()
        if conn.heap_deadline is not None:
            self._heap_stale += 1
            if self._heap_stale * 2 > len(self._heap):
                self._prune_heap()
        conn.heap_deadline = None
        if conn.listener is not None and tcb in conn.listener.ready:
            conn.listener.ready.remove(tcb)
        if conn.orphan:
            conn.orphan = False
            self._orphans -= 1

    def _enter_time_wait(self, tcb: Tcb, conn: Conn) -> None:
        """Swap a TCB that reached TIME_WAIT for a compact record."""
        assert tcb.close_deadline is not None
        timestamps = None
        if tcb.ts_ok:
            # Keep TS.Recent (RFC 6191 reopen, PAWS) and our TSval clock.
            ts_base = (tcb._tsval() - int(tcb.clock * 1000)) & 0xFFFFFFFF
            timestamps = (tcb.ts_recent, ts_base)
        snd_nxt, rcv_nxt = tcb.snd_nxt, tcb.rcv_nxt
        window, deadline = tcb.advertised_window_field(), tcb.close_deadline
        tcb.detach_time_wait()
        self._reap(tcb, conn)
        if len(self._timewait) >= self.settings.max_tw_buckets:
            # Like Linux ("time wait bucket table overflow"): skip TIME_WAIT.
            self.counters["TCPTimeWaitOverflow"] += 1
            return
        self._timewait.add(conn.key, snd_nxt, rcv_nxt, window, deadline, timestamps)
        if deadline < self._wait_deadline:
            self._lower_wait(deadline)

    def _input_time_wait(
        self, row: int, src: bytes, seg: TcpSegment, now: float
    ) -> None:
        reply, iss = self._timewait.on_segment(
            row, seg, now, 2 * self.settings.msl, self.settings.invalid_ratelimit
        )
        if reply is not None:
            self._send(src, reply)
        if iss is not None:
            self.counters["TWReused"] += 1
            self._input_tcp(src, seg, now, iss)

    def _expire_time_wait(self, now: float) -> None:
        for record in self._timewait.expire(now):
            self.counters["TWExpired"] += 1
            for observer in self.state_observers:
                observer(record, State.TIME_WAIT, State.CLOSED, now)

    def kick(self, tcb: Tcb) -> None:
        """Flush a TCB after an application call (send, read, close)."""
        tcb.flush(trio.current_time())
        self._after(tcb)

    # ------------------------------------------------------------------
    # Services for the API layer

    def now(self) -> float:
        return trio.current_time()

    def check_running(self) -> None:
        if not self._running:
            raise RuntimeError("the stack is not running: use `async with Stack(...)`")

    def port_in_use(self, port: int, reuse_addr: bool) -> bool:
        """Linux-like bind check: listeners and bound sockets always conflict;
        connections (including TIME_WAIT) conflict unless SO_REUSEADDR."""
        if port in self._listeners or self._bound[port]:
            return True
        if reuse_addr:
            return False
        return any(
            key[2] == port for key in self._conns
        ) or self._timewait.uses_local_port(port)

    def reserve_port(self, port: int) -> None:
        self._bound[port] += 1

    def release_port(self, port: int) -> None:
        if self._bound[port] > 0:
            self._bound[port] -= 1
            if not self._bound[port]:
                del self._bound[port]

    def ephemeral_port(self, remote: tuple[bytes, int]) -> int:
        """A random free port from the ephemeral range (RFC 6056 3.3.1)."""
        s = self.settings
        low, high = s.port_low, s.port_high
        span = high - low + 1
        start = self._rng.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if port in self._listeners or self._bound[port]:
                continue
            key = (remote[0], remote[1], port)
            if key not in self._conns and key not in self._timewait:
                return port
        raise os_error(errno.EADDRNOTAVAIL, "no free ephemeral port")

    def open_connection(
        self, local_port: int, remote: tuple[bytes, int], options: SocketOptions
    ) -> Tcb:
        """Create a TCB, send its SYN (active OPEN)."""
        self.check_running()
        key = (remote[0], remote[1], local_port)
        if key in self._conns:
            raise os_error(errno.EADDRINUSE, "that 4-tuple is already in use")
        if len(self._conns) >= self.settings.max_connections:
            raise os_error(
                errno.ENOBUFS,
                f"the stack holds max_connections={self.settings.max_connections}"
                " connections; close some or raise the setting",
            )
        now = trio.current_time()
        tcb = self._new_tcb(key, now, options)
        self.counters["ActiveOpens"] += 1
        tcb.open_active(now)
        self._after(tcb)
        return tcb

    def apply_options(self, tcb: Tcb, opts: SocketOptions) -> None:
        """Carry socket options into the TCB (TCP_NODELAY, keepalive)."""
        s = self.settings
        tcb.nodelay = opts.nodelay
        if opts.congestion is not None:
            tcb.set_congestion(opts.congestion)
        tcb.ka_idle = opts.keepidle or s.keepalive_time
        tcb.ka_intvl = opts.keepintvl or s.keepalive_intvl
        tcb.ka_cnt = opts.keepcnt or s.keepalive_probes
        if opts.keepalive != tcb.keepalive or opts.keepalive:
            tcb.set_keepalive(opts.keepalive, trio.current_time())

    def add_listener(
        self, port: int, backlog: int, options: SocketOptions
    ) -> Listening:
        self.check_running()
        backlog = max(1, min(backlog, self.settings.backlog))
        listening = Listening(port, backlog, options)
        self._listeners[port] = listening
        return listening

    def close_listener(self, listening: Listening) -> None:
        """Stop listening; reset connections nobody accepted (as Linux does)."""
        if listening.closed:
            return
        listening.closed = True
        if self._listeners.get(listening.port) is listening:
            del self._listeners[listening.port]
        now = trio.current_time()
        for tcb in list(self._conns.values()):
            conn: Conn = tcb.owner
            if conn.listener is listening:
                tcb.abort(now)
                self._after(tcb)
        listening.ready.clear()
        listening.lot.unpark_all()

    def take_accepted(self, listening: Listening) -> Tcb | None:
        while listening.ready:
            tcb = listening.ready.popleft()
            tcb.owner.listener = None
            return tcb
        return None

    def note_app_close(self, tcb: Tcb) -> None:
        """Account an orphan; past max_orphans, reset it (tcp_max_orphans)."""
        conn: Conn = tcb.owner
        if tcb.state is State.CLOSED or conn.orphan:
            return
        if self._orphans >= self.settings.max_orphans:
            tcb.abort(trio.current_time())
            self.counters["OrphanOverflow"] += 1
        else:
            conn.orphan = True
            self._orphans += 1

    # ------------------------------------------------------------------
    # Introspection

    def connections(self) -> Iterator[Tcb]:
        return iter(list(self._conns.values()))

    def time_wait(self) -> Iterator[TimeWait]:
        """Connections in TIME_WAIT (compact records, not TCBs)."""
        return self._timewait.records()

    def listeners(self) -> Iterator[Listening]:
        return iter(list(self._listeners.values()))

    @property
    def orphan_count(self) -> int:
        return self._orphans


def _tuple4(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    return src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
