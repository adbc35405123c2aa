"""tools/bench_sync.py's report: medians per mode and ratios against trio."""

from __future__ import annotations

from bench_sync import summarize, table


def test_summarize_takes_medians_per_mode_and_table_shows_ratios() -> None:
    samples = [
        {"run": r, "mode": m, "scenario": "bulk-in", "values": {"MB/s": v}}
        for r, vals in enumerate([(100, 50, 20), (300, 90, 40), (200, 70, 30)])
        for m, v in zip(("trio", "sync", "bridge"), vals, strict=True)
    ]
    rows = summarize(samples)
    assert rows == [
        {"scenario": "bulk-in", "metric": "MB/s", "trio": 200, "sync": 70, "bridge": 30}
    ]
    assert "| bulk-in | MB/s | 200.0 | 70.0 | 30.0 | 0.35 | 0.15 |" in table(rows)
