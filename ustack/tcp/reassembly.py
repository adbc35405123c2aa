"""Out-of-order segment queue, bounded in bytes (RFC 9293 3.10.7.4, step 7).

Segments that arrive beyond RCV.NXT wait here until the gap before them is
filled. Overlaps keep the bytes that arrived first.
"""

from __future__ import annotations

from ustack.tcp.seq import seq_add, seq_diff


class Reassembly:
    __slots__ = ("_segs", "limit", "size", "fin_seq", "last_seq")

    def __init__(self, limit: int) -> None:
        self._segs: list[tuple[int, bytes]] = []  # (seq, data), ordered, disjoint
        self.limit = limit
        self.size = 0
        self.fin_seq: int | None = None  # a FIN seen beyond RCV.NXT
        self.last_seq: int | None = None  # start of the latest segment queued

    def __len__(self) -> int:
        return len(self._segs)

    def add(self, rcv_nxt: int, seq: int, data: bytes) -> None:
        """Queue `data` starting at `seq` (> rcv_nxt); drops what exceeds the bound."""
        self.last_seq = seq
        start = seq_diff(seq, rcv_nxt)
        end = start + len(data)
        pieces: list[tuple[int, int]] = []  # new byte ranges not yet held
        cursor = start
        for s_seq, s_data in self._segs:
            s_start = seq_diff(s_seq, rcv_nxt)
            s_end = s_start + len(s_data)
            if s_end <= cursor:
                continue
            if s_start >= end:
                break
            if s_start > cursor:
                pieces.append((cursor, s_start))
            cursor = max(cursor, s_end)
        if cursor < end:
            pieces.append((cursor, end))
        for p_start, p_end in pieces:
            room = self.limit - self.size
            if room <= 0:
                break
            p_end = min(p_end, p_start + room)
            chunk = data[p_start - start : p_end - start]
            self._segs.append((seq_add(rcv_nxt, p_start), chunk))
            self.size += len(chunk)
        if pieces:
            self._segs.sort(key=lambda item: seq_diff(item[0], rcv_nxt))

    def pop_ready(self, rcv_nxt: int) -> bytes | None:
        """Return the bytes that now continue at `rcv_nxt`, if any."""
        out: list[bytes] = []
        while self._segs:
            s_seq, s_data = self._segs[0]
            offset = seq_diff(rcv_nxt, s_seq)
            if offset < 0:
                break
            self._segs.pop(0)
            self.size -= len(s_data)
            if offset < len(s_data):
                piece = s_data[offset:]
                out.append(piece)
                rcv_nxt = seq_add(rcv_nxt, len(piece))
        return b"".join(out) if out else None

    def sack_blocks(self, rcv_nxt: int, limit: int) -> tuple[tuple[int, int], ...]:
        """Up to `limit` SACK blocks (RFC 2018 4): contiguous runs of queued
        data as (left edge, right edge), the one holding the latest segment
        first, the others in sequence order."""
        runs: list[list[int]] = []
        for s_seq, s_data in self._segs:
            left = seq_diff(s_seq, rcv_nxt)
            right = left + len(s_data)
            if runs and runs[-1][1] == left:
                runs[-1][1] = right
            else:
                runs.append([left, right])
        if not runs:
            return ()
        if self.last_seq is not None:
            latest = seq_diff(self.last_seq, rcv_nxt)
            for i, (left, right) in enumerate(runs):
                if left <= latest < right:
                    runs.insert(0, runs.pop(i))
                    break
        return tuple(
            (seq_add(rcv_nxt, left), seq_add(rcv_nxt, right))
            for left, right in runs[:limit]
        )

    def clear(self) -> None:
        self._segs.clear()
        self.size = 0
        self.fin_seq = None
        self.last_seq = None
