"""`ustack ss` for BBR and pacing: what Linux's `ss -i` prints for them."""

from __future__ import annotations

from tests.tcb_harness import Pair
from ustack.config import Settings
from ustack.observe.introspect import connection_row, info_text


def transfer(cc: str) -> Pair:
    p = Pair(Settings(congestion=cc), delay=0.01)
    a, _ = p.establish()
    a.send(b"x" * 200_000)
    p.run()
    return p


def test_bbr_row_and_text() -> None:
    p = transfer("bbr")
    row = connection_row(p.a, p.now)
    bbr = row["bbr"]
    assert bbr["mode"] in ("startup", "drain", "probe_bw")
    assert bbr["bw"] > 0 and 0.02 <= bbr["mrtt"] < 0.03
    assert row["pacing_rate"] > 0 and row["delivery_rate"] > 0
    assert row["app_limited"] is True  # all sent: the application is the limit
    text = info_text(row)
    assert "bbr:(bw:" in text and ",mrtt:2" in text and "pacing_gain:" in text
    assert "cwnd_gain:" in text and "pacing_rate " in text
    assert "delivery_rate " in text and "app_limited" in text


def test_cubic_row_has_no_bbr_or_pacing() -> None:
    p = transfer("cubic")
    row = connection_row(p.a, p.now)
    assert row["bbr"] is None and row["pacing_rate"] is None
    assert row["delivery_rate"] is None
    text = info_text(row)
    assert "bbr:" not in text and "pacing_rate" not in text
