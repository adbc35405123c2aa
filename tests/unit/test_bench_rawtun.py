"""tools/rawtun.py builds segments the kernel accepts: valid IPv4 and TCP checksums."""

from __future__ import annotations

import socket
import struct

import pytest
from rawtun import ACK_FLAG, SYN, RawTun

from ustack.wire.checksum import pseudo_header_sum, verify


@pytest.mark.parametrize("size", [0, 1, 1460, 1461, 65495])
def test_segments_carry_valid_checksums(size: int) -> None:
    # A SEQPACKET pair keeps packet boundaries, like the TUN fd.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        raw = RawTun(a.fileno(), "10.203.0.2", 65535)
        peer = bytes([10, 203, 0, 1])
        data, dsum = raw._payload(size) if size else (b"", None)
        raw.send(peer, 7, 40000, 123, 456, ACK_FLAG, data, data_sum=dsum)
        raw.send(peer, 7, 40001, 1, 2, SYN | ACK_FLAG, options=b"\x02\x04\x05\xb4")
        for expect in (40 + size, 44):
            pkt = b.recv(70000)
            assert len(pkt) == expect == int.from_bytes(pkt[2:4], "big")
            assert verify(pkt[:20])
            seg = pkt[20:]
            assert verify(seg, pseudo_header_sum(pkt[12:16], pkt[16:20], 6, len(seg)))
        assert raw.counters["packets_out"] == 2


def _segment(seq: int, flags: int, payload: bytes = b"", opts: bytes = b"") -> bytes:
    tcp = (
        struct.pack(
            "!HHIIBBHHH",
            40000,
            9,
            seq,
            0,
            (20 + len(opts)) // 4 << 4,
            flags,
            65535,
            0,
            0,
        )
        + opts
        + payload
    )
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0,
        64,
        6,
        0,
        bytes([10, 203, 0, 1]),
        bytes([10, 203, 0, 2]),
    )
    return ip + tcp


def test_peer_sequence_numbers_wrap() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        raw = RawTun(a.fileno(), "10.203.0.2", 1500)
        acks: set[tuple[bytes, int, int]] = set()
        sends: set[tuple[bytes, int, int]] = set()
        isn = 0xFFFFFFF0
        raw.handle(_segment(isn, SYN, opts=b"\x02\x04\x05\xb4"), acks, sends)
        raw.handle(_segment(isn + 1, ACK_FLAG, b"x" * 100), acks, sends)
        raw.flush(acks, sends)
        b.recv(100)  # SYN-ACK
        ack = b.recv(100)
        assert struct.unpack_from("!I", ack, 28)[0] == (isn + 101) & 0xFFFFFFFF
        assert raw.counters["payload_in"] == 100
