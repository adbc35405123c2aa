"""Statistics and formatting for tools/bench.py (no I/O, no timing: unit-tested).

A *sample* is one run's figure for (scenario, metric, MTU, server). Rows put
the three servers side by side: median, spread and the ratios of the medians
ustack/kernel and ustack/rawtun.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SERVERS = ("ustack", "kernel", "rawtun")


@dataclass
class Summary:
    n: int
    median: float
    min: float
    max: float

    @property
    def spread_pct(self) -> float:
        """Half the range relative to the median, in percent (0 for one run)."""
        if self.n < 2 or self.median == 0:
            return 0.0
        return (self.max - self.min) / 2 / abs(self.median) * 100

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "spread_pct": self.spread_pct,
        }


def summarize(samples: Sequence[float]) -> Summary | None:
    if not samples:
        return None
    return Summary(len(samples), statistics.median(samples), min(samples), max(samples))


@dataclass
class Cell:
    """One server's figure in a row: a summary, a failure, or not applicable."""

    summary: Summary | None = None
    errors: list[str] = field(default_factory=list)
    applicable: bool = True

    def text(self) -> str:
        if not self.applicable:
            return "n/a"
        if self.summary is None:
            return "FAILED" if self.errors else "-"
        s = self.summary
        txt = fmt_num(s.median)
        if s.n > 1:
            txt += f" ±{s.spread_pct:.0f}%"
        if self.errors:
            txt += f" ({len(self.errors)} failed)"
        return txt


@dataclass
class Row:
    scenario: str
    metric: str
    mtu: int
    cells: dict[str, Cell]

    def ratio(self, base: str) -> float | None:
        u, b = self.cells.get("ustack"), self.cells.get(base)
        if not (u and b and u.summary and b.summary) or b.summary.median == 0:
            return None
        return u.summary.median / b.summary.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "mtu": self.mtu,
            "servers": {
                name: {
                    "applicable": c.applicable,
                    "summary": c.summary.as_dict() if c.summary else None,
                    "errors": c.errors,
                }
                for name, c in self.cells.items()
            },
            "ustack/kernel": self.ratio("kernel"),
            "ustack/rawtun": self.ratio("rawtun"),
        }


def fmt_num(x: float) -> str:
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"


def build_rows(records: Iterable[dict[str, Any]]) -> list[Row]:
    """Group sample records into rows, in first-seen order.

    A record: {"scenario", "metric", "mtu", "server", "value" (float or None),
    "error" (str or None), "applicable" (bool, default True)}.
    """
    rows: dict[tuple[str, str, int], Row] = {}
    samples: dict[tuple[str, str, int, str], list[float]] = {}
    for rec in records:
        key = (rec["scenario"], rec["metric"], int(rec["mtu"]))
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(*key, {s: Cell() for s in SERVERS})
        cell = row.cells.setdefault(rec["server"], Cell())
        if not rec.get("applicable", True):
            cell.applicable = False
            continue
        if rec.get("error"):
            cell.errors.append(str(rec["error"]))
        if rec.get("value") is not None:
            samples.setdefault((*key, rec["server"]), []).append(float(rec["value"]))
    for (scn, metric, mtu, server), vals in samples.items():
        rows[(scn, metric, mtu)].cells[server].summary = summarize(vals)
    return list(rows.values())


HEADER = ("scenario", "MTU", "figure", *SERVERS, "ustack/kernel", "ustack/rawtun")


def table_cells(rows: Sequence[Row]) -> list[list[str]]:
    return [
        [
            r.scenario,
            str(r.mtu),
            r.metric,
            *(r.cells[s].text() if s in r.cells else "-" for s in SERVERS),
            fmt_ratio(r.ratio("kernel")),
            fmt_ratio(r.ratio("rawtun")),
        ]
        for r in rows
    ]


def plain_table(rows: Sequence[Row]) -> str:
    body = table_cells(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body
    ]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(b) + " |" for b in table_cells(rows)]
    return "\n".join(lines)


def rich_table(rows: Sequence[Row]) -> Any:
    from rich.table import Table

    t = Table(title="ustack benchmarks (median ±half-range over runs)")
    for i, h in enumerate(HEADER):
        t.add_column(h, justify="left" if i < 3 else "right")
    for b in table_cells(rows):
        t.add_row(*b)
    return t
