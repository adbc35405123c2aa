"""Hypothesis at the stack level: hostile packets injected into a live transfer.

Two stacks over the in-memory link; B serves a transfer to A. While it runs,
an attacker injects packets into either side, spoofed as the other side:

- *blind* segments (what an off-path attacker who does not know the
  sequence numbers can hit): far out of window, in-window RST that is not
  exact, SYN, segments without ACK, ACKs outside the acceptable range, with
  random flags, window, options and payload;
- raw garbage, bit-flipped copies of valid packets, valid IP headers around
  random TCP bytes, raw option bytes with a correct checksum.

Properties: no exception escapes the stacks (the stack task would crash the
nursery), every TCB's invariants hold after every packet, the transfer
completes intact, and everything is gone afterwards.

A second property injects *arbitrary* (also acceptable, in-window) segments:
the transfer may fail then, but only with an OSError, and the invariants
and the clean-up still hold.

Each example runs in its own `trio.run` with a `MockClock` (virtual time,
autojump), so examples are fast and independent.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from ustack import Settings, Stack
from ustack.link.memory import MemoryLink, memory_link_pair
from ustack.tcp.seq import MASK, seq_diff
from ustack.tcp.state import State
from ustack.tcp.tcb import Tcb
from ustack.wire.checksum import checksum, pseudo_header_sum
from ustack.wire.ipv4 import PROTO_TCP, build_ipv4_header, build_tcp_packet
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment

A_IP, B_IP = "10.0.0.1", "10.0.0.2"
A_RAW, B_RAW = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
PORT = 80
SIZE = 200_000
# Far beyond anything the transfer moves: a sequence/ack number this far
# outside the window stays outside while the window slides.
MARGIN = 1 << 24
STALL = 600.0  # virtual seconds without the transfer finishing
EXAMPLES = int(os.environ.get("USTACK_FUZZ_EXAMPLES", "60"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def pattern(n: int) -> bytes:
    period = bytes(range(251))
    return (period * (n // 251 + 1))[:n]


def sim_settings() -> Settings:
    return Settings(
        msl=0.5, shutdown_grace=0.5, rcv_buf=64 * 1024, ooo_max_bytes=32 * 1024
    )


# ----------------------------------------------------------------------
# Invariants


class InvariantError(AssertionError):
    pass


def check_invariants(stack: Stack) -> None:
    s = stack.settings
    for tcb in stack.connections():
        where = f"{stack.ip} {tcb.state.name} {tcb.local_port}->{tcb.remote_port}"
        if tcb.state is State.CLOSED:
            continue
        if seq_diff(tcb.snd_nxt, tcb.snd_una) < 0:
            raise InvariantError(f"{where}: SND.NXT before SND.UNA")
        if seq_diff(tcb.snd_max, tcb.snd_nxt) < 0:
            raise InvariantError(f"{where}: SND.MAX before SND.NXT")
        if seq_diff(tcb.snd_max, tcb.snd_una) > s.snd_buf + 2:
            raise InvariantError(f"{where}: more in flight than the send buffer")
        if len(tcb.sndbuf) > tcb.snd_buf_size:
            raise InvariantError(f"{where}: send buffer over its size")
        if len(tcb.rcvbuf) > tcb.rcv_buf_size + tcb.mss_local:
            raise InvariantError(
                f"{where}: receive buffer {len(tcb.rcvbuf)} > {tcb.rcv_buf_size}"
            )
        if not 0 <= tcb.ooo.size <= s.ooo_max_bytes:
            raise InvariantError(f"{where}: out-of-order queue {tcb.ooo.size} bytes")


def watch(stack: Stack) -> None:
    """Check the invariants around every packet the stack reads or writes."""

    def tap(outgoing: bool, packet: bytes, now: float) -> None:
        check_invariants(stack)

    stack.taps.append(tap)


def inject_first(link: MemoryLink, packet: bytes) -> None:
    """Deliver `packet` ahead of anything queued, so the stack judges it
    against exactly the state the attacker just looked at."""
    pending = list(link.inbox)
    link.inbox.clear()
    link.inject(packet)
    link.inbox.extend(pending)


# ----------------------------------------------------------------------
# Raw packet building (for malformed option bytes with a valid checksum)


def raw_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes = b"",
    payload: bytes = b"",
    doff: int | None = None,
) -> bytes:
    """IPv4 + TCP with raw option bytes, both checksums correct."""
    opts = options + b"\0" * (-len(options) % 4)
    hlen = 20 + len(opts)
    off = (hlen // 4 if doff is None else doff) << 4
    hdr = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & MASK, ack & MASK, off, flags, window, 0, 0
    )
    tcp = bytearray(hdr + opts + payload)
    csum = checksum(tcp, pseudo_header_sum(src, dst, PROTO_TCP, len(tcp)))
    tcp[16:18] = csum.to_bytes(2, "big")
    return build_ipv4_header(src, dst, PROTO_TCP, len(tcp), 7) + bytes(tcp)


# ----------------------------------------------------------------------
# Attacks: a strategy draws an Attack; `build(view)` turns it into bytes
# against the live connection at injection time.


@dataclass
class View:
    """What the attacker aims at: the target side's TCB (None once gone)."""

    src: bytes  # the spoofed peer
    dst: bytes
    sport: int
    dport: int
    tcb: Tcb | None


@dataclass
class Attack:
    to_b: bool  # inject into B (spoofed as A) or into A (spoofed as B)
    at: int  # fire once A has received this many bytes (SIZE: while closing)
    build: Callable[[View], bytes]
    label: str

    def __repr__(self) -> str:
        return f"Attack({self.label}, to_b={self.to_b}, at={self.at})"


U32 = st.integers(0, MASK)
U16 = st.integers(0, 0xFFFF)
FRACTION = st.integers(0, 1 << 30)
options_st = st.fixed_dictionaries(
    {},
    optional={
        "mss": U16,
        "wscale": st.integers(0, 255),
        "sack_permitted": st.booleans(),
        "timestamp": st.tuples(U32, U32),
        "sack_blocks": st.lists(st.tuples(U32, U32), max_size=4).map(tuple),
    },
)
payload_st = st.binary(max_size=1200)
BLIND_KINDS = ("far", "rst_in", "syn_in", "noack_in", "badack_new", "badack_old")


def _window(view: View) -> tuple[int, int]:
    tcb = view.tcb
    assert tcb is not None
    return tcb.rcv_nxt, max(0, seq_diff(tcb.rcv_adv, tcb.rcv_nxt))


@st.composite
def blind_attacks(draw: st.DrawFn) -> Attack:
    kind = draw(st.sampled_from(BLIND_KINDS))
    extra = draw(st.integers(0, 255))  # other flag bits, filtered per kind
    window = draw(U16)
    opts: dict[str, Any] = draw(options_st)
    payload = draw(payload_st)
    k = draw(FRACTION)
    ack_any = draw(U32)

    def build(view: View) -> bytes:
        flags = extra
        ack = ack_any
        tcb = view.tcb
        if tcb is None or tcb.state in (
            State.CLOSED,
            State.SYN_SENT,
            State.SYN_RECEIVED,
        ):
            seq = k  # nothing to aim at: whatever arrives is stray
        else:
            rcv_nxt, wnd = _window(view)
            inside = wnd > 1
            if kind == "far" or not inside:
                span = (1 << 32) - wnd - 2 * MARGIN
                seq = rcv_nxt + wnd + MARGIN + k % span
                seq -= 0  # the whole segment stays far outside too
            elif kind == "rst_in":
                seq = rcv_nxt + 1 + k % (wnd - 1)  # never the exact RCV.NXT
                flags |= RST
            elif kind == "syn_in":
                seq = rcv_nxt + k % wnd
                flags = (flags | SYN) & ~RST
            elif kind == "noack_in":
                seq = rcv_nxt + k % wnd
                flags &= ~(ACK | SYN | RST)
            else:
                seq = rcv_nxt + k % wnd
                flags = (flags | ACK) & ~(SYN | RST)
                if kind == "badack_new":
                    ack = tcb.snd_max + MARGIN + k % (1 << 29)
                else:
                    floor = tcb.snd_una - max(tcb.max_snd_wnd, 1 << 20)
                    ack = floor - MARGIN - k % (1 << 29)
        seg = TcpSegment(
            view.sport,
            view.dport,
            seq & MASK,
            ack & MASK,
            flags,
            window,
            payload,
            **opts,
        )
        return build_tcp_packet(view.src, view.dst, seg, 1)

    return Attack(draw(st.booleans()), draw(_progress), build, kind)


_progress = st.integers(0, SIZE)


@st.composite
def garbage_attacks(draw: st.DrawFn) -> Attack:
    kind = draw(st.sampled_from(["bytes", "flip", "ip_garbage", "raw_opts"]))
    data = draw(st.binary(max_size=1600))
    bit = draw(st.integers(0, 1 << 20))
    proto = draw(st.sampled_from([PROTO_TCP, PROTO_TCP, 1, 17, 0, 255]))
    seq_k = draw(FRACTION)
    flags = draw(st.integers(0, 255))
    doff = draw(st.none() | st.integers(0, 15))

    def build(view: View) -> bytes:
        if kind == "bytes":
            return data
        if kind == "ip_garbage":
            return build_ipv4_header(view.src, view.dst, proto, len(data), 3) + data
        tcb = view.tcb
        rcv_nxt = tcb.rcv_nxt if tcb is not None else 0
        if kind == "raw_opts":
            # Arbitrary option bytes (malformed lengths, zero lengths, running
            # past the header) far out of window, checksum correct.
            opts = data[:40]
            seq = rcv_nxt + (1 << 31) + seq_k % MARGIN
            return raw_tcp(
                view.src,
                view.dst,
                view.sport,
                view.dport,
                seq,
                0,
                flags & ~RST,
                1000,
                opts,
                data[40:],
                doff,
            )
        # flip: a valid in-window data segment with one bit flipped; the
        # IP or TCP checksum must catch it.
        seg = TcpSegment(
            view.sport, view.dport, rcv_nxt, 0, flags | ACK, 1000, data[:1000]
        )
        packet = bytearray(build_tcp_packet(view.src, view.dst, seg, 1))
        pos = bit % (len(packet) * 8)
        packet[pos // 8] ^= 1 << (pos % 8)
        return bytes(packet)

    return Attack(draw(st.booleans()), draw(_progress), build, kind)


@st.composite
def any_attacks(draw: st.DrawFn) -> Attack:
    """Anything for the connection's 4-tuple, numbers near the live ones."""
    near_seq = draw(st.integers(-70_000, 70_000))
    near_ack = draw(st.integers(-70_000, 70_000))
    flags = draw(st.integers(0, 255))
    window = draw(U16)
    opts: dict[str, Any] = draw(options_st)
    payload = draw(payload_st)
    wild = draw(st.booleans())
    seq_w, ack_w = draw(U32), draw(U32)

    def build(view: View) -> bytes:
        tcb = view.tcb
        if tcb is None or wild:
            seq, ack = seq_w, ack_w
        else:
            seq, ack = tcb.rcv_nxt + near_seq, tcb.snd_una + near_ack
        seg = TcpSegment(
            view.sport,
            view.dport,
            seq & MASK,
            ack & MASK,
            flags,
            window,
            payload,
            **opts,
        )
        return build_tcp_packet(view.src, view.dst, seg, 1)

    return Attack(draw(st.booleans()), draw(_progress), build, "any")


# ----------------------------------------------------------------------
# The scenario


@dataclass
class Outcome:
    received: bytes
    client_error: OSError | None
    a: Stack
    b: Stack
    leftovers: list[str]


async def _scenario(attacks: list[Attack]) -> Outcome:
    link_a, link_b = memory_link_pair()
    body = pattern(SIZE)
    received = bytearray()
    client_error: OSError | None = None
    leftovers: list[str] = []
    done = False
    async with (
        Stack(link_a, A_IP, sim_settings()) as a,
        Stack(link_b, B_IP, sim_settings()) as b,
    ):
        watch(a)
        watch(b)
        listener = await b.listen(PORT)

        async def serve() -> None:
            while True:
                try:
                    stream = await listener.accept()
                except (OSError, trio.ClosedResourceError):
                    return
                try:
                    async with stream:
                        await stream.receive_some()  # the request
                        await stream.send_all(body)
                        await stream.send_eof()
                        while await stream.receive_some():  # drain until EOF
                            pass
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

        progress = [trio.Event()]

        async def attack(client_tcb: Tcb, sport: int) -> None:
            for item in sorted(attacks, key=lambda x: x.at):
                while len(received) < item.at and not done:
                    await progress[0].wait()
                if item.to_b:
                    server = [
                        t
                        for t in b.connections()
                        if (t.remote_port, t.local_port) == (sport, PORT)
                    ]
                    target = server[0] if server else None
                    view = View(A_RAW, B_RAW, sport, PORT, target)
                    inject_first(link_b, item.build(view))
                else:
                    tcb = client_tcb if client_tcb.state is not State.CLOSED else None
                    view = View(B_RAW, A_RAW, PORT, sport, tcb)
                    inject_first(link_a, item.build(view))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with trio.fail_after(3600):
                client = await a.connect((B_IP, PORT))
                tcb = client.socket.tcb
                assert tcb is not None
                nursery.start_soon(attack, tcb, client.socket.getsockname()[1])
                # A stall is an outcome too: a spoofed but acceptable segment
                # may kill the server's side, and a receiver that sends nothing
                # never learns of it (no keepalive).
                with trio.move_on_after(STALL) as stall:
                    try:
                        await client.send_all(b"GET\n")
                        while chunk := await client.receive_some():
                            received.extend(chunk)
                            progress[0].set()
                            progress[0] = trio.Event()
                    except OSError as exc:
                        client_error = exc
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        cause = exc.__cause__
                        assert isinstance(cause, OSError), repr(exc)
                        client_error = cause
                if stall.cancelled_caught:
                    client_error = TimeoutError(f"transfer stalled for {STALL} s")
                done = True
                progress[0].set()
                await client.aclose()
                # Let every timer run out: retransmissions, TIME_WAIT (2 MSL),
                # half-open connections an injected SYN may have opened.
                await trio.sleep(900)
            nursery.cancel_scope.cancel()
        check_invariants(a)
        check_invariants(b)
        for stack in (a, b):
            leftovers += [f"{stack.ip}: {t.state.name}" for t in stack.connections()]
            leftovers += [f"{stack.ip}: TIME_WAIT" for _ in stack.time_wait()]
            if stack.orphan_count:
                leftovers.append(f"{stack.ip}: {stack.orphan_count} orphans")
            live = [e for e in stack._heap if e[2].owner.heap_deadline == e[0]]
            if live:
                leftovers.append(f"{stack.ip}: {len(live)} live timers")
        await listener.aclose()
    return Outcome(bytes(received), client_error, a, b, leftovers)


def run_scenario(attacks: list[Attack]) -> Outcome:
    return trio.run(_scenario, attacks, clock=MockClock(autojump_threshold=0))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------
# Properties


def test_scenario_without_attacks_transfers_intact() -> None:
    """The harness itself: no attacks, intact transfer, nothing left."""
    out = run_scenario([])
    assert out.client_error is None
    assert digest(out.received) == digest(pattern(SIZE))
    assert out.leftovers == []


@FUZZ
@given(st.lists(blind_attacks() | garbage_attacks(), min_size=1, max_size=40))
def test_blind_and_garbage_injection_never_harms_the_transfer(
    attacks: list[Attack],
) -> None:
    out = run_scenario(attacks)
    assert out.client_error is None, f"transfer failed: {out.client_error!r}"
    assert len(out.received) == SIZE
    assert digest(out.received) == digest(pattern(SIZE))
    assert out.leftovers == []
    for stack in (out.a, out.b):
        assert stack.counters["EstabResets"] == 0


@FUZZ
@given(st.lists(any_attacks() | garbage_attacks(), min_size=1, max_size=40))
def test_arbitrary_segments_keep_invariants_and_fail_cleanly(
    attacks: list[Attack],
) -> None:
    """Acceptable in-window segments may corrupt or reset the transfer (that is
    TCP); the stacks must still only report OSErrors, keep their invariants,
    and clean everything up."""
    out = run_scenario(attacks)
    if out.client_error is None:
        assert len(out.received) <= SIZE + 40 * 1200
    assert out.leftovers == []


def test_flip_every_bit_of_a_data_segment_is_caught() -> None:
    """Exhaustive single-bit flips of one in-window data segment: every one is
    dropped by a checksum (or header) check before it reaches a TCB."""

    async def main() -> None:
        link_a, link_b = memory_link_pair()
        async with (
            Stack(link_a, A_IP, sim_settings()) as a,
            Stack(link_b, B_IP, sim_settings()) as b,
        ):
            listener = await b.listen(PORT)
            client = await a.connect((B_IP, PORT))
            server = await listener.accept()
            tcb = client.socket.tcb
            assert tcb is not None
            seg = TcpSegment(
                PORT,
                client.socket.getsockname()[1],
                tcb.rcv_nxt,
                tcb.snd_nxt,
                ACK,
                1000,
                b"spoofed payload!",
            )
            packet = build_tcp_packet(B_RAW, A_RAW, seg, 1)
            in_segs = a.counters["InSegs"]
            for pos in range(len(packet) * 8):
                bad = bytearray(packet)
                bad[pos // 8] ^= 1 << (pos % 8)
                a.link.inject(bytes(bad))  # type: ignore[attr-defined]
            await trio.sleep(1)
            assert a.counters["InSegs"] == in_segs
            dropped = (
                sum(
                    v
                    for k, v in a.counters.items()
                    if k.startswith(("InHdrErrors.", "InErrs."))
                )
                + a.counters["InAddrErrors"]
                + a.counters["InUnknownProtos"]
            )
            assert dropped == len(packet) * 8
            assert tcb.rcvbuf == b"" and tcb.state is State.ESTABLISHED
            await server.aclose()
            await client.aclose()

    trio.run(main, clock=MockClock(autojump_threshold=0))


def test_fin_flag_alone_does_not_close(  # noqa: D103 - a guard for the fuzz kinds
) -> None:
    """A FIN without ACK at RCV.NXT is dropped (RFC 9293 3.10.7.4: ACK bit
    off -> drop), so "noack_in" attacks are blind-safe."""

    async def main() -> None:
        link_a, link_b = memory_link_pair()
        async with (
            Stack(link_a, A_IP, sim_settings()) as a,
            Stack(link_b, B_IP, sim_settings()) as b,
        ):
            listener = await b.listen(PORT)
            client = await a.connect((B_IP, PORT))
            server = await listener.accept()
            tcb = client.socket.tcb
            assert tcb is not None
            seg = TcpSegment(
                PORT, client.socket.getsockname()[1], tcb.rcv_nxt, 0, FIN, 1000
            )
            link_a.inject(build_tcp_packet(B_RAW, A_RAW, seg, 1))
            await trio.sleep(1)
            assert tcb.state is State.ESTABLISHED and not tcb.fin_received
            await server.aclose()
            await client.aclose()

    trio.run(main, clock=MockClock(autojump_threshold=0))
