"""The pcap writer and reader (classic libpcap, LINKTYPE_RAW)."""

from __future__ import annotations

import io
import struct

import pytest

from ustack.observe.pcap import LINKTYPE_RAW, PcapError, PcapWriter, read_pcap
from ustack.wire.ipv4 import build_tcp_packet
from ustack.wire.tcp import ACK, SYN, TcpSegment

A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def packet(i: int, payload: bytes = b"") -> bytes:
    return build_tcp_packet(
        A, B, TcpSegment(1000 + i, 80, i, 0, SYN | ACK, 100, payload), i
    )


def test_roundtrip_packets_and_microsecond_times() -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, clock_offset=1_700_000_000.0)
    packets = [packet(i, bytes(i * 10)) for i in range(5)]
    for i, p in enumerate(packets):
        writer.tap(i % 2 == 0, p, 0.25 * i + 0.0000015)
    writer.flush()
    data = buf.getvalue()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, LINKTYPE_RAW)
    assert snaplen == 65535
    records = list(read_pcap(data))
    assert [r.packet for r in records] == packets
    for i, r in enumerate(records):
        assert r.time == pytest.approx(1_700_000_000.0 + 0.25 * i, abs=2e-6)
    # One 16-byte record header per packet, no padding.
    assert len(data) == 24 + sum(16 + len(p) for p in packets)


def test_writer_buffers_until_flush_or_threshold() -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, flush_bytes=1000)
    writer.tap(True, packet(1), 1.0)
    assert buf.getvalue() == b""  # nothing written yet: the tap only buffers
    for i in range(30):
        writer.tap(True, packet(i, bytes(40)), 1.0)
    assert len(buf.getvalue()) >= 1000  # flushed by itself past the threshold
    writer.flush()
    assert len(list(read_pcap(buf.getvalue()))) == 31


def test_clock_overrides_the_taps_now() -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, clock=lambda: 42.5)
    writer.tap(False, packet(0), 1.0)
    writer.flush()
    (rec,) = read_pcap(buf.getvalue())
    assert rec.time == 42.5


def test_reads_big_endian_nanosecond_and_ethernet() -> None:
    p = packet(7, b"hello")
    be = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    eth = b"\x00" * 12 + b"\x08\x00" + p
    arp = b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28
    for frame in (eth, arp):
        be += struct.pack(">IIII", 10, 500_000_000, len(frame), len(frame)) + frame
    (rec,) = read_pcap(be)
    assert rec.packet == p and rec.time == 10.5


def test_rejects_garbage_and_stops_at_a_truncated_record() -> None:
    with pytest.raises(PcapError):
        list(read_pcap(b"\x0a\x0d\x0d\x0a" + bytes(40)))  # pcapng
    buf = io.BytesIO()
    writer = PcapWriter(buf)
    writer.tap(True, packet(1), 1.0)
    writer.tap(True, packet(2), 2.0)
    writer.flush()
    assert len(list(read_pcap(buf.getvalue()[:-3]))) == 1
