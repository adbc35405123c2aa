"""Ladder diagrams of TCP connections, from packets (pcap or a live stack).

Each connection is drawn as two columns, left and right, with one arrow per
segment: time offset, flags, relative seq/ack, payload length, and the state
each side is in after the segment. The states come from a small inference
machine fed with the segments (RFC 9293 3.3.2 transitions as seen on the
wire), so they are labelled "inferred"; a live trace also carries ustack's
own state changes, printed as "known" notes.

Pure functions: `segments_from_packets`, `ladder_lines(events)`,
`ladder_svg(events)`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape

from ustack.wire.ipv4 import PROTO_TCP, parse_ipv4
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, WireError, parse_tcp

ARROW_WIDTH = 44
STATE_WIDTH = 12


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment on the wire."""

    time: float
    src: str  # "10.203.0.1:40000"
    dst: str
    seq: int
    ack: int
    flags: int
    length: int  # payload bytes
    window: int = 0


@dataclass(frozen=True, slots=True)
class StateNote:
    """A state change ustack reported for one of its connections (live only)."""

    time: float
    local: str
    peer: str
    old: str
    new: str


Event = Segment | StateNote


def segment_from_packet(time: float, packet: bytes) -> Segment | None:
    """The TCP segment in an IPv4 packet, or None (not TCP, malformed)."""
    try:
        ip = parse_ipv4(packet)
        if ip.proto != PROTO_TCP:
            return None
        seg = parse_tcp(ip.payload, ip.src, ip.dst, verify=False)
    except WireError:
        return None
    src = f"{ipaddress.IPv4Address(ip.src)}:{seg.src_port}"
    dst = f"{ipaddress.IPv4Address(ip.dst)}:{seg.dst_port}"
    return Segment(
        time, src, dst, seg.seq, seg.ack, seg.flags, len(seg.payload), seg.window
    )


def segments_from_packets(records: Iterable[tuple[float, bytes]]) -> list[Segment]:
    out = []
    for time, packet in records:
        seg = segment_from_packet(time, packet)
        if seg is not None:
            out.append(seg)
    return out


def flag_text(flags: int) -> str:
    names = [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK")]
    return ",".join(name for bit, name in names if flags & bit) or "none"


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _ip(address: str) -> str:
    return address.rpartition(":")[0]


# ----------------------------------------------------------------------
# State inference


@dataclass
class _Side:
    state: str
    base: int | None = None  # ISN (seq of its SYN) or first seq seen
    fin_end: int | None = None  # sequence just past its FIN


_MOD = 1 << 32


def _covers(ack: int, end: int | None) -> bool:
    """True if `ack` acknowledges everything before `end` (mod 2**32)."""
    return end is not None and (ack - end) % _MOD < (1 << 31)


class Inference:
    """Both endpoints' states, inferred from the segments between them."""

    def __init__(self, left: str, right: str, first: Segment) -> None:
        synced = not (first.flags & SYN)
        start = "ESTABLISHED" if synced else None
        self.sides = {
            left: _Side(start or "CLOSED"),
            right: _Side(start or "LISTEN"),
        }
        if start is None and first.src == right:
            self.sides[left].state = "LISTEN"
            self.sides[right].state = "CLOSED"

    def state(self, address: str) -> str:
        return self.sides[address].state

    def feed(self, seg: Segment) -> None:
        snd, rcv = self.sides[seg.src], self.sides[seg.dst]
        flags = seg.flags
        if snd.base is None:
            snd.base = seg.seq
        # The sender, by what it sends.
        if flags & RST:
            snd.state = "CLOSED"
        elif flags & SYN:
            snd.state = "SYN_RECEIVED" if flags & ACK else "SYN_SENT"
            snd.base = seg.seq
        if flags & FIN and not flags & RST:
            end = (seg.seq + seg.length + (1 if flags & SYN else 0) + 1) % _MOD
            snd.fin_end = end
            snd.state = {
                "ESTABLISHED": "FIN_WAIT_1",
                "SYN_RECEIVED": "FIN_WAIT_1",
                "CLOSE_WAIT": "LAST_ACK",
            }.get(snd.state, snd.state)
        if (
            flags & (ACK | SYN | RST) == ACK
            and snd.state == "SYN_SENT"
            and rcv.base is not None
        ):
            snd.state = "ESTABLISHED"
        # The receiver, by what it gets.
        st = rcv.state
        if flags & RST:
            if st not in ("LISTEN", "CLOSED"):
                rcv.state = "CLOSED"
            return
        if flags & SYN and not flags & ACK:
            if st in ("LISTEN", "CLOSED"):
                rcv.state = "SYN_RECEIVED"
            elif st == "SYN_SENT":
                rcv.state = "SYN_RECEIVED"  # simultaneous open
            return
        if flags & SYN and flags & ACK:
            if st == "SYN_SENT":
                rcv.state = "ESTABLISHED"
            return
        if flags & ACK:
            if st == "SYN_RECEIVED":
                st = "ESTABLISHED"
            elif st == "FIN_WAIT_1" and _covers(seg.ack, rcv.fin_end):
                st = "FIN_WAIT_2"
            elif st == "CLOSING" and _covers(seg.ack, rcv.fin_end):
                st = "TIME_WAIT"
            elif st == "LAST_ACK" and _covers(seg.ack, rcv.fin_end):
                st = "CLOSED"
        if flags & FIN:
            st = {
                "ESTABLISHED": "CLOSE_WAIT",
                "SYN_RECEIVED": "CLOSE_WAIT",
                "FIN_WAIT_1": "CLOSING",
                "FIN_WAIT_2": "TIME_WAIT",
            }.get(st, st)
        rcv.state = st


# ----------------------------------------------------------------------
# Grouping into connections


@dataclass
class Connection:
    left: str
    right: str
    events: list[Event] = field(default_factory=list)

    @property
    def ports(self) -> tuple[int, int]:
        return _port(self.left), _port(self.right)


def _conn_key(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def group_connections(
    events: Iterable[Event], left_ip: str | None = None
) -> list[Connection]:
    """Split events into connections (by 4-tuple, a new SYN starts a new one
    once the previous one is over), in order of first appearance.

    The left column is the endpoint with address `left_ip` if given (ustack),
    else the side that sent the first SYN, else the first sender.
    """
    conns: list[Connection] = []
    current: dict[frozenset[str], Connection] = {}
    for ev in events:
        if isinstance(ev, Segment):
            a, b = ev.src, ev.dst
        else:
            a, b = ev.local, ev.peer
        key = _conn_key(a, b)
        conn = current.get(key)
        is_fresh_syn = isinstance(ev, Segment) and ev.flags & (SYN | ACK) == SYN
        if conn is not None and is_fresh_syn and _finished(conn):
            conn = None
        if conn is None:
            if isinstance(ev, StateNote):
                left, right = ev.local, ev.peer
            elif left_ip is not None and _ip(ev.dst) == left_ip:
                left, right = ev.dst, ev.src
            elif left_ip is not None and _ip(ev.src) == left_ip:
                left, right = ev.src, ev.dst
            elif ev.flags & (SYN | ACK) == SYN | ACK:
                left, right = ev.dst, ev.src  # the initiator got the SYN-ACK
            else:
                left, right = ev.src, ev.dst
            conn = Connection(left, right)
            current[key] = conn
            conns.append(conn)
        conn.events.append(ev)
    return conns


def _finished(conn: Connection) -> bool:
    segs = [e for e in conn.events if isinstance(e, Segment)]
    if not segs:
        return False
    inf = Inference(conn.left, conn.right, segs[0])
    for seg in segs:
        inf.feed(seg)
    done = ("CLOSED", "TIME_WAIT")
    return inf.state(conn.left) in done and inf.state(conn.right) in done


# ----------------------------------------------------------------------
# Rendering


@dataclass(frozen=True, slots=True)
class Row:
    """One drawn arrow (or a note) of a ladder."""

    offset: float
    rightward: bool
    label: str
    left_state: str
    right_state: str
    note: str | None = None  # set for StateNote rows (no arrow)


def segment_label(seg: Segment, base_src: int, base_dst: int | None) -> str:
    rel_seq = (seg.seq - base_src) % _MOD
    parts = [flag_text(seg.flags), f"seq={rel_seq}"]
    if seg.flags & ACK:
        rel_ack = (seg.ack - base_dst) % _MOD if base_dst is not None else seg.ack
        parts.append(f"ack={rel_ack}")
    parts.append(f"len={seg.length}")
    return " ".join(parts)


class ConnectionRenderer:
    """Turns one connection's events into rows, one at a time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.start: float | None = None
        self.inference: Inference | None = None
        self.bases: dict[str, int] = {}

    def row(self, ev: Event) -> Row:
        conn = self.conn
        if self.start is None:
            self.start = ev.time
        offset = ev.time - self.start
        if isinstance(ev, StateNote):
            note = f"ustack {ev.old} -> {ev.new} (known)"
            return Row(offset, True, "", "", "", note=note)
        if self.inference is None:
            self.inference = Inference(conn.left, conn.right, ev)
        inf = self.inference
        if ev.flags & SYN or ev.src not in self.bases:
            self.bases[ev.src] = ev.seq
        inf.feed(ev)
        label = segment_label(ev, self.bases[ev.src], self.bases.get(ev.dst))
        return Row(
            offset,
            ev.src == conn.left,
            label,
            inf.state(conn.left),
            inf.state(conn.right),
        )

    def finished(self) -> bool:
        inf = self.inference
        if inf is None:
            return False
        done = ("CLOSED", "TIME_WAIT")
        return inf.state(self.conn.left) in done and inf.state(self.conn.right) in done


def connection_rows(conn: Connection) -> list[Row]:
    renderer = ConnectionRenderer(conn)
    return [renderer.row(ev) for ev in conn.events]


def arrow(label: str, rightward: bool, width: int = ARROW_WIDTH) -> str:
    text = f" {label} "
    if len(text) > width - 4:
        text = text[: width - 5] + "~ "
    if rightward:
        body = "--" + text
        return body + "-" * (width - len(body) - 1) + ">"
    body = "<-" + text
    return body + "-" * (width - len(body))


def connection_header(conn: Connection, number: int, source: str) -> list[str]:
    states = {
        "pcap": "both states inferred",
        "live": "states inferred; ustack's changes (known)",
    }.get(source, "states inferred")
    head = f"{'time (s)':>10}  {conn.left}"
    width = 10 + 2 + STATE_WIDTH + 1 + ARROW_WIDTH + 1
    head = head.ljust(width - 1) + " " + conn.right
    return [f"connection {number}: {conn.left} <-> {conn.right}  ({states})", head]


def row_line(row: Row) -> str:
    if row.note is not None:
        return f"{row.offset:10.6f}  {'':<{STATE_WIDTH}} [{row.note}]"
    return (
        f"{row.offset:10.6f}  {row.left_state:<{STATE_WIDTH}} "
        f"{arrow(row.label, row.rightward)} {row.right_state}"
    )


def ladder_lines(
    events: Iterable[Event],
    left_ip: str | None = None,
    port: int | None = None,
    source: str = "pcap",
) -> list[str]:
    """The ladder of every connection in `events`, as plain text lines.

    `port` keeps only connections with that port on either side; connections
    are separated by a blank line.
    """
    lines: list[str] = []
    number = 0
    for conn in group_connections(events, left_ip):
        if port is not None and port not in conn.ports:
            continue
        number += 1
        if lines:
            lines.append("")
        lines.extend(connection_header(conn, number, source))
        lines.extend(row_line(row) for row in connection_rows(conn))
    return lines


# ----------------------------------------------------------------------
# SVG

_SVG_ROW = 34
_SVG_TOP = 70
_SVG_LEFT_X = 260
_SVG_RIGHT_X = 720
_SVG_WIDTH = 980


def ladder_svg(
    events: Iterable[Event],
    left_ip: str | None = None,
    port: int | None = None,
    source: str = "pcap",
) -> str:
    """An SVG picture of the same ladders (hand-written, no dependencies)."""
    parts: list[str] = []
    y = 20
    number = 0
    for conn in group_connections(events, left_ip):
        if port is not None and port not in conn.ports:
            continue
        number += 1
        rows = connection_rows(conn)
        header = connection_header(conn, number, source)[0]
        parts.append(_text(20, y + 10, header, weight="bold"))
        parts.append(_text(_SVG_LEFT_X, y + 34, conn.left, anchor="middle"))
        parts.append(_text(_SVG_RIGHT_X, y + 34, conn.right, anchor="middle"))
        top = y + 44
        bottom = top + _SVG_ROW * (len(rows) + 1)
        for x in (_SVG_LEFT_X, _SVG_RIGHT_X):
            parts.append(
                f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" '
                'stroke="#444" stroke-width="2"/>'
            )
        ry = top + _SVG_ROW // 2
        for row in rows:
            parts.append(_text(20, ry + 14, f"{row.offset:.6f}", size=11))
            if row.note is not None:
                parts.append(
                    _text(
                        _SVG_LEFT_X - 10,
                        ry + 14,
                        row.note,
                        anchor="end",
                        size=11,
                        fill="#0a6",
                    )
                )
            else:
                x1, x2 = (
                    (_SVG_LEFT_X, _SVG_RIGHT_X)
                    if row.rightward
                    else (_SVG_RIGHT_X, _SVG_LEFT_X)
                )
                color = (
                    "#c33"
                    if "RST" in row.label
                    else ("#36c" if row.rightward else "#a60")
                )
                parts.append(
                    f'<line x1="{x1}" y1="{ry}" x2="{x2}" y2="{ry + _SVG_ROW - 8}" '
                    f'stroke="{color}" stroke-width="1.5" '
                    'marker-end="url(#head)"/>'
                )
                mid = (_SVG_LEFT_X + _SVG_RIGHT_X) // 2
                parts.append(_text(mid, ry + 8, row.label, anchor="middle", size=12))
                parts.append(
                    _text(
                        _SVG_LEFT_X - 10,
                        ry + _SVG_ROW - 6,
                        row.left_state,
                        anchor="end",
                        size=11,
                    )
                )
                parts.append(
                    _text(
                        _SVG_RIGHT_X + 10, ry + _SVG_ROW - 6, row.right_state, size=11
                    )
                )
            ry += _SVG_ROW
        y = bottom + 30
    height = max(y, 60)
    defs = (
        '<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" '
        'refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="#333"/>'
        "</marker></defs>"
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{_SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_SVG_WIDTH} {height}" font-family="monospace">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{defs}\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def _text(
    x: int,
    y: int,
    text: str,
    anchor: str = "start",
    size: int = 13,
    weight: str = "normal",
    fill: str = "#000",
) -> str:
    return (
        f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}" fill="{fill}">{escape(text)}</text>'
    )


# ----------------------------------------------------------------------
# Live traces: events as JSON over the control socket


def event_from_json(obj: dict[str, object]) -> Event | None:
    """A control-socket trace message -> Segment / StateNote (None if other)."""
    import base64

    kind = obj.get("event")
    time = float(obj.get("time", 0.0))  # type: ignore[arg-type]
    if kind == "packet":
        packet = base64.b64decode(str(obj["packet"]))
        return segment_from_packet(time, packet)
    if kind == "state":
        return StateNote(
            time, str(obj["local"]), str(obj["peer"]), str(obj["old"]), str(obj["new"])
        )
    return None


class LiveLadder:
    """Incremental ladder for a live trace: the lines to print per event."""

    def __init__(self, left_ip: str | None, port: int | None = None) -> None:
        self.left_ip = left_ip
        self.port = port
        self._renderers: dict[frozenset[str], ConnectionRenderer] = {}
        self._count = 0

    def feed(self, ev: Event) -> list[str]:
        if isinstance(ev, Segment):
            if self.port is not None and self.port not in (
                _port(ev.src),
                _port(ev.dst),
            ):
                return []
            key = _conn_key(ev.src, ev.dst)
        else:
            key = _conn_key(ev.local, ev.peer)
        renderer = self._renderers.get(key)
        fresh = isinstance(ev, Segment) and ev.flags & (SYN | ACK) == SYN
        out: list[str] = []
        if renderer is not None and fresh and renderer.finished():
            renderer = None
        if renderer is None:
            if (
                isinstance(ev, StateNote)
                and self.port is not None
                and self.port not in (_port(ev.local), _port(ev.peer))
            ):
                return []
            conn = group_connections([ev], self.left_ip)[0]
            renderer = self._renderers[key] = ConnectionRenderer(conn)
            self._count += 1
            out.append("")
            out.extend(connection_header(conn, self._count, "live"))
        out.append(row_line(renderer.row(ev)))
        return out
