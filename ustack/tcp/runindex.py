"""A sorted index of disjoint byte runs, keyed by their start offset.

Blocks of at most 2 * LOAD runs, each block sorted, plus the first start of
every block: a lookup bisects the block starts, then one block, so insert,
remove and neighbour lookups cost O(log n + LOAD) however many runs are held
(a flat list would memmove the whole tail on every insert).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator
from operator import attrgetter

_LOAD = 256
_start = attrgetter("start")


class Run:
    """Bytes [start, end) held as chunks; chunks are kept as they arrived
    (a deque, so runs merge by moving the smaller's chunks)."""

    __slots__ = ("start", "end", "chunks")

    def __init__(self, start: int, end: int, chunks: deque[bytearray]) -> None:
        self.start = start
        self.end = end
        self.chunks = chunks


class RunIndex:
    __slots__ = ("_blocks", "_firsts", "_len")

    def __init__(self) -> None:
        self._blocks: list[list[Run]] = []
        self._firsts: list[int] = []  # _blocks[i][0].start
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Run]:
        for block in self._blocks:
            yield from block

    def first(self) -> Run | None:
        return self._blocks[0][0] if self._blocks else None

    def last(self) -> Run | None:
        return self._blocks[-1][-1] if self._blocks else None

    def floor(self, pos: int) -> Run | None:
        """The run with the greatest start <= pos."""
        bi = bisect_right(self._firsts, pos) - 1
        if bi < 0:
            return None
        block = self._blocks[bi]
        return block[bisect_right(block, pos, key=_start) - 1]

    def after(self, pos: int) -> Run | None:
        """The run with the least start > pos."""
        bi = bisect_right(self._firsts, pos) - 1
        if bi < 0:
            return self.first()
        block = self._blocks[bi]
        i = bisect_right(block, pos, key=_start)
        if i < len(block):
            return block[i]
        return self._blocks[bi + 1][0] if bi + 1 < len(self._blocks) else None

    def insert(self, run: Run) -> None:
        self._len += 1
        if not self._blocks:
            self._blocks.append([run])
            self._firsts.append(run.start)
            return
        bi = max(0, bisect_right(self._firsts, run.start) - 1)
        block = self._blocks[bi]
        i = bisect_right(block, run.start, key=_start)
        block.insert(i, run)
        if i == 0:
            self._firsts[bi] = run.start
        if len(block) > 2 * _LOAD:
            self._blocks.insert(bi + 1, block[_LOAD:])
            self._firsts.insert(bi + 1, block[_LOAD].start)
            del block[_LOAD:]

    def remove(self, run: Run) -> None:
        bi = bisect_right(self._firsts, run.start) - 1
        block = self._blocks[bi]
        i = bisect_left(block, run.start, key=_start)
        assert block[i] is run
        del block[i]
        self._len -= 1
        if not block:
            del self._blocks[bi]
            del self._firsts[bi]
        elif i == 0:
            self._firsts[bi] = block[0].start

    def move_start(self, run: Run, start: int) -> None:
        """Lower `run.start` to `start`, which must not pass its predecessor."""
        bi = bisect_right(self._firsts, run.start) - 1
        if self._blocks[bi][0] is run:
            self._firsts[bi] = start
        run.start = start

    def clear(self) -> None:
        self._blocks.clear()
        self._firsts.clear()
        self._len = 0
