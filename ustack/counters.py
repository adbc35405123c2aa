"""The stack's counters: a `collections.Counter` whose update is a C call.

`Counter` defines `__delitem__` in Python, so CPython routes every item
assignment of a Counter, `counters[name] += 1` too, through a Python-level
slot lookup (one slot serves both set and delete): about twice the cost of a
plain dict's. The per-packet paths bump several counters per segment, so the
stack's shared counters put dict's own `__delitem__` back, which restores
the C slot. Deleting a missing name then raises KeyError like a dict; nothing
deletes counters.
"""

from __future__ import annotations

from collections import Counter


class Counters(Counter[str]):
    """Counts by name (nstat's names); missing names read as 0."""

    __slots__ = ()
    __delitem__ = dict.__delitem__  # type: ignore[assignment]
