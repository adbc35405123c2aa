"""tools/bench_lossy.py: options, medians, ratios and tables (no network)."""

from __future__ import annotations

import pytest
from bench_lossy import (
    PATHS,
    SENDERS,
    Params,
    Sample,
    _content_length,
    _rtt_stats,
    _split_response,
    detail_table,
    markdown,
    parse_args,
    pattern,
    share_table,
    summary_table,
)


def test_defaults_quick_and_selection() -> None:
    p, _ = parse_args([])
    assert (p.seeds, p.mb, p.paths, p.senders) == (3, 5.0, PATHS, SENDERS)
    q, _ = parse_args(["--quick"])
    assert q.seeds == 1 and q.mb < p.mb and q.timeout < p.timeout
    r, _ = parse_args(
        [
            "--paths",
            "mixed",
            "--senders",
            "ustack,cubic",
            "--seeds",
            "5",
            "--ustack-args",
            "--set congestion=reno --offload",
        ]
    )
    assert list(r.paths) == ["mixed"] and r.senders == ("ustack", "cubic")
    assert r.seeds == 5
    assert r.ustack_args == ("--set", "congestion=reno", "--offload")


def test_extra_path_alone_or_added() -> None:
    p, _ = parse_args(["--path", "two=loss=2%,delay=1ms", "--path", "loss1=loss=3%"])
    assert p.paths == {"two": "loss=2%,delay=1ms", "loss1": "loss=3%"}
    p, _ = parse_args(["--paths", "lfp", "--path", "two=loss=2%"])
    assert p.paths == {"lfp": PATHS["lfp"], "two": "loss=2%"}


def test_bad_options_are_refused() -> None:
    for bad in (["--paths", "nowhere"], ["--senders", "vegas"], ["--path", "x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def samples() -> list[Sample]:
    out = []
    for seed, (u, reno, cubic) in enumerate(
        [(4.0, 2.0, 1.0), (6.0, 3.0, 2.0), (5.0, 1.0, 4.0)], start=1
    ):
        out += [
            Sample(
                "loss1", seed, "ustack", u, rtt_ms=20.0 + seed, rtos=seed, retrans=10
            ),
            Sample("loss1", seed, "reno", reno, rtt_ms=21.0, rtos=0, retrans=5),
            Sample("loss1", seed, "cubic", cubic, rtt_ms=22.0, rtos=0, retrans=6),
        ]
    out.append(Sample("loss1", 4, "cubic", None, error="TimeoutError: late"))
    return out


def test_summary_has_medians_ratios_and_rtos() -> None:
    p = Params(paths={"loss1": PATHS["loss1"]}, senders=("ustack", "reno", "cubic"))
    header, row = summary_table(samples(), p)
    assert header == [
        "path",
        "ustack",
        "Linux reno",
        "Linux cubic",
        "ustack/cubic",
        "ustack/reno",
        "ustack RTOs per run",
    ]
    assert row[0] == "loss1: loss=1%,delay=10ms"
    assert row[1:4] == ["5.00 s", "2.00 s", "2.00 s (1/4 failed)"]
    assert row[4:] == ["2.50x", "2.50x", "1 / 2 / 3"]


def test_detail_has_goodput_rtt_and_counts() -> None:
    p = Params(
        mb=5, paths={"loss1": PATHS["loss1"]}, senders=("ustack", "reno", "cubic")
    )
    rows = detail_table(samples(), p)
    assert rows[1] == [
        "loss1", "ustack", "5.00", "8.0", "22.0", "-", "-", "-", "-", "1 / 2 / 3",
        "10",
    ]
    assert rows[3][1] == "Linux cubic" and rows[3][9] == "0 / 0 / 0"
    text = markdown(rows)
    assert text.count("\n") == len(rows) and text.startswith("| path | sender |")


def test_path_base_is_the_fastest_idle_ping_of_any_run() -> None:
    """RTT/base: each sender's median RTT over the path's base RTT, the
    fastest idle-path ping of every run on the path, whichever sender's."""
    p = Params(paths={"bottleneck": PATHS["bottleneck"]}, senders=("ustack-bbr", "bbr"))
    a = Sample("bottleneck", 1, "ustack-bbr", 8.0, rtt_ms=60.0, ping_min_ms=41.0)
    b = Sample("bottleneck", 1, "bbr", 8.0, rtt_ms=100.0, ping_min_ms=40.0,
               flow_min_rtt_ms=39.0)  # a flow's own minimum is not the base
    header, *rows = detail_table([a, b], p)
    base, over = header.index("path base"), header.index("RTT/base")
    assert [r[base] for r in rows] == ["40.0", "40.0"]
    assert [r[over] for r in rows] == ["1.50x", "2.50x"]


def test_http_answer_parsing() -> None:
    parts = _split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert parts is not None
    head, body = parts
    assert _content_length(head) == 3 and body == b"abc"
    assert _split_response(b"HTTP/1.1 200 OK\r\n") is None
    assert pattern(253)[250:] == bytes([250, 0, 1])


def test_bbr_ratio_rtt_percentiles_and_two_flow_shares() -> None:
    out = []
    for seed in (1, 2, 3):
        u = Sample("bottleneck", seed, "ustack-bbr", 2.0 + seed)
        _rtt_stats(u, [40.0 + i for i in range(10)])
        out += [u, Sample("bottleneck", seed, "bbr", 2.0)]
        out.append(Sample("bottleneck", seed, "ustack-bbr-x2", 8.0,
                          shares=[5.0, 10.0 / seed]))
    p = Params(mb=5, paths={"bottleneck": PATHS["bottleneck"]},
               senders=("ustack-bbr", "bbr", "ustack-bbr-x2"))
    header, row = summary_table(out, p)
    assert header == ["path", "ustack bbr", "Linux bbr", "ustack bbr/bbr"]
    assert row[1:] == ["4.00 s", "2.00 s", "2.00x"]
    detail = detail_table(out, p)
    assert detail[1][1] == "ustack bbr"
    assert detail[1][4:7] == ["44.5", "49.0", "40.0"]  # median, p90, min
    assert detail[3][1] == "2 x ustack bbr" and detail[3][3] == "10.0"
    shares = share_table(out)
    assert shares[1] == ["1", "5.0", "10.0", "0.50"]
    assert shares[3][3] == "0.67"


def test_path_modes_side_by_side() -> None:
    """--path-modes process,inline: each path shows once per mode, the
    inline one as PATH/inline, each with its own base RTT."""
    p, _ = parse_args([])
    assert p.path_modes == ("process",)
    p, _ = parse_args(["--paths", "bottleneck", "--senders", "ustack-bbr,bbr",
                       "--path-modes", "process,inline"])
    assert p.path_modes == ("process", "inline")
    with pytest.raises(SystemExit):
        parse_args(["--path-modes", "thread"])
    out = [
        Sample("bottleneck", 1, "ustack-bbr", 8.0, rtt_ms=50.0, ping_min_ms=40.0),
        Sample("bottleneck", 1, "bbr", 8.0, rtt_ms=60.0, ping_min_ms=41.0),
        Sample("bottleneck/inline", 1, "ustack-bbr", 9.0, rtt_ms=90.0,
               ping_min_ms=45.0),
        Sample("bottleneck/inline", 1, "bbr", 8.5, rtt_ms=60.0, ping_min_ms=46.0),
    ]
    header, *rows = summary_table(out, p)
    assert [r[0].split(":")[0] for r in rows] == ["bottleneck", "bottleneck/inline"]
    assert rows[1][1:] == ["9.00 s", "8.50 s", "1.06x"]
    header, *rows = detail_table(out, p)
    over = header.index("RTT/base")
    assert [(r[0], r[over]) for r in rows] == [
        ("bottleneck", "1.25x"),
        ("bottleneck", "1.50x"),
        ("bottleneck/inline", "2.00x"),
        ("bottleneck/inline", "1.33x"),
    ]
