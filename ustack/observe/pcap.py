"""A tiny classic-libpcap writer and reader for raw IPv4 packets.

Format (https://wiki.wireshark.org/Development/LibpcapFileFormat): a 24-byte
global header, then per packet a 16-byte record header (seconds,
microseconds, captured length, original length) and the packet. ustack writes
LINKTYPE_RAW (101): every record is an IPv4 packet with no link header, which
Wireshark and tshark open directly.

`PcapWriter.tap` has the signature of a `Stack.taps` entry and only appends
to a buffer; `flush()` writes it out (the CLI flushes once a second and at
exit, and the writer flushes by itself past `flush_bytes`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IP (v4 or v6, from the version nibble)
LINKTYPE_IPV4 = 228
SNAPLEN = 65535

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


@dataclass(frozen=True, slots=True)
class PcapRecord:
    time: float  # seconds since the epoch
    packet: bytes  # an IPv4 packet (link header removed)


def global_header(linktype: int = LINKTYPE_RAW, snaplen: int = SNAPLEN) -> bytes:
    return _GLOBAL.pack(_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def record(timestamp: float, packet: bytes, snaplen: int = SNAPLEN) -> bytes:
    usec_total = round(timestamp * 1_000_000)
    sec, usec = divmod(usec_total, 1_000_000)
    data = packet[:snaplen]
    return _RECORD.pack(sec, usec, len(data), len(packet)) + bytes(data)


class PcapWriter:
    """Write packets to `file` (opened "wb") in pcap format, buffered.

    Timestamps are `clock()` if given (e.g. time.time: the moment the tap
    sees the packet), else the `now` the stack passes to taps; then
    `clock_offset` is added (e.g. trio clock -> epoch seconds).
    """

    def __init__(
        self,
        file: BinaryIO,
        clock_offset: float = 0.0,
        flush_bytes: int = 1 << 20,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.file = file
        self.clock_offset = clock_offset
        self.clock = clock
        self.flush_bytes = flush_bytes
        self.packets = 0
        self._buf = bytearray(global_header())
        self._closed = False

    def tap(self, outgoing: bool, packet: bytes, now: float) -> None:
        """A `Stack.taps` entry: buffer one record (no I/O unless the buffer
        is past `flush_bytes`)."""
        if self.clock is not None:
            now = self.clock()
        usec_total = int((now + self.clock_offset) * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        n = len(packet)
        buf = self._buf
        if n > SNAPLEN:
            buf += _RECORD.pack(sec, usec, SNAPLEN, n)
            buf += packet[:SNAPLEN]
        else:
            buf += _RECORD.pack(sec, usec, n, n)
            buf += packet
        self.packets += 1
        if len(buf) >= self.flush_bytes:
            self.flush()

    def write(self, timestamp: float, packet: bytes) -> None:
        """Append a packet with an absolute (epoch) timestamp."""
        clock, self.clock = self.clock, None
        try:
            self.tap(False, packet, timestamp - self.clock_offset)
        finally:
            self.clock = clock

    def flush(self) -> None:
        if self._closed:
            return
        if self._buf:
            self.file.write(self._buf)
            self._buf = bytearray()
        self.file.flush()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self.file.close()


def wall_clock_offset(now: float) -> float:
    """Offset that turns a monotonic `now` into epoch seconds."""
    return time.time() - now


class PcapError(ValueError):
    pass


def read_pcap(data: bytes) -> Iterator[PcapRecord]:
    """Yield the IPv4 packets of a classic pcap file's bytes.

    Accepts either byte order, microsecond or nanosecond timestamps, and the
    link types raw IP (101, 228) and Ethernet (1, IPv4 frames only).
    """
    if len(data) < _GLOBAL.size:
        raise PcapError("not a pcap file: shorter than its header")
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    if magic_le in (_MAGIC_US, _MAGIC_NS):
        endian, magic = "<", magic_le
    elif magic_be in (_MAGIC_US, _MAGIC_NS):
        endian, magic = ">", magic_be
    else:
        raise PcapError("not a classic pcap file (pcapng is not supported)")
    divisor = 1e9 if magic == _MAGIC_NS else 1e6
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_ETHERNET):
        raise PcapError(f"unsupported link type {linktype}")
    rec = struct.Struct(endian + "IIII")
    offset = _GLOBAL.size
    while offset + rec.size <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, offset)
        offset += rec.size
        packet = data[offset : offset + incl]
        offset += incl
        if len(packet) < incl:
            break  # truncated last record
        if linktype == LINKTYPE_ETHERNET:
            if len(packet) < 14 or packet[12:14] != b"\x08\x00":
                continue
            packet = packet[14:]
        if not packet or packet[0] >> 4 != 4:
            continue
        yield PcapRecord(sec + frac / divisor, packet)


def read_pcap_file(path: str) -> list[PcapRecord]:
    with open(path, "rb") as f:
        return list(read_pcap(f.read()))
