"""ISNs, timestamp offsets and the per-boot secret (ustack/tcp/isn.py)."""

from __future__ import annotations

import stat
from pathlib import Path

from ustack.tcp.isn import IsnGenerator, boot_secret, system_clock

A, B, C = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])


def test_secret_is_shared_by_every_process_of_a_boot(tmp_path: Path) -> None:
    path = tmp_path / "run" / "secret"
    first = boot_secret(path)
    assert len(first) == 16 and boot_secret(path) == first  # a "restart"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"\1" * 32)  # another secret (another boot, say)
    assert boot_secret(path) != first


def test_timestamp_offset_depends_on_the_address_pair_only() -> None:
    isn = IsnGenerator(b"k" * 16)
    off = isn.ts_offset(A, B, 0.0)
    assert isn.ts_offset(A, B, 0.0) == off
    assert isn.ts_offset(A, C, 0.0) != off
    assert IsnGenerator(b"j" * 16).ts_offset(A, B, 0.0) != off
    assert isn.ts_offset(A, B, 2.5) == (off + 2500) & 0xFFFFFFFF


def test_isn_advances_with_the_clock_for_one_tuple() -> None:
    isn = IsnGenerator(b"k" * 16)
    assert system_clock() > 0
    t = 100.0
    assert (isn(t + 1.0, A, 1, B, 2) - isn(t, A, 1, B, 2)) & 0xFFFFFFFF == 250_000
    assert isn(t, A, 1, B, 2) != isn(t, A, 1, B, 3)
