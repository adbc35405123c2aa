"""Per-destination IP IDs for datagrams without DF (ustack/ipident.py)."""

from __future__ import annotations

from ustack.ipident import IpIdents


def test_ids_to_one_destination_step_by_a_small_random_amount() -> None:
    ids = IpIdents(key=b"k" * 16, seed=1)
    x = bytes([10, 0, 0, 1])
    seq = [ids(x) for _ in range(200)]
    steps = {(b - a) & 0xFFFF for a, b in zip(seq, seq[1:], strict=False)}
    assert steps <= set(range(1, 9)) and len(steps) > 1  # not a fixed +1


def test_traffic_to_others_does_not_show_in_one_destinations_ids() -> None:
    """What an idle scan needs: watching X's IDs reveals packets sent to Y.
    Here X's next ID is its previous one plus at most 8, however much went
    to other destinations in between."""
    ids = IpIdents(key=b"k" * 16, seed=2)
    x = bytes([10, 0, 0, 1])
    others = [bytes([10, 0, 1, i]) for i in range(200)]
    others = [o for o in others if ids.bucket(o) != ids.bucket(x)]
    last = ids(x)
    for burst in (0, 1, 50, 500):
        for i in range(burst):
            ids(others[i % len(others)])
        now = ids(x)
        assert 1 <= (now - last) & 0xFFFF <= 8, burst
        last = now


def test_destinations_start_at_unrelated_values() -> None:
    ids = IpIdents()
    firsts = {ids(bytes([10, 0, 2, i])) for i in range(64)}
    assert len(firsts) > 32
