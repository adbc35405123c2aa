"""tools/bench_stack_cpu.py's in-process TCB loop and its report table."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_stack_cpu import _table, tcb_loop


def test_the_tcb_loop_runs_request_response_exchanges() -> None:
    # It raises if a byte goes missing, a segment is left over or the
    # connection leaves ESTABLISHED.
    assert tcb_loop(50) > 0


def test_table_gives_medians_and_ratios_to_the_first_root(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _table("t", {Path("/a"): [10.0, 30.0, 20.0], Path("/b"): [5.0, 15.0, 10.0]})
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["/a", "20.0", "(1.00x)"]
    assert out[2].split()[:3] == ["/b", "10.0", "(0.50x)"]
