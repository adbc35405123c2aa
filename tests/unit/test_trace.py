"""Ladder diagrams (ustack.observe.trace) of scripted connections, built with
ustack.wire: the handshake, a little data and the four-way close."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from ustack.observe.pcap import PcapWriter, read_pcap
from ustack.observe.trace import (
    LiveLadder,
    event_from_json,
    ladder_lines,
    ladder_svg,
    segments_from_packets,
)
from ustack.wire.ipv4 import build_tcp_packet
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment

C, S = bytes([10, 203, 0, 1]), bytes([10, 203, 0, 2])
CI, SI = (
    4_000_000_000,
    5000,
)  # client ISN near the wrap: relative numbers still start at 0


def c2s(seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return build_tcp_packet(
        C, S, TcpSegment(40000, 80, seq % 2**32, ack, flags, 64240, payload), 1
    )


def s2c(seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return build_tcp_packet(
        S, C, TcpSegment(80, 40000, seq, ack % 2**32, flags, 65535, payload), 1
    )


def scripted_close() -> list[bytes]:
    return [
        c2s(CI, 0, SYN),
        s2c(SI, CI + 1, SYN | ACK),
        c2s(CI + 1, SI + 1, ACK),
        c2s(CI + 1, SI + 1, PSH | ACK, b"hello"),
        s2c(SI + 1, CI + 6, ACK),
        c2s(CI + 6, SI + 1, FIN | ACK),
        s2c(SI + 1, CI + 7, ACK),
        s2c(SI + 1, CI + 7, FIN | ACK),
        c2s(CI + 7, SI + 2, ACK),
    ]


def timed(packets: list[bytes], step: float = 0.125) -> list[tuple[float, bytes]]:
    return [(1000.0 + i * step, p) for i, p in enumerate(packets)]


EXPECTED_CLOSE = """\
connection 1: 10.203.0.1:40000 <-> 10.203.0.2:80  (both states inferred)
  time (s)  10.203.0.1:40000                                          10.203.0.2:80
  0.000000  SYN_SENT     -- SYN seq=0 len=0 ------------------------> SYN_RECEIVED
  0.125000  ESTABLISHED  <- SYN,ACK seq=0 ack=1 len=0 --------------- SYN_RECEIVED
  0.250000  ESTABLISHED  -- ACK seq=1 ack=1 len=0 ------------------> ESTABLISHED
  0.375000  ESTABLISHED  -- PSH,ACK seq=1 ack=1 len=5 --------------> ESTABLISHED
  0.500000  ESTABLISHED  <- ACK seq=1 ack=6 len=0 ------------------- ESTABLISHED
  0.625000  FIN_WAIT_1   -- FIN,ACK seq=6 ack=1 len=0 --------------> CLOSE_WAIT
  0.750000  FIN_WAIT_2   <- ACK seq=1 ack=7 len=0 ------------------- CLOSE_WAIT
  0.875000  TIME_WAIT    <- FIN,ACK seq=1 ack=7 len=0 --------------- LAST_ACK
  1.000000  TIME_WAIT    -- ACK seq=7 ack=2 len=0 ------------------> CLOSED"""


def test_ladder_of_handshake_and_four_way_close() -> None:
    events = segments_from_packets(timed(scripted_close()))
    assert "\n".join(ladder_lines(events)) == EXPECTED_CLOSE


def test_left_column_is_the_initiator_even_if_its_syn_was_not_captured_first() -> None:
    # Capture starts at the SYN-ACK: the client (its receiver) is still left.
    events = segments_from_packets(timed(scripted_close()[1:]))
    lines = ladder_lines(events)
    assert lines[0].startswith("connection 1: 10.203.0.1:40000 <-> 10.203.0.2:80")


def test_left_ip_puts_ustack_left_when_it_is_the_server() -> None:
    events = segments_from_packets(timed(scripted_close()))
    lines = ladder_lines(events, left_ip="10.203.0.2")
    assert lines[0].startswith("connection 1: 10.203.0.2:80 <-> 10.203.0.1:40000")
    assert lines[2].split() == [
        "0.000000",
        "SYN_RECEIVED",
        "<-",
        "SYN",
        "seq=0",
        "len=0",
        "-" * 25,
        "SYN_SENT",
    ]
    assert lines[-1].split()[1] == "CLOSED" and lines[-1].split()[-1] == "TIME_WAIT"


def test_simultaneous_close_goes_through_closing() -> None:
    p = scripted_close()[:5] + [
        c2s(CI + 6, SI + 1, FIN | ACK),
        s2c(SI + 1, CI + 6, FIN | ACK),  # crossed: does not ack the client's FIN
        s2c(SI + 2, CI + 7, ACK),
        c2s(CI + 7, SI + 2, ACK),
    ]
    rows = ladder_lines(segments_from_packets(timed(p)))[-4:]
    states = [(r.split()[1], r.split()[-1]) for r in rows]
    assert states == [
        ("FIN_WAIT_1", "CLOSE_WAIT"),
        ("CLOSING", "LAST_ACK"),  # each side has seen the other's FIN
        ("TIME_WAIT", "LAST_ACK"),
        ("TIME_WAIT", "CLOSED"),
    ]


def test_refused_connection_and_port_filter() -> None:
    refused = [
        build_tcp_packet(C, S, TcpSegment(40001, 81, 1, 0, SYN, 64240), 1),
        build_tcp_packet(S, C, TcpSegment(81, 40001, 0, 2, RST | ACK, 0), 1),
    ]
    events = segments_from_packets(timed(scripted_close() + refused))
    lines = ladder_lines(events, port=81)
    assert lines[0].startswith("connection 1: 10.203.0.1:40001 <-> 10.203.0.2:81")
    assert "<- RST,ACK seq=0 ack=1 len=0" in lines[3]
    # The client is reset; the refusing side never had a connection.
    assert lines[3].split()[1] == "CLOSED" and lines[3].split()[-1] == "CLOSED"
    both = ladder_lines(events)
    assert sum(line.startswith("connection ") for line in both) == 2


def test_reused_four_tuple_after_close_is_a_new_connection() -> None:
    events = segments_from_packets(timed(scripted_close() + scripted_close()))
    lines = ladder_lines(events)
    assert [line[:13] for line in lines if line.startswith("connection")] == [
        "connection 1:",
        "connection 2:",
    ]


def test_pcap_roundtrip_gives_the_same_ladder() -> None:
    import io

    buf = io.BytesIO()
    writer = PcapWriter(buf)
    for t, p in timed(scripted_close()):
        writer.write(t, p)
    writer.flush()
    records = list(read_pcap(buf.getvalue()))
    events = segments_from_packets((r.time, r.packet) for r in records)
    assert "\n".join(ladder_lines(events)) == EXPECTED_CLOSE


def test_svg_has_one_arrow_per_segment_and_the_labels() -> None:
    events = segments_from_packets(timed(scripted_close()))
    svg = ladder_svg(events)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    arrows = [e for e in root.iter(f"{ns}line") if e.get("marker-end")]
    assert len(arrows) == 9
    texts = [e.text for e in root.iter(f"{ns}text")]
    assert "FIN,ACK seq=6 ack=1 len=0" in texts
    assert texts.count("TIME_WAIT") == 2


def test_live_ladder_from_control_socket_messages() -> None:
    messages = []
    for i, p in enumerate(scripted_close()):
        messages.append(
            {
                "event": "packet",
                "time": 5.0 + i,
                "outgoing": False,
                "packet": base64.b64encode(p).decode(),
            }
        )
    messages.insert(
        6,
        {
            "event": "state",
            "time": 10.5,
            "local": "10.203.0.2:80",
            "peer": "10.203.0.1:40000",
            "old": "ESTABLISHED",
            "new": "CLOSE_WAIT",
        },
    )
    ladder = LiveLadder("10.203.0.2", port=80)
    out = []
    for m in messages:
        ev = event_from_json(m)
        assert ev is not None
        out.extend(ladder.feed(ev))
    assert out[1].startswith("connection 1: 10.203.0.2:80 <-> 10.203.0.1:40000")
    assert "[ustack ESTABLISHED -> CLOSE_WAIT (known)]" in out[9]
    assert len(out) == 3 + 9 + 1
    assert LiveLadder("10.203.0.2", port=22).feed(event_from_json(messages[0])) == []  # type: ignore[arg-type]
