"""A tiny libpcap writer and a pcap/pcapng reader for raw IPv4 packets.

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


LINKTYPE_LINUX_SLL = 113  # `tcpdump -i any`: 16-byte cooked header
LINKTYPE_LINUX_SLL2 = 276
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D


def read_pcap(data: bytes) -> Iterator[PcapRecord]:
    """Yield the IPv4 packets of a capture file's bytes: classic pcap or
    pcapng (tshark's and Wireshark's default), told apart by the magic.

    Classic pcap: either byte order, microsecond or nanosecond timestamps.
    Link types: raw IP (101, 228), Ethernet (1, IPv4 frames only) and Linux
    cooked captures (113, 276: `tcpdump -i any`). Raises PcapError for a file
    that is neither format.
    """
    if not data:
        raise PcapError("empty file, not a pcap or pcapng capture")
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        return _read_pcapng(data)
    return _read_classic(data)


def _read_classic(data: bytes) -> Iterator[PcapRecord]:
    if len(data) < _GLOBAL.size:
        raise PcapError("not a pcap or pcapng file (shorter than a pcap header)")
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    if magic_le in (_MAGIC_US, _MAGIC_NS):
        endian, magic = "<", magic_le
    elif magic_be in (_MAGIC_US, _MAGIC_NS):
        endian, magic = ">", magic_be
    else:
        raise PcapError("not a pcap or pcapng file (unknown magic number)")
    divisor = 1e9 if magic == _MAGIC_NS else 1e6
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    _check_linktype(linktype)
    return _classic_records(data, endian, divisor, linktype)


def _classic_records(
    data: bytes, endian: str, divisor: float, linktype: int
) -> Iterator[PcapRecord]:
    rec = struct.Struct(endian + "IIII")
    offset = _GLOBAL.size
    while offset + rec.size <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, offset)
        offset += rec.size
        packet = data[offset : offset + incl]
        offset += incl
        if len(packet) < incl:
            break  # truncated last record
        ip = _ipv4_of(linktype, packet)
        if ip is not None:
            yield PcapRecord(sec + frac / divisor, ip)


def _check_linktype(linktype: int) -> None:
    if linktype not in _LINK_HEADERS:
        raise PcapError(f"unsupported link type {linktype}")


# Link type -> (link header length, offset of the EtherType in it).
_LINK_HEADERS = {
    LINKTYPE_RAW: (0, -1),
    LINKTYPE_IPV4: (0, -1),
    LINKTYPE_ETHERNET: (14, 12),
    LINKTYPE_LINUX_SLL: (16, 14),
    LINKTYPE_LINUX_SLL2: (20, 0),
}


def _ipv4_of(linktype: int, packet: bytes) -> bytes | None:
    """The IPv4 packet inside one link-layer frame, or None."""
    header, ethertype_at = _LINK_HEADERS[linktype]
    if header:
        if len(packet) < header:
            return None
        if packet[ethertype_at : ethertype_at + 2] != b"\x08\x00":
            return None
        packet = packet[header:]
    if not packet or packet[0] >> 4 != 4:
        return None
    return packet


def _read_pcapng(data: bytes) -> Iterator[PcapRecord]:
    """pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, Interface
    Description Blocks (link type, timestamp resolution), then Enhanced /
    Simple / obsolete Packet Blocks. Other blocks are skipped."""
    if len(data) < 12:
        raise PcapError("truncated pcapng file")
    if struct.unpack_from("<I", data, 8)[0] == _PCAPNG_BOM:
        endian = "<"
    elif struct.unpack_from(">I", data, 8)[0] == _PCAPNG_BOM:
        endian = ">"
    else:
        raise PcapError("not a pcapng file (bad byte-order magic)")
    return _pcapng_records(data, endian)


def _pcapng_records(data: bytes, endian: str) -> Iterator[PcapRecord]:
    u32 = struct.Struct(endian + "I")
    # Per interface of the current section: (link type, seconds per tick).
    interfaces: list[tuple[int, float]] = []
    offset = 0
    while offset + 12 <= len(data):
        kind = struct.unpack_from("<I", data, offset)[0]  # SHB type is a palindrome
        if kind == _PCAPNG_SHB:
            interfaces = []
            if struct.unpack_from("<I", data, offset + 8)[0] == _PCAPNG_BOM:
                endian = "<"
            else:
                endian = ">"
            u32 = struct.Struct(endian + "I")
        kind = u32.unpack_from(data, offset)[0]
        length = u32.unpack_from(data, offset + 4)[0]
        if length < 12 or offset + length > len(data):
            break  # truncated last block
        body = data[offset + 8 : offset + length - 4]
        offset += length
        if kind == 1 and len(body) >= 8:  # Interface Description Block
            linktype = struct.unpack_from(endian + "H", body)[0]
            interfaces.append((linktype, _ng_tick(body[8:], endian)))
        elif kind in (6, 2):  # Enhanced Packet Block, obsolete Packet Block
            if kind == 6:
                if len(body) < 20:
                    continue
                iface, high, low, incl, _orig = struct.unpack_from(
                    endian + "IIIII", body
                )
            else:
                if len(body) < 20:
                    continue
                iface, _drops, high, low, incl, _orig = struct.unpack_from(
                    endian + "HHIIII", body
                )
            if iface >= len(interfaces):
                continue
            linktype, tick = interfaces[iface]
            when = (high << 32 | low) * tick
            yield from _ng_packet(linktype, body[20 : 20 + incl], when)
        elif kind == 3 and interfaces and len(body) >= 4:  # Simple Packet Block
            linktype, _tick = interfaces[0]
            yield from _ng_packet(linktype, body[4:], 0.0)


def _ng_packet(linktype: int, frame: bytes, when: float) -> Iterator[PcapRecord]:
    if linktype not in _LINK_HEADERS:
        return
    ip = _ipv4_of(linktype, frame)
    if ip is not None:
        yield PcapRecord(when, ip)


def _ng_tick(options: bytes, endian: str) -> float:
    """Seconds per timestamp unit from the if_tsresol option (code 9):
    10**-n, or 2**-n when the high bit is set; default microseconds."""
    offset = 0
    while offset + 4 <= len(options):
        code, size = struct.unpack_from(endian + "HH", options, offset)
        if code == 0:
            break
        if code == 9 and size >= 1:
            value = options[offset + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        offset += 4 + (size + 3) // 4 * 4
    return 1e-6


def read_pcap_file(path: str) -> list[PcapRecord]:
    """Every IPv4 packet of a pcap or pcapng file (PcapError if neither)."""
    with open(path, "rb") as f:
        return list(read_pcap(f.read()))
