"""tools/bench_report.py: statistics, ratios, table and JSON shapes (no timing)."""

from __future__ import annotations

import json

import pytest
from bench_report import (
    HEADER,
    Cell,
    build_rows,
    fmt_num,
    fmt_ratio,
    markdown_table,
    plain_table,
    summarize,
)


def rec(server: str, value: float | None, **kw: object) -> dict[str, object]:
    return {
        "scenario": "bulk-in",
        "metric": "MB/s",
        "mtu": 1500,
        "server": server,
        "value": value,
        **kw,
    }


def test_summarize_median_and_spread() -> None:
    s = summarize([10.0, 30.0, 20.0])
    assert s is not None
    assert (s.n, s.median, s.min, s.max) == (3, 20.0, 10.0, 30.0)
    assert s.spread_pct == pytest.approx(50.0)  # half-range 10 over median 20
    assert summarize([4.0, 6.0]).median == 5.0  # type: ignore[union-attr]
    assert summarize([7.0]).spread_pct == 0.0  # type: ignore[union-attr]
    assert summarize([]) is None


def test_rows_group_servers_and_ratios() -> None:
    records = [
        rec("ustack", 100.0),
        rec("kernel", 400.0),
        rec("rawtun", 200.0),
        rec("ustack", 120.0),
        rec("kernel", 400.0),
        rec("rawtun", 200.0),
        rec("ustack", 110.0),
        rec("kernel", 400.0),
        rec("rawtun", 200.0),
    ]
    (row,) = build_rows(records)
    assert row.cells["ustack"].summary.median == 110.0  # type: ignore[union-attr]
    assert row.ratio("kernel") == pytest.approx(0.275)
    assert row.ratio("rawtun") == pytest.approx(0.55)
    d = row.as_dict()
    json.dumps(d)  # serialisable
    assert d["servers"]["kernel"]["summary"]["n"] == 3
    assert d["ustack/rawtun"] == pytest.approx(0.55)


def test_failures_and_not_applicable() -> None:
    records = [
        rec("ustack", None, error="TimeoutError: timed out"),
        rec("kernel", 5.0),
        rec("rawtun", None, applicable=False),
    ]
    (row,) = build_rows(records)
    assert row.cells["ustack"].text() == "FAILED"
    assert row.cells["rawtun"].text() == "n/a"
    assert row.ratio("kernel") is None
    partly = Cell(summarize([1.0, 3.0]), errors=["x"])
    assert partly.text() == "2.00 ±50% (1 failed)"


def test_tables_have_one_line_per_row_and_all_columns() -> None:
    records = [
        rec("ustack", 1234.5),
        rec("kernel", 2469.0),
        rec("rawtun", 100.0),
        {**rec("ustack", 50.0), "scenario": "rr", "metric": "p50 µs"},
    ]
    rows = build_rows(records)
    plain = plain_table(rows).splitlines()
    assert len(plain) == 2 + len(rows)
    assert plain[0].split() == list(HEADER)
    assert "1,234" in plain[2] or "1,235" in plain[2]
    assert "0.50x" in plain[2] and "12.35x" in plain[2]
    md = markdown_table(rows).splitlines()
    assert md[0].count("|") == len(HEADER) + 1
    assert all(line.count("|") == len(HEADER) + 1 for line in md)
    assert "| rr | 1500 | p50 µs | 50.0 | - | - | - | - |" in md


def test_number_formats() -> None:
    assert fmt_num(123456.7) == "123,457"
    assert fmt_num(456.7) == "457"
    assert fmt_num(45.67) == "45.7"
    assert fmt_num(4.567) == "4.57"
    assert fmt_ratio(None) == "-"
    assert fmt_ratio(0.5) == "0.50x"
    assert fmt_ratio(0.012) == "0.012x"
