"""TCP segment value and its codec (RFC 9293 3.1, options RFC 7323 / 2018).

INTERFACE CONTRACT (shared by ustack/tcp and ustack/stack):
- `TcpSegment` is the parsed/unparsed value. Field names are fixed.
- `parse_tcp(buf, src_ip, dst_ip, verify=True) -> TcpSegment`
  raises `WireError(reason)` for a malformed header (bad options are
  ignored, not fatal).
- `build_tcp(seg, src_ip, dst_ip) -> bytes` returns header+options+payload
  with a correct checksum over the pseudo-header.
IP addresses are 4-byte `bytes` on the hot path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80


class WireError(ValueError):
    """Malformed packet; `reason` is a short counter name such as 'bad_csum'."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int  # raw 16-bit field; scaling is the TCB's business
    payload: bytes = b""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    urg_ptr: int = 0
    # The IP header's ECN field (RFC 3168 5): the codepoint it arrived with,
    # or the one to send it with (ustack.tcp.ecn: NOT_ECT, ECT_0, CE).
    ecn: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload plus one for each of SYN and FIN (RFC 9293 3.4)."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)

    def flag_names(self) -> str:
        names = "FSRPAUEC"
        return "".join(n for i, n in enumerate(names) if self.flags & (1 << i))


_HDR = struct.Struct("!HHIIBBHHH")  # fixed header, RFC 9293 3.1
_MSS = struct.Struct("!BBH")
_TS = struct.Struct("!BBII")
_TS4 = struct.Struct("!BBBBII")  # NOP NOP TS, or SACK_PERM TS
_BLOCK = struct.Struct("!II")
# Fixed header + NOP NOP TIMESTAMP: the usual data segment, in one unpack.
_HDR_TS = struct.Struct("!HHIIBBHHHIII")
_TS_LEAD = 0x0101080A  # NOP, NOP, kind 8, length 10
_MAX_OPT = 40  # 4-bit data offset: header <= 60 bytes

# kind -> required length (RFC 9293 3.2, RFC 7323 2.2/3.2, RFC 2018 2)
_OPT_LEN = {2: 4, 3: 3, 4: 2, 8: 10}


def _parse_options(buf: bytes | memoryview, end: int, seg: TcpSegment) -> None:
    """Fill the option fields of `seg` from buf[20:end] (RFC 9293 3.2).

    A malformed option never costs the segment (RFC 9293 MUST-7; its data
    must not be lost), as in Linux's tcp_parse_options: a length that is
    missing, below 2 or past the header stops parsing; a known kind with the
    wrong length is skipped.
    """
    i = 20
    while i < end:
        kind = buf[i]
        if kind == 0:  # EOL: the rest is padding
            return
        if kind == 1:  # NOP
            i += 1
            continue
        if i + 1 >= end:
            return
        ln = buf[i + 1]
        if ln < 2 or i + ln > end:
            return
        want = _OPT_LEN.get(kind)
        if want is not None and ln != want:
            i += ln  # a known kind with the wrong length: skipped
            continue
        if kind == 8:
            _, _, tsval, tsecr = _TS.unpack_from(buf, i)
            seg.timestamp = (tsval, tsecr)
        elif kind == 2:
            seg.mss = _MSS.unpack_from(buf, i)[2]
        elif kind == 3:
            seg.wscale = buf[i + 2]
        elif kind == 4:
            seg.sack_permitted = True
        elif kind == 5:  # RFC 2018 3: 1..4 blocks of (left, right)
            n, rem = divmod(ln - 2, 8)
            if not rem and 1 <= n <= 4:
                seg.sack_blocks = tuple(
                    _BLOCK.unpack_from(buf, i + 2 + 8 * k) for k in range(n)
                )
        i += ln  # unknown kinds with a sane length are skipped


def parse_tcp(
    buf: bytes | memoryview, src_ip: bytes, dst_ip: bytes, verify: bool = True
) -> TcpSegment:
    """Parse a TCP segment (the IP payload). `payload` is a fresh `bytes`."""
    n = len(buf)
    if n < 20:
        raise WireError("short")
    hlen = (buf[12] >> 4) << 2
    if hlen < 20 or hlen > n:
        raise WireError("bad_doff")
    if verify:
        # RFC 1071 by one reduction, as checksum.verify: the pseudo-header's
        # protocol term is nonzero, so a residue of 0 means the sum 0xFFFF.
        s = int.from_bytes(buf, "big") % 0xFFFF
        if n & 1:
            s <<= 8
        # + pseudo_header_sum(src_ip, dst_ip, 6, n), inlined (per segment)
        s += int.from_bytes(src_ip, "big") + int.from_bytes(dst_ip, "big") + 6 + n
        if s % 0xFFFF:
            raise WireError("bad_tcp_csum")
    if hlen == 32:  # NOP NOP TIMESTAMP alone, as on Linux data segments?
        sport, dport, seq, ack, _, flags, win, _, urg, lead, tsval, tsecr = (
            _HDR_TS.unpack_from(buf)
        )
        if lead == _TS_LEAD:  # one unpack, positional fields
            return TcpSegment(
                sport, dport, seq, ack, flags, win, bytes(buf[32:]),
                None, None, False, (), (tsval, tsecr), urg,
            )
    sport, dport, seq, ack, _, flags, win, _, urg = _HDR.unpack_from(buf)
    seg = TcpSegment(sport, dport, seq, ack, flags, win, bytes(buf[hlen:]), urg_ptr=urg)
    if hlen > 20:
        _parse_options(buf, hlen, seg)
    return seg


def timestamps_only(seg: TcpSegment) -> bool:
    """No option but (maybe) timestamps: the usual data segment or ACK."""
    return (
        seg.mss is None
        and seg.wscale is None
        and not seg.sack_permitted
        and not seg.sack_blocks
    )


def _build_options(seg: TcpSegment) -> bytes:
    """Options padded to 4 bytes by leading NOPs, Linux-style layout.

    SACK blocks that do not fit in the 40 option bytes are dropped from the
    end (RFC 2018 3: the first block must be the most recent one).
    """
    ts = seg.timestamp
    if ts is not None and timestamps_only(seg):
        return _TS4.pack(1, 1, 8, 10, ts[0], ts[1])  # usual data segment
    parts: list[bytes] = []
    if seg.mss is not None:
        parts.append(_MSS.pack(2, 4, seg.mss))
    if seg.wscale is not None:
        parts.append(bytes((1, 3, 3, seg.wscale)))
    if ts is not None:
        kinds = (4, 2) if seg.sack_permitted else (1, 1)
        parts.append(_TS4.pack(*kinds, 8, 10, ts[0], ts[1]))
    elif seg.sack_permitted:
        parts.append(b"\x01\x01\x04\x02")
    if seg.sack_blocks:
        room = _MAX_OPT - 4 - sum(map(len, parts))
        blocks = seg.sack_blocks[: room // 8]
        if blocks:
            parts.append(bytes((1, 1, 5, 2 + 8 * len(blocks))))
            parts.extend(_BLOCK.pack(left, right) for left, right in blocks)
    return b"".join(parts)


def _options(seg: TcpSegment) -> tuple[bytes, int]:
    """(option bytes, TCP header length) for `seg`."""
    if (
        seg.timestamp is None
        and seg.mss is None
        and seg.wscale is None
        and not seg.sack_permitted
        and not seg.sack_blocks
    ):
        return b"", 20
    opts = _build_options(seg)
    return opts, 20 + len(opts)


def _encode(seg: TcpSegment, addr_sum: int) -> tuple[bytes, int, int]:
    """(options, header length, checksum) for `seg`.

    `addr_sum` is int(src_ip) + int(dst_ip). The checksum is summed from the
    field values directly: every field starts on a 16-bit boundary and
    2**16 == 1 (mod 0xFFFF), so e.g. `seq` counts as its two words.
    """
    if (
        seg.timestamp is None
        and seg.mss is None
        and seg.wscale is None
        and not seg.sack_permitted
        and not seg.sack_blocks
    ):
        opts = b""
        hlen = 20
        s = 0
    else:
        opts = _build_options(seg)
        hlen = 20 + len(opts)
        s = int.from_bytes(opts, "big")  # 4-byte multiple
    payload = seg.payload
    plen = len(payload)
    # reduce the big int once, first; all other terms are small ints
    p = int.from_bytes(payload, "big") % 0xFFFF
    if plen & 1:
        p <<= 8  # RFC 9293 3.1: pad with a zero byte
    s = (
        s
        + p
        + addr_sum
        + 6  # pseudo-header protocol
        + hlen
        + plen  # pseudo-header TCP length
        + seg.src_port
        + seg.dst_port
        + seg.seq
        + seg.ack
        + (hlen << 10)  # data offset nibble
        + seg.flags
        + seg.window
        + seg.urg_ptr
    ) % 0xFFFF  # the sum is > 0: the protocol term is nonzero
    return opts, hlen, 0xFFFF - s if s else 0


def build_tcp(seg: TcpSegment, src_ip: bytes, dst_ip: bytes) -> bytes:
    """Header + options + payload with the checksum filled in.

    Fields are not masked: seq/ack must be in 0..2**32-1, window and urg_ptr
    in 0..65535, flags in 0..255, else `struct.error`.
    """
    opts, hlen, csum = _encode(
        seg, int.from_bytes(src_ip, "big") + int.from_bytes(dst_ip, "big")
    )
    hdr = _HDR.pack(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        hlen << 2,
        seg.flags,
        seg.window,
        csum,
        seg.urg_ptr,
    )
    if opts:
        return b"".join((hdr, opts, seg.payload))
    return hdr + seg.payload
