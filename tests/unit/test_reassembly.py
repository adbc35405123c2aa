"""Out-of-order reassembly (ustack/tcp/reassembly.py): exact data, the
truesize-like bound, Linux-style pruning, RFC 2018 4 block order."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.reassembly import CHUNK_COST, RUN_COST, Reassembly
from ustack.tcp.seq import MASK, seq_add, seq_diff

BIG = 1 << 30
ONE = RUN_COST + CHUNK_COST  # the charge of one isolated segment, besides its bytes


def test_in_order_fill() -> None:
    r = Reassembly(BIG)
    r.add(100, 110, b"BBBBB")
    r.add(100, 120, b"DDDDD")
    assert r.size == 10 and len(r) == 2
    assert r.pop_ready(100) is None  # hole at 100..110
    assert r.pop_ready(110) == b"BBBBB"  # 115..120 still missing
    assert r.size == 5
    assert r.pop_ready(115) is None
    assert r.pop_ready(120) == b"DDDDD"
    assert r.size == 0 and len(r) == 0 and r.truesize == 0


def test_overlap_keeps_first_bytes() -> None:
    r = Reassembly(BIG)
    r.add(0, 10, b"aaaaa")  # 10..15
    r.add(0, 20, b"ccccc")  # 20..25
    r.add(0, 8, b"XXXXXXXXXXXXXXXXXXXX")  # 8..28 overlaps both
    assert r.size == 20 and len(r) == 1  # 8..28, no byte stored twice
    assert r.pop_ready(8) == b"XX" + b"aaaaa" + b"XXXXX" + b"ccccc" + b"XXX"
    assert r.size == 0 and r.truesize == 0


def test_duplicate_is_free() -> None:
    c: Counter[str] = Counter()
    r = Reassembly(BIG, c)
    r.add(0, 10, b"hello")
    r.add(0, 10, b"HELLO")
    r.add(0, 11, b"ELL")
    assert r.size == 5 and len(r) == 1 and r.truesize == 5 + ONE
    assert c["TCPOFOQueue"] == 3 and c["TCPOFOMerge"] == 2
    assert r.pop_ready(10) == b"hello"


def test_adjacent_segments_coalesce_into_one_run_and_chunk() -> None:
    r = Reassembly(BIG)
    for i in range(100):
        r.add(0, 10 + i, b"x")
    assert len(r) == 1 and r.truesize == 100 + ONE  # like tcp_try_coalesce
    for i in range(100):  # arriving right to left: one run, a chunk each
        r.add(0, 500 - i, b"y")
    assert len(r) == 2 and r.truesize == 200 + 2 * RUN_COST + 101 * CHUNK_COST


def test_pop_from_middle_of_segment() -> None:
    r = Reassembly(BIG)
    r.add(0, 10, b"0123456789")
    # The in-order path delivered up to 15 already: only the rest comes out.
    assert r.pop_ready(15) == b"56789"
    assert r.size == 0
    r.add(0, 10, b"abc")
    assert r.pop_ready(20) is None  # wholly stale: discarded
    assert r.size == 0 and len(r) == 0


def test_bound_charges_per_segment_overhead() -> None:
    """1-byte segments at RCV.NXT+2, +4, ...: each costs its overhead, so the
    default 1 MB bound holds about a thousand of them, not half a million."""
    c: Counter[str] = Counter()
    limit = 1 << 20
    r = Reassembly(limit, c)
    for i in range(20_000):
        r.add(0, 2 + 2 * i, b"z")
        assert r.truesize <= limit
    assert len(r) == limit // (ONE + 1)
    assert c["TCPOFODrop"] == 20_000 - len(r)


def test_over_the_bound_drops_from_the_highest_end() -> None:
    c: Counter[str] = Counter()
    r = Reassembly(3 * (ONE + 10), c)
    r.add(0, 100, b"a" * 10)
    r.add(0, 200, b"b" * 10)
    r.add(0, 300, b"c" * 10)
    r.add(0, 50, b"d" * 10)  # lower than all: the top (300) goes
    assert [seq for seq, _ in _held(r, 0)] == [50, 100, 200]
    assert c["PruneCalled"] == 1 and c["OfoPruned"] == 1
    r.add(0, 400, b"e" * 10)  # above all: nothing below it is dropped for it
    assert [seq for seq, _ in _held(r, 0)] == [50, 100, 200]
    assert c["TCPOFODrop"] == 1


def test_partial_room_keeps_a_prefix() -> None:
    r = Reassembly(2 * ONE + 8)
    r.add(0, 10, b"abcdef")
    r.add(0, 30, b"0123456789")  # only 2 bytes of room
    assert r.size == 8 and r.truesize == r.limit
    assert r.pop_ready(10) == b"abcdef"
    assert r.pop_ready(30) == b"01"


def test_across_wrap() -> None:
    r = Reassembly(BIG)
    base = MASK - 3
    r.add(base, seq_add(base, 6), b"world")  # seq 2..7
    r.add(base, seq_add(base, 2), b"ello")  # 2**32-2 .. 2
    assert r.pop_ready(seq_add(base, 1)) is None
    assert r.pop_ready(seq_add(base, 2)) == b"elloworld"


def test_offsets_survive_many_wraps_with_data_always_queued() -> None:
    """The queue never empties while RCV.NXT travels 3 * 2**32: the offsets
    must follow it (no difference ever exceeds a window)."""
    r = Reassembly(BIG)
    nxt = MASK - 1000
    step = 1 << 29
    for _ in range(3 * 8 + 1):
        r.add(nxt, seq_add(nxt, step + 1), b"k")  # one byte beyond the hole
        r.add(nxt, seq_add(nxt, 1), b"!")
        assert r.pop_ready(seq_add(nxt, 1)) == b"!"
        nxt = seq_add(nxt, step + 1)  # the in-order path delivered up to it
        assert r.pop_ready(nxt) == b"k"
        nxt = seq_add(nxt, 1)
        r.add(nxt, seq_add(nxt, 5), b"q")  # keep something queued
        assert r.sack_blocks(nxt, 4) == ((seq_add(nxt, 5), seq_add(nxt, 6)),)
        assert r.pop_ready(nxt) is None
        r.clear()


def test_sack_blocks_latest_first_then_most_recent() -> None:
    """RFC 2018 4: the block holding the segment that triggered the ACK,
    then the most recently reported others; merged runs are one block."""
    r = Reassembly(BIG)
    base = 0xFFFFFF00  # runs across the wrap
    r.add(base, base + 100, b"a" * 50)
    r.add(base, base + 150, b"b" * 50)  # contiguous with the first: one run
    r.add(base, base + 400, b"c" * 10)
    r.add(base, base + 300, b"d" * 10)  # the latest
    m = MASK
    blocks = r.sack_blocks(base, 4)
    assert blocks == (
        ((base + 300) & m, (base + 310) & m),
        ((base + 400) & m, (base + 410) & m),
        ((base + 100) & m, (base + 200) & m),
    )
    assert r.sack_blocks(base, 2) == blocks[:2]
    assert Reassembly(10).sack_blocks(0, 4) == ()


def test_sack_blocks_beyond_the_recent_come_from_the_lowest_runs() -> None:
    r = Reassembly(6 * (ONE + 1))
    for off in (1000, 2000, 3000, 4000, 5000, 6000):
        r.add(0, off, b"x")
    assert r.sack_blocks(0, 4) == ((6000, 6001), (5000, 5001), (4000, 4001),
                                   (3000, 3001))
    n = ONE + 2
    r.add(0, 10, b"y" * n)  # 5000 and 6000 are pruned to make room
    assert r.sack_blocks(0, 4) == ((10, 10 + n), (4000, 4001), (1000, 1001),
                                   (2000, 2001))


def test_clear() -> None:
    r = Reassembly(BIG)
    r.add(0, 5, b"abc")
    r.fin_seq = 9
    r.clear()
    assert r.size == 0 and len(r) == 0 and r.fin_seq is None and r.truesize == 0


# ----------------------------------------------------------------------
# Against a simple model: a dict of held bytes, first arrival wins.


def _held(r: Reassembly, rcv_nxt: int) -> list[tuple[int, bytes]]:
    """(seq, bytes) of every run, in order (white box, for the model)."""
    base = r._offset(rcv_nxt)
    return [
        ((rcv_nxt + run.start - base) & MASK, b"".join(run.chunks)) for run in r._runs
    ]


def _model_runs(held: dict[int, int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for off in sorted(held):
        if runs and runs[-1][1] == off:
            runs[-1] = (runs[-1][0], off + 1)
        else:
            runs.append((off, off + 1))
    return runs


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 300), st.integers(1, 40)),
        st.tuples(st.just("deliver"), st.integers(1, 60), st.just(0)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, MASK))
def test_matches_model_without_bound(
    steps: list[tuple[str, int, int]], base: int
) -> None:
    stream = bytes((i * 7 + 3) % 251 for i in range(2000))
    r = Reassembly(BIG)
    held: dict[int, int] = {}  # offset from `base` -> byte
    nxt = 0  # RCV.NXT as an offset
    latest: int | None = None
    for op, a, n in steps:
        rcv_nxt = seq_add(base, nxt)
        if op == "add":
            off = nxt + a
            r.add(rcv_nxt, seq_add(base, off), stream[off : off + n])
            for k in range(off, off + n):
                held.setdefault(k, stream[k])
            latest = off
        else:  # the in-order path delivers `a` bytes, then the queue continues
            nxt += a
            got = r.pop_ready(seq_add(base, nxt)) or b""
            for k in [k for k in held if k < nxt]:
                del held[k]
            want = bytearray()
            while nxt in held:
                want.append(held.pop(nxt))
                nxt += 1
            assert got == bytes(want)
        rcv_nxt = seq_add(base, nxt)
        runs = _model_runs(held)
        assert len(r) == len(runs) and r.size == len(held)
        assert [(seq_diff(s, base), data) for s, data in _held(r, rcv_nxt)] == [
            (s, stream[s:e]) for s, e in runs
        ]
        chunks = sum(len(run.chunks) for run in r._runs)
        assert r.truesize == r.size + len(runs) * RUN_COST + chunks * CHUNK_COST
        blocks = r.sack_blocks(rcv_nxt, 4)
        want_blocks = {(seq_add(base, s), seq_add(base, e)) for s, e in runs}
        assert set(blocks) <= want_blocks and len(blocks) == min(4, len(runs))
        if latest is not None and latest in held:
            s, e = blocks[0]
            assert seq_diff(s, base) <= latest < seq_diff(e, base)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, MASK), st.integers(0, 6 * (RUN_COST + CHUNK_COST)))
def test_bounded_queue_holds_only_true_bytes(
    steps: list[tuple[str, int, int]], base: int, limit: int
) -> None:
    stream = bytes((i * 11 + 5) % 253 for i in range(2000))
    r = Reassembly(limit)
    nxt = 0
    for op, a, n in steps:
        rcv_nxt = seq_add(base, nxt)
        if op == "add":
            off = nxt + a
            r.add(rcv_nxt, seq_add(base, off), stream[off : off + n])
        else:
            nxt += a
            got = r.pop_ready(seq_add(base, nxt)) or b""
            assert got == stream[nxt : nxt + len(got)]
            nxt += len(got)
        assert 0 <= r.size <= r.truesize <= limit
        for seq, data in _held(r, seq_add(base, nxt)):
            off = seq_diff(seq, base)
            assert off > nxt and data == stream[off : off + len(data)]
