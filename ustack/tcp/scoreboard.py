"""The sender's SACK scoreboard (RFC 2018, used as in RFC 6675).

It remembers which bytes beyond SND.UNA the peer reported holding, so fast
recovery can resend the holes between them instead of one segment per RTT.
"""

from __future__ import annotations

from ustack.tcp.seq import seq_diff

# RFC 2018 3: a SACK option holds at most 4 blocks; we keep a few more runs.
MAX_RUNS = 16


class Scoreboard:
    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[tuple[int, int]] = []  # [left, right), ordered, disjoint

    def __bool__(self) -> bool:
        return bool(self._runs)

    def update(
        self, una: int, snd_max: int, blocks: tuple[tuple[int, int], ...]
    ) -> int:
        """Merge SACK blocks that lie within (SND.UNA, SND.MAX]; ignore others.

        Returns how many bytes the blocks newly reported (0: nothing new)."""
        before = self.sacked_bytes(una)
        top = seq_diff(snd_max, una)
        spans = [(seq_diff(lo, una), seq_diff(hi, una)) for lo, hi in self._runs]
        for left, right in blocks:
            lo, hi = seq_diff(left, una), seq_diff(right, una)
            if 0 < lo < hi <= top:
                spans.append((lo, hi))
        spans.sort()
        merged: list[list[int]] = []
        for lo, hi in spans:
            if lo <= 0:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._runs = [
            ((una + lo) & 0xFFFFFFFF, (una + hi) & 0xFFFFFFFF)
            for lo, hi in merged[:MAX_RUNS]
        ]
        return self.sacked_bytes(una) - before

    def sacked_bytes(self, una: int) -> int:
        return sum(seq_diff(right, left) for left, right in self._runs)

    def advance(self, una: int) -> None:
        """SND.UNA moved: forget what is now cumulatively acknowledged."""
        runs = []
        for left, right in self._runs:
            if seq_diff(right, una) <= 0:
                continue
            if seq_diff(left, una) < 0:
                left = una
            runs.append((left, right))
        self._runs = runs

    def next_hole(self, start: int, una: int) -> tuple[int, int] | None:
        """The first unSACKed range [seq, seq+len) at or after `start` that
        lies below some SACKed data (so it is presumed lost)."""
        cursor = max(0, seq_diff(start, una))
        for left, right in self._runs:
            lo, hi = seq_diff(left, una), seq_diff(right, una)
            if cursor < lo:
                return (una + cursor) & 0xFFFFFFFF, lo - cursor
            cursor = max(cursor, hi)
        return None

    def clear(self) -> None:
        self._runs = []
