"""The TIME_WAIT table on its own: plain `now` numbers, hand-built segments."""

from __future__ import annotations

from collections import Counter

import pytest

from ustack.tcp.timewait import TimeWaitTable, pack_key
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment

PEER = b"\x0a\x00\x00\x01"
KEY = (PEER, 40000, 80)
SND_NXT, RCV_NXT = 1_000_000, 5_000
MSL2 = 60.0
RATE = 0.5


def table(timestamps: tuple[int, int] | None = None) -> TimeWaitTable:
    t = TimeWaitTable(b"\x0a\x00\x00\x02", Counter())
    t.add(KEY, SND_NXT, RCV_NXT, 512, MSL2, timestamps)
    return t


def segment(
    seq: int, flags: int, payload: bytes = b"", ts: tuple[int, int] | None = None
) -> TcpSegment:
    seg = TcpSegment(40000, 80, seq, SND_NXT, flags, 65535, payload)
    seg.timestamp = ts
    return seg


def feed(t: TimeWaitTable, seg: TcpSegment, now: float) -> tuple[object, int | None]:
    row = t.find(KEY)
    assert row is not None
    return t.on_segment(row, seg, now, MSL2, RATE)


def test_keys_pack_into_48_bits() -> None:
    assert pack_key(PEER, 40000, 80) == 0x0A000001 << 32 | 40000 << 16 | 80
    assert KEY in table() and (PEER, 40001, 80) not in table()


def test_retransmitted_fin_is_acked_every_time_and_restarts_2msl() -> None:
    t = table()
    for now in (1.0, 1.1, 1.2):  # a FIN occupies sequence space: never limited
        reply, iss = feed(t, segment(RCV_NXT - 1, FIN | ACK), now)
        assert isinstance(reply, TcpSegment) and iss is None
        assert (reply.seq, reply.ack, reply.flags) == (SND_NXT, RCV_NXT, ACK)
    [record] = t.records()
    assert record.deadline == 1.2 + MSL2
    assert t.expire(MSL2 + 1) == []  # the restart moved it past its first deadline
    [gone] = t.expire(1.2 + MSL2)
    assert gone.key == KEY and len(t) == 0 and t.pending_rows() == 0


@pytest.mark.parametrize(
    "seq", [RCV_NXT + 1000, RCV_NXT - 5000, RCV_NXT], ids=["above", "below", "at"]
)
def test_only_the_acceptable_fin_restarts_2msl(seq: int) -> None:
    # Issue 10 item 5: a FIN that is not the peer's own FIN again (out of
    # window, or a new FIN past RCV.NXT) gets an ACK, but keeps the deadline.
    t = table()
    reply, _ = feed(t, segment(seq, FIN | ACK), 1.0)
    assert isinstance(reply, TcpSegment)
    [record] = t.records()
    assert record.deadline == MSL2


def test_rst_is_ignored_rfc1337() -> None:
    t = table()
    assert feed(t, segment(RCV_NXT, RST), 1.0) == (None, None)
    assert len(t) == 1


def test_out_of_window_acks_are_rate_limited() -> None:
    # Issue 10 item 5: a blind 1:1 ACK reflector costs at most one ACK per 0.5 s.
    t = table()
    replies = [
        feed(t, segment(RCV_NXT + 10**6, ACK), 1.0 + i * 0.1)[0] for i in range(10)
    ]
    assert sum(r is not None for r in replies) == 2  # at 1.0 and at 1.5
    assert t.counters["TCPACKSkippedTimeWait"] == 8
    assert feed(t, segment(RCV_NXT, ACK), 3.0) == (None, None)  # in-window: silent


def test_reopen_iss_lies_above_the_old_snd_nxt() -> None:
    # Issue 10 item 7 (RFC 1122 4.2.2.13; Linux: SND.NXT + 65537).
    t = table()
    reply, iss = feed(t, segment(RCV_NXT + 100, SYN), 1.0)
    assert reply is None and iss == SND_NXT + 65537
    assert len(t) == 0


def test_reopen_iss_wraps_and_is_never_zero() -> None:
    t = TimeWaitTable(b"\0\0\0\0")
    t.add(KEY, 0xFFFFFFFF - 65536, RCV_NXT, 512, MSL2)
    row = t.find(KEY)
    assert row is not None
    assert t.on_segment(row, segment(RCV_NXT + 1, SYN), 1.0, MSL2, RATE)[1] == 1


def test_old_syn_without_timestamps_gets_an_ack_not_a_reopen() -> None:
    t = table()
    reply, iss = feed(t, segment(RCV_NXT - 100, SYN), 1.0)
    assert iss is None and isinstance(reply, TcpSegment)
    assert reply.timestamp is None
    assert feed(t, segment(RCV_NXT - 100, SYN), 1.1) == (None, None)  # limited


def test_syn_with_newer_timestamp_reopens_below_rcv_nxt() -> None:
    # Issue 10 item 8 / RFC 6191 2: a newer TSval proves a new incarnation
    # even when the client's ISN lies at or below the old RCV.NXT.
    t = table(timestamps=(7000, 123))
    reply, iss = feed(t, segment(RCV_NXT - 100, SYN, ts=(7001, 0)), 1.0)
    assert reply is None and iss == SND_NXT + 65537


def test_syn_with_older_timestamp_is_refused_even_above_rcv_nxt() -> None:
    # PAWS (RFC 7323 5) as Linux applies it in TIME_WAIT: an old duplicate.
    t = table(timestamps=(7000, 123))
    reply, iss = feed(t, segment(RCV_NXT + 100, SYN, ts=(6999, 0)), 1.0)
    assert iss is None and isinstance(reply, TcpSegment)
    assert t.counters["PAWSEstabRejected"] == 1


def test_acks_carry_timestamps_on_our_clock() -> None:
    t = table(timestamps=(7000, 123))
    reply, _ = feed(t, segment(RCV_NXT - 1, FIN | ACK, ts=(7005, 0)), 2.5)
    assert isinstance(reply, TcpSegment)
    assert reply.timestamp == (2500 + 123, 7005)  # TS.Recent updated by the FIN


def test_paws_rejected_fin_does_not_restart() -> None:
    t = table(timestamps=(7000, 123))
    reply, _ = feed(t, segment(RCV_NXT - 1, FIN | ACK, ts=(6000, 0)), 1.0)
    assert isinstance(reply, TcpSegment)
    [record] = t.records()
    assert record.deadline == MSL2 and record.ts_recent == 7000


def test_many_rows_expire_in_order_and_the_arrays_shrink() -> None:
    t = TimeWaitTable(b"\0\0\0\0")
    for i in range(10_000):
        t.add((PEER, 1024 + i, 80), i, i, 0, float(i))
    assert len(t) == 10_000
    assert len(t.expire(4999.0)) == 5000
    assert t.pending_rows() == 5000 and len(t._keys) == 5000  # trimmed
    assert (PEER, 1024 + 4999, 80) not in t and (PEER, 1024 + 5000, 80) in t
    assert t.uses_local_port(80) and not t.uses_local_port(81)
    assert len(t.expire(1e9)) == 5000 and t.next_deadline() == float("inf")
