"""ECN (RFC 3168) at the TCB level, in virtual time: negotiation, ECT(0) on
new data only, CE -> ECE until CWR, and one window reduction per window."""

from __future__ import annotations

import pytest

from tests.tcb_harness import Pair, mk
from ustack.config import Settings
from ustack.tcp import ecn
from ustack.tcp.recovery import CaState
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, CWR, ECE, SYN, TcpSegment


def settings(value: int) -> Settings:
    return Settings(msl=1.0, ecn=value, timestamps=False)


def pair(client: int = 1, server: int = 2, **kw: object) -> Pair:
    return Pair(settings=settings(client), settings_b=settings(server), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("client", [0, 1, 2])
@pytest.mark.parametrize("server", [0, 1, 2])
def test_negotiation_matrix(client: int, server: int) -> None:
    """Linux tcp_ecn: 1 asks on active opens, 1 and 2 accept on passive ones."""
    p = pair(client, server)
    a, b = p.establish()
    syn, synack = p.log[0].seg, p.log[1].seg
    asked = client == 1
    agreed = asked and server in (1, 2)
    assert syn.flags & (ECE | CWR) == ((ECE | CWR) if asked else 0)
    assert synack.flags & (ECE | CWR) == (ECE if agreed else 0)
    assert bool(a.ecn_flags & ecn.OK) is agreed
    assert bool(b.ecn_flags & ecn.OK) is agreed
    # RFC 3168 6.1.1: SYNs and SYN-ACKs are never ECT.
    assert syn.ecn == 0 and synack.ecn == 0


def syn_to_server(flags: int, codepoint: int = 0, server: int = 2) -> Tcb:
    b = Tcb(settings(server), (b"\x0a\0\0\x02", 80), (b"\x0a\0\0\x01", 4000),
            5000, 1460, 0.0)
    b.open_passive(mk(1000, 0, flags, ecn=codepoint), 0.0)
    return b


def test_server_needs_both_ece_and_cwr_on_a_non_ect_syn() -> None:
    assert syn_to_server(SYN | ECE | CWR).ecn_flags == ecn.OK
    assert syn_to_server(SYN | ECE | CWR).outbox[0].flags & (ECE | CWR) == ECE
    assert syn_to_server(SYN | ECE).ecn_flags == 0
    assert syn_to_server(SYN | CWR).ecn_flags == 0
    # A SYN that is itself ECT is no RFC 3168 sender (Linux refuses too).
    assert syn_to_server(SYN | ECE | CWR, ecn.ECT_0).ecn_flags == 0
    assert syn_to_server(SYN | ECE | CWR, server=0).ecn_flags == 0
    assert not syn_to_server(SYN | ECE | CWR, server=0).outbox[0].flags & ECE


@pytest.mark.parametrize(
    ("reply", "agreed"),
    [(ECE, True), (0, False), (ECE | CWR, False), (CWR, False)],
)
def test_client_enables_only_on_a_synack_with_ece_alone(
    reply: int, agreed: bool
) -> None:
    """RFC 3168 6.1.1: a SYN-ACK with ECE and CWR comes from a reflector."""
    a = Tcb(settings(1), (b"\x0a\0\0\x01", 4000), (b"\x0a\0\0\x02", 80), 1000, 1460,
            0.0)
    a.open_active(0.0)
    assert a.ecn_flags == ecn.OK  # asked; not yet agreed
    a.on_segment(mk(5000, 1001, SYN | ACK | reply, to_b=False), 0.01)
    assert bool(a.ecn_flags & ecn.OK) is agreed


def test_retransmitted_syn_falls_back_to_no_ecn() -> None:
    """RFC 3168 6.1.1.1 / Linux tcp_ecn_clear_syn: a resent SYN goes without
    ECE and CWR, in case an ECN-setup SYN was what got dropped."""
    p = pair(1, 2)
    p.drop = lambda d, s: d == "A>B" and s.flags & SYN and s.flags & ECE  # type: ignore[assignment,return-value]
    p.connect()
    p.run(until=5.0)
    syns = [e.seg for e in p.sent("A>B") if e.seg.flags & SYN]
    assert syns[0].flags & ECE and not syns[1].flags & (ECE | CWR)
    a, b = p.a, p.b
    assert b is not None and a.state.name == "ESTABLISHED"
    assert a.ecn_flags == 0 and b.ecn_flags == 0


def test_ect_on_new_data_only() -> None:
    """Linux tcp_ecn_send: new data is ECT(0); pure ACKs and
    retransmissions are not (RFC 3168 6.1.4, 6.1.5)."""
    p = pair(1, 2, mss=1000, delay=0.01)
    a, b = p.establish()
    start = len(p.log)
    dropped: set[int] = set()

    def drop_once(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and not dropped:
            dropped.add(seg.seq)
            return True
        return False

    p.drop = drop_once
    a.send(b"x" * 5000)
    p.run(until=p.now + 5)
    assert b.read(1 << 20) == b"x" * 5000
    data = [e.seg for e in p.sent("A>B", start) if e.seg.payload]
    first = {s.seq for s in data[:5]}
    resent = [s for s in data[5:] if s.seq in first]
    assert resent, "the dropped segment was retransmitted"
    assert all(s.ecn == ecn.ECT_0 for s in data[:5])
    assert all(s.ecn == ecn.NOT_ECT for s in resent)
    acks = [e.seg for e in p.log[start:] if not e.seg.payload]
    assert acks and all(s.ecn == ecn.NOT_ECT for s in acks)


def test_no_ect_without_negotiation() -> None:
    p = pair(2, 2, mss=1000)
    a, b = p.establish()
    a.send(b"y" * 3000)
    p.run(until=p.now + 1)
    assert all(e.seg.ecn == 0 for e in p.log)


def mark_ce(p: Pair, count: int) -> list[int]:
    """CE-mark the next `count` data segments from A (a router's queue)."""
    marked: list[int] = []

    def hook(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload and seg.ecn and len(marked) < count:
            marked.append(seg.seq)
            seg.ecn = ecn.CE
        return False

    p.drop = hook
    return marked


def test_ce_echoed_until_cwr_then_one_reduction() -> None:
    """RFC 3168 6.1.3: the receiver sets ECE on every ACK from the CE mark
    until a segment with CWR; the sender cuts its window once (CWR state,
    Linux tcp_enter_cwr) and sets CWR on its next new data (6.1.2)."""
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    a.cwnd = 20_000
    marked = mark_ce(p, 1)
    start = len(p.log)
    a.send(b"z" * 10_000)
    a.flush(p.now)
    p.run(until=p.now + 0.021)
    assert marked and b.ecn_flags & ecn.DEMAND_CWR and b.ecn_flags & ecn.SEEN
    p.run(until=p.now + 0.02)  # the ACKs reach A
    assert a.rec.state is CaState.CWR
    assert a.ssthresh < 20_000
    assert a.counters["TCPDeliveredCE"] > 0
    a.send(b"w" * 5000)
    a.flush(p.now)
    p.run(until=p.now + 1)
    acks = [e.seg for e in p.sent("B>A", start)]
    data = [e.seg for e in p.sent("A>B", start) if e.seg.payload]
    cwr_at = next(i for i, s in enumerate(data) if s.flags & CWR)
    assert sum(1 for s in data if s.flags & CWR) == 1  # once per reduction
    assert data[cwr_at].seq == (b.irs + 1 + 10_000) & 0xFFFFFFFF  # first new data
    # Every ACK between the mark and the CWR carried ECE; none after.
    ece = [bool(s.flags & ECE) for s in acks]
    assert ece[0] and True in ece and ece[-1] is False
    first_clear = ece.index(False)
    assert all(ece[:first_clear]) and not any(ece[first_clear:])
    assert not b.ecn_flags & ecn.DEMAND_CWR
    assert a.rec.state is CaState.OPEN
    assert a.counters["RetransSegs"] == 0  # CWR retransmits nothing
    assert b.read(1 << 20) == b"z" * 10_000 + b"w" * 5000


def test_one_reduction_per_window_however_many_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    a.cwnd = 20_000
    mark_ce(p, 15)  # most of the window
    seen: list[int] = []
    orig = type(a.cc).ssthresh_after_loss

    def counting(self: object, now: float) -> int:
        seen.append(1)
        return orig(self, now)  # type: ignore[arg-type]

    monkeypatch.setattr(type(a.cc), "ssthresh_after_loss", counting)
    a.send(b"z" * 20_000)
    a.flush(p.now)
    p.run(until=p.now + 0.045)  # one RTT: every ACK of the window arrived
    assert len(seen) == 1
    assert a.ssthresh == 14_000  # CUBIC beta 0.7 of 20 segments
    p.run(until=p.now + 1)
    assert b.read(1 << 20) == b"z" * 20_000


def test_ece_ignored_when_not_negotiated() -> None:
    p = pair(0, 2, mss=1000)
    a, b = p.establish()
    a.cwnd = 10_000
    a.send(b"q" * 4000)
    a.flush(p.now)
    p.drop = lambda d, s: True
    p.pump()
    p.inject_a(mk(b.snd_nxt, a.snd_una + 1000, ACK | ECE, to_b=False))
    assert a.rec.state is CaState.OPEN and a.cwnd >= 10_000


def test_ece_during_recovery_does_not_reduce_again() -> None:
    """A loss starts recovery; CE marks on later segments of the same window
    bring ECE ACKs during recovery: no second cut (RFC 3168 6.1.2)."""
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    a.cwnd = 20_000
    base = a.snd_nxt
    lost = {(base + 2000) & 0xFFFFFFFF}
    marked = {(base + 1000 * i) & 0xFFFFFFFF for i in range(10, 20)}

    def lose_and_mark(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.payload:
            if seg.seq in lost:
                lost.discard(seg.seq)
                return True
            if seg.seq in marked and seg.ecn:
                seg.ecn = ecn.CE
        return False

    p.drop = lose_and_mark
    a.send(b"r" * 20_000)
    a.flush(p.now)
    while a.rec.state is CaState.OPEN:
        assert p.step()
    assert a.rec.state is CaState.RECOVERY
    cut = a.ssthresh
    echoed = 0
    while a.rec.state is CaState.RECOVERY:
        echoed += sum(1 for e in p.log if e.direction == "B>A" and e.seg.flags & ECE)
        assert a.ssthresh == cut
        assert p.step()
    assert echoed, "ECE arrived during recovery"
    p.run(until=p.now + 1)
    assert b.read(1 << 20) == b"r" * 20_000


def test_controller_that_ignores_ece_still_sends_cwr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BBR v1 in Linux keeps its window on ECE (its model owns cwnd), but
    the connection still enters CWR and tells the receiver with CWR."""
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    a.cwnd = 20_000
    monkeypatch.setattr(type(a.cc), "reacts_to_ecn", False, raising=False)
    mark_ce(p, 1)
    a.send(b"z" * 10_000)
    a.flush(p.now)
    p.run(until=p.now + 0.045)
    assert a.rec.state is CaState.CWR and a.cwnd >= 20_000
    start = len(p.log)
    a.send(b"w" * 3000)
    a.flush(p.now)
    p.run(until=p.now + 1)
    assert any(e.seg.flags & CWR for e in p.sent("A>B", start))
    assert not b.ecn_flags & ecn.DEMAND_CWR


def test_ss_row_and_info_show_ecn_and_ecnseen() -> None:
    """`ustack ss` as Linux's ss -i: "ecn" once negotiated, "ecnseen" once
    ECT or CE arrived; the JSON rows carry both."""
    from ustack.observe.introspect import connection_row, info_text

    p = pair(1, 2, mss=1000)
    a, b = p.establish()
    row = connection_row(b, p.now)
    assert row["ecn"] is True and row["ecnseen"] is False
    assert info_text(row).startswith("ecn cubic ")
    a.send(b"e" * 2000)
    p.run(until=p.now + 1)
    row = connection_row(b, p.now)
    assert row["ecnseen"] is True
    assert info_text(row).startswith("ecn ecnseen cubic ")
    plain = pair(0, 2)
    _, pb = plain.establish()
    row = connection_row(pb, plain.now)
    assert row["ecn"] is False and "ecn" not in info_text(row)


def test_ecn_codepoint_travels_in_the_ip_header() -> None:
    """build_tcp_packet puts seg.ecn in the TOS byte (checksum included);
    parse_ipv4 hands it back (RFC 3168 5)."""
    from ustack.wire.ipv4 import build_tcp_packet, parse_ipv4

    for codepoint in (ecn.NOT_ECT, ecn.ECT_1, ecn.ECT_0, ecn.CE):
        seg = TcpSegment(1, 2, 3, 4, ACK, 5, b"data", ecn=codepoint)
        packet = build_tcp_packet(b"\x0a\0\0\x01", b"\x0a\0\0\x02", seg, 7)
        assert packet[1] == codepoint
        assert parse_ipv4(packet).ecn == codepoint  # header checksum verified


@pytest.mark.parametrize(("left", "right"), [(1, 1), (1, 0), (0, 1)])
def test_simultaneous_open(left: int, right: int) -> None:
    """Both SYNs cross: ECN only if both asked (Linux tcp_ecn_rcv_syn)."""
    p = Pair(settings=settings(left), settings_b=settings(right))
    p.simultaneous_open()
    a, b = p.a, p.b
    assert b is not None and p.states()[0].name == "ESTABLISHED"
    agreed = left == right == 1
    assert bool(a.ecn_flags & ecn.OK) is agreed
    assert bool(b.ecn_flags & ecn.OK) is agreed


def test_every_reduction_is_followed_by_one_cwr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A standing CE-marking queue: one cut per window, each announced by
    CWR on new data, also when one CWR episode ends and the next begins on
    the same ACK (RFC 3168 6.1.2)."""
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    cuts: list[float] = []
    orig = type(a.cc).ssthresh_after_loss

    def counting(self: object, now: float) -> int:
        cuts.append(now)
        return orig(self, now)  # type: ignore[arg-type]

    monkeypatch.setattr(type(a.cc), "ssthresh_after_loss", counting)

    def every_third(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.ecn and (seg.seq // 1000) % 3 == 0:
            seg.ecn = ecn.CE
        return False

    p.drop = every_third
    start = len(p.log)
    data = b"s" * 300_000
    got = b""
    pos = 0
    while len(got) < len(data):
        pos += a.send(data[pos:])
        p.run(until=p.now + 0.01)
        got += b.read(1 << 20)
    p.run(until=p.now + 1)
    cwr = [e for e in p.sent("A>B", start) if e.seg.flags & CWR]
    assert len(cuts) >= 5
    # The last cut may still wait for new data to carry its CWR.
    pending = 1 if a.ecn_flags & ecn.QUEUE_CWR else 0
    assert len(cwr) + pending == len(cuts)
    # Never two cuts within one RTT (40 ms): once per window.
    assert all(t2 - t1 >= 0.039 for t1, t2 in zip(cuts, cuts[1:], strict=False))
    assert a.counters["RetransSegs"] == 0


def test_synack_to_the_first_syn_still_enables_after_a_resent_syn() -> None:
    """The SYN-ACK to our (ECN-setup) first SYN may arrive after we resent
    a plain SYN: as Linux, ECN is on if it says ECE."""
    a = Tcb(settings(1), (b"\x0a\0\0\x01", 4000), (b"\x0a\0\0\x02", 80), 1000, 1460,
            0.0)
    a.open_active(0.0)
    a.on_timer(1.0)  # the SYN is resent, without ECE and CWR
    assert not a.outbox[-1].flags & (ECE | CWR)
    a.on_segment(mk(5000, 1001, SYN | ACK | ECE, to_b=False), 1.1)
    assert a.ecn_flags & ecn.OK


def test_loss_reductions_are_announced_with_cwr_too() -> None:
    """RFC 3168 6.1.2: CWR follows any reduction, fast retransmit included
    (Linux tcp_init_cwnd_reduction queues it for loss recovery as well)."""
    p = pair(1, 2, mss=1000, delay=0.02)
    a, b = p.establish()
    a.cwnd = 20_000
    lost = {(a.snd_nxt + 3000) & 0xFFFFFFFF}

    def lose(direction: str, seg: TcpSegment) -> bool:
        if direction == "A>B" and seg.seq in lost and seg.payload:
            lost.discard(seg.seq)
            return True
        return False

    p.drop = lose
    start = len(p.log)
    a.send(b"l" * 40_000)
    a.flush(p.now)
    p.run(until=p.now + 2)
    assert a.counters["TCPSackRecovery"] + a.counters["TCPRenoRecovery"] == 1
    cwr = [e.seg for e in p.sent("A>B", start) if e.seg.flags & CWR]
    assert len(cwr) == 1 and cwr[0].ecn == ecn.ECT_0  # on new data
    assert b.read(1 << 20) == b"l" * 40_000
