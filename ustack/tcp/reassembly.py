"""Out-of-order segment queue, bounded in memory (RFC 9293 3.10.7.4, step 7).

Segments that arrive beyond RCV.NXT wait here until the gap before them is
filled. Overlaps keep the bytes that arrived first.

Cost stays flat however many segments are queued: positions are offsets in
an unbounded integer space (they never wrap), runs of contiguous bytes sit
in a sorted block index (ustack/tcp/runindex.py: O(log n) insert), adjacent
and overlapping data coalesces into one run, the first run pops in O(1) and
SACK blocks come from the few most recent runs, not from a walk.

A segment that brings bytes the queue holds already gets the first such
part back from `add` (the D-SACK block of RFC 2883 4); `first_held` finds
the same for in-order data that covers queued bytes.

The bound counts what the queue really costs, like Linux's skb truesize:
each run and each chunk is charged its object overhead besides its bytes, so
1-byte segments cannot hold a million entries in a 1 MB bound. Over the
bound, data is dropped from the highest sequence end first, never below the
arriving segment (Linux tcp_prune_ofo_queue).
"""

from __future__ import annotations

from collections import Counter, deque

from ustack.counters import Counters
from ustack.tcp.runindex import Run, RunIndex
from ustack.tcp.seq import MASK, seq_diff

# Bytes charged per run and per chunk besides the data, measured with
# sys.getsizeof on CPython 3.11: a run is a slotted object, its deque (760 B)
# and two ints; a chunk is a bytearray header and its deque slot.
RUN_COST = 896
CHUNK_COST = 64
# RFC 2018 4: blocks remembered to repeat in later ACKs (at most 4 fit).
_RECENT = 4


class Reassembly:
    __slots__ = (
        "_runs",
        "_origin_seq",
        "_origin_abs",
        "_recent",
        "counters",
        "limit",
        "size",
        "truesize",
        "fin_seq",
        "last_seq",
    )

    def __init__(self, limit: int, counters: Counter[str] | None = None) -> None:
        self._runs = RunIndex()
        # Offsets: abs(seq) = _origin_abs + seq_diff(seq, _origin_seq).
        self._origin_seq = 0
        self._origin_abs = 0
        self._recent: list[int] = []  # offsets of the latest segments, newest first
        self.counters: Counter[str] = counters if counters is not None else Counters()
        self.limit = limit  # bound on truesize
        self.size = 0  # data bytes held
        self.truesize = 0  # data bytes plus per-run and per-chunk overhead
        self.fin_seq: int | None = None  # a FIN seen beyond RCV.NXT
        self.last_seq: int | None = None  # start of the latest segment queued

    def __len__(self) -> int:
        """Runs of contiguous data held."""
        return len(self._runs)

    def _offset(self, rcv_nxt: int) -> int:
        """The offset of RCV.NXT; the origin follows it so no difference
        taken from it ever exceeds a window."""
        if not self._runs:
            self._origin_abs = 0
            self._recent.clear()
        else:
            self._origin_abs += seq_diff(rcv_nxt, self._origin_seq)
        self._origin_seq = rcv_nxt
        return self._origin_abs

    def _charge(self, runs: int, chunks: int, nbytes: int) -> None:
        self.size += nbytes
        self.truesize += runs * RUN_COST + chunks * CHUNK_COST + nbytes

    # ------------------------------------------------------------------

    def add(self, rcv_nxt: int, seq: int, data: bytes) -> tuple[int, int] | None:
        """Queue `data` starting at `seq` (> rcv_nxt), within the bound.
        Returns the first part of it that was held already (the D-SACK block
        RFC 2883 4 reports), as sequence numbers, or None."""
        base = self._offset(rcv_nxt)
        start = base + seq_diff(seq, rcv_nxt)
        if start < base:
            data = data[base - start :]
            start = base
        if not data:
            return None
        self.last_seq = seq
        end = start + len(data)
        held = self._runs.floor(start)
        if held is not None and held.end >= end:
            self.counters["TCPOFOQueue"] += 1
            self.counters["TCPOFOMerge"] += 1  # all held already: costs nothing
            self._note_recent(held, start)
            return self._seqs(rcv_nxt, base, start, end)
        dup = self._first_held(held, start, end)
        if dup is not None:
            dup = self._seqs(rcv_nxt, base, *dup)
        self._store(start, data)
        return dup

    def first_held(
        self, rcv_nxt: int, seq: int, end_seq: int
    ) -> tuple[int, int] | None:
        """The lowest part of [seq, end_seq) the queue holds, as sequence
        numbers: data in order that duplicates queued data (RFC 2883 4.2;
        Linux tcp_ofo_queue's tcp_dsack_extend)."""
        if not self._runs:
            return None
        base = self._offset(rcv_nxt)
        start = base + seq_diff(seq, rcv_nxt)
        end = start + seq_diff(end_seq, seq)
        dup = self._first_held(self._runs.floor(start), start, end)
        return None if dup is None else self._seqs(rcv_nxt, base, *dup)

    def _first_held(
        self, held: Run | None, start: int, end: int
    ) -> tuple[int, int] | None:
        """Offsets of the lowest held part of [start, end); `held` is the
        run floor(start)."""
        if held is None or held.end <= start:
            held = self._runs.after(start)
            if held is None or held.start >= end:
                return None
        return max(held.start, start), min(held.end, end)

    @staticmethod
    def _seqs(rcv_nxt: int, base: int, lo: int, hi: int) -> tuple[int, int]:
        return (rcv_nxt + lo - base) & MASK, (rcv_nxt + hi - base) & MASK

    def _store(self, start: int, data: bytes) -> None:
        """Insert new bytes at offset `start`, pruning to stay within the bound."""
        end = start + len(data)
        overhead = self._overhead(start, end)
        if self.truesize + overhead + len(data) > self.limit:
            self._prune(start, overhead + len(data))
            overhead = self._overhead(start, end)
            room = self.limit - self.truesize - overhead
            if 0 < room < len(data):  # cut short, it may no longer reach a run
                overhead = self._overhead(start, start + room)
                room = self.limit - self.truesize - overhead
            if room <= 0:
                self.counters["TCPOFODrop"] += 1
                return
            if len(data) > room:
                self.counters["TCPOFODrop"] += 1
                data = data[:room]
        self.counters["TCPOFOQueue"] += 1  # as Linux: once past the bound check
        self._note_recent(self._insert(start, data), start)

    def _note_recent(self, run: Run, start: int) -> None:
        """The latest segment's run goes first in the next SACK option; the
        others it absorbed need no entry of their own (RFC 2018 4)."""
        recent = [a for a in self._recent if not run.start <= a < run.end]
        recent.insert(0, start)
        self._recent = recent[:_RECENT]

    def _overhead(self, start: int, end: int) -> int:
        """What storing [start, end) costs besides its bytes: nothing when it
        extends a run, a chunk when it grows one leftwards, else a run."""
        prev = self._runs.floor(start)
        if prev is not None and prev.end >= start:
            return 0
        nxt = self._runs.after(start)
        if nxt is not None and nxt.start <= end:
            return CHUNK_COST
        return RUN_COST + CHUNK_COST

    def _insert(self, start: int, data: bytes) -> Run:
        """Store the bytes of [start, start+len) not yet held; return the run
        that now holds `start`."""
        runs = self._runs
        end = start + len(data)
        run = runs.floor(start)
        if run is not None and run.end >= start:
            if run.end >= end:
                return run  # nothing new
            cursor = run.end
        else:
            run = None
            cursor = start
        nxt = runs.after(start)
        while nxt is not None and nxt.start <= end:
            gap = data[cursor - start : nxt.start - start]
            if run is None:  # new bytes just left of `nxt`: they join it
                runs.move_start(nxt, start)
                if gap:
                    nxt.chunks.appendleft(bytearray(gap))
                    self._charge(0, 1, len(gap))
                run = nxt
            else:  # fill the gap, then `nxt` joins `run`
                if gap:
                    run.chunks[-1] += gap
                    self._charge(0, 0, len(gap))
                runs.remove(nxt)
                self._charge(-1, 0, 0)
                # Move the smaller deque's chunks: O(n log n) over all merges.
                if len(run.chunks) >= len(nxt.chunks):
                    run.chunks.extend(nxt.chunks)
                else:
                    nxt.chunks.extendleft(reversed(run.chunks))
                    run.chunks = nxt.chunks
                run.end = nxt.end
            cursor = run.end
            if cursor >= end:
                return run
            nxt = runs.after(start)
        piece = data[cursor - start :]
        if run is None:
            run = Run(start, end, deque((bytearray(piece),)))
            runs.insert(run)
            self._charge(1, 1, len(piece))
        else:  # coalesce onto the tail chunk, as Linux's tcp_try_coalesce
            run.chunks[-1] += piece
            run.end = end
            self._charge(0, 0, len(piece))
        return run

    def _prune(self, start: int, need: int) -> None:
        """Drop chunks from the highest sequence end until `need` more bytes
        fit, but none at or below `start` (Linux tcp_prune_ofo_queue)."""
        self.counters["PruneCalled"] += 1
        runs = self._runs
        dropped = False
        while self.truesize + need > self.limit:
            top = runs.last()
            if top is None or top.start <= start:
                break
            chunk = top.chunks.pop()
            top.end -= len(chunk)
            self._charge(0, -1, -len(chunk))
            if not top.chunks:
                runs.remove(top)
                self._charge(-1, 0, 0)
            dropped = True
        if dropped:
            self.counters["OfoPruned"] += 1

    # ------------------------------------------------------------------

    def pop_ready(self, rcv_nxt: int) -> bytes | None:
        """Return the bytes that now continue at `rcv_nxt`, if any."""
        runs = self._runs
        first = runs.first()
        if first is None:
            return None
        base = self._offset(rcv_nxt)
        out: list[bytes] = []
        while first is not None and first.start <= base:
            runs.remove(first)
            self._charge(-1, -len(first.chunks), first.start - first.end)
            if first.end > base:
                chunks = first.chunks
                data = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)
                out.append(data[base - first.start :])
                base = first.end
            first = runs.first()
        if not runs:
            self._recent.clear()
        return b"".join(out) if out else None

    def sack_blocks(self, rcv_nxt: int, limit: int) -> tuple[tuple[int, int], ...]:
        """Up to `limit` SACK blocks (RFC 2018 4): the run holding the latest
        segment first, then the runs of the most recent earlier segments,
        then (if room is left) the lowest runs."""
        if not self._runs:
            return ()
        base = self._offset(rcv_nxt)
        chosen: list[Run] = []
        for anchor in self._recent:
            run = self._runs.floor(anchor)
            if run is not None and anchor < run.end and run not in chosen:
                chosen.append(run)  # still held: not delivered, not pruned
                if len(chosen) >= limit:
                    break
        if len(chosen) < limit:
            for run in self._runs:
                if run not in chosen:
                    chosen.append(run)
                    if len(chosen) >= limit:
                        break
        origin = rcv_nxt - base
        return tuple(
            ((origin + r.start) & MASK, (origin + r.end) & MASK) for r in chosen
        )

    def clear(self) -> None:
        self._runs.clear()
        self._recent.clear()
        self.size = 0
        self.truesize = 0
        self.fin_seq = None
        self.last_seq = None
