"""The flags hands used to ss, nc, curl and tcpdump reach for; --version,
--help defaults, `--set help`; pcapng captures."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

import ustack
from ustack import cli
from ustack.cli import get as get_cmd
from ustack.cli import nc as nc_cmd
from ustack.cli.ss import parse_filter
from ustack.config import Settings, field_docs
from ustack.observe.pcap import PcapWriter, read_pcap


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ustack {ustack.__version__}"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("up", "(default: 10.203.0.1/24)"),
        ("up", "(default: echo,discard,chargen,http)"),
        ("get", "(default: 1500)"),
        ("nc", "(default: ustack0)"),
    ],
)
def test_help_shows_defaults(
    command: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([command, "--help"]) == 0
    assert shown in " ".join(capsys.readouterr().out.split())


def test_set_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--set", "help"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["setting", "default", "description"]
    rows = {line.split()[0]: line.split(None, 2) for line in out[1:]}
    defaults = Settings()
    for f in fields(Settings):
        name, default, description = rows[f.name]
        assert default == repr(getattr(defaults, f.name))
        assert len(description) > 10
    assert "TIME_WAIT lasts 2*msl" in " ".join(rows["msl"])


def test_every_setting_is_documented() -> None:
    docs = field_docs()
    assert set(docs) == {f.name for f in fields(Settings)}
    assert all(docs.values()), [k for k, v in docs.items() if not v]


@pytest.mark.parametrize(
    ("raw", "value"), [("false", False), ("0", False), ("on", True), ("yes", True)]
)
def test_bool_settings_parse_words(raw: str, value: bool) -> None:
    assert cli.build_settings([f"sack={raw}"]).sack is value


# ----------------------------------------------------------------------
# ss

ROWS = [
    {"state": "LISTEN", "local": "10.203.0.2:80", "peer": "0.0.0.0:*"},
    {"state": "ESTAB", "local": "10.203.0.2:80", "peer": "10.203.0.1:40000"},
    {"state": "TIME-WAIT", "local": "10.203.0.2:7", "peer": "10.203.0.1:40001"},
    {"state": "SYN-SENT", "local": "10.203.0.2:33000", "peer": "10.203.0.9:8000"},
]


def states(tokens: list[str], given: list[str] | None = None) -> list[str]:
    keep = parse_filter(tokens, given)
    return [row["state"] for row in ROWS if keep(row)]


def test_ss_filters() -> None:
    assert states([]) == ["LISTEN", "ESTAB", "TIME-WAIT", "SYN-SENT"]
    assert states([], ["connected"]) == ["ESTAB", "TIME-WAIT", "SYN-SENT"]
    assert states([], ["synchronized"]) == ["ESTAB", "TIME-WAIT"]
    assert states([], ["estab", "time_wait"]) == ["ESTAB", "TIME-WAIT"]
    assert states(["state", "bucket"]) == ["TIME-WAIT"]
    assert states(["state", "all"]) == [r["state"] for r in ROWS]
    assert states(["dst", "10.203.0.1"]) == ["ESTAB", "TIME-WAIT"]
    assert states(["dst", "10.203.0.0/24", "and", "dport", "=", ":8000"]) == [
        "SYN-SENT"
    ]
    assert states(["sport", "eq", ":80"]) == ["LISTEN", "ESTAB"]
    assert states(["sport", "gt", "1000"]) == ["SYN-SENT"]
    assert states(["dport", "!=", "40000", "state", "connected"]) == [
        "TIME-WAIT",
        "SYN-SENT",
    ]
    assert states(["src", ":7"]) == ["TIME-WAIT"]


def test_ss_accepts_ss_flags() -> None:
    args = cli.build_parser().parse_args(["ss", "-tanoi", "-H", "-l"])
    assert args.no_header and args.listening
    from ustack.cli.ss import build_filter

    keep = build_filter(args)
    assert [r["state"] for r in ROWS if keep(r)] == ["LISTEN"]


# ----------------------------------------------------------------------
# nc


def nc_args(*argv: str) -> Any:
    args = cli.build_parser().parse_args(["nc", *argv])
    nc_cmd.check(args)
    return args


def test_nc_targets() -> None:
    a = nc_args("10.203.0.1", "7")
    assert (a.host, a.port, a.listen) == ("10.203.0.1", 7, False)
    a = nc_args("-l", "5000")
    assert (a.host, a.port, a.listen) == ("10.203.0.2", 5000, True)
    a = nc_args("-l", "10.203.0.2", "5000")
    assert (a.host, a.port) == ("10.203.0.2", 5000)
    a = nc_args("-zv", "-w", "2", "10.203.0.1", "80")
    assert a.zero and a.verbose and a.wait == 2.0


async def test_nc_idle_timeout_gives_up(autojump_clock: Any) -> None:
    """-w: no data either way for that long ends the session (virtual time)."""
    import os

    a, b = trio.testing.memory_stream_pair()
    r, w = os.pipe()
    try:
        with open(os.devnull, "wb") as sink, trio.fail_after(30):
            start = trio.current_time()
            await b.send_all(b"x")  # activity at t=0 restarts the idle timer
            finished = await nc_cmd.nc_session(a, r, sink, idle=5)
        assert finished is False
        assert trio.current_time() - start == pytest.approx(5)
    finally:
        os.close(w)
        os.close(r)


# ----------------------------------------------------------------------
# get


def test_resolve_from_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n::1 ip6-localhost kern\n"
        "10.203.0.1  kern kern.lan  # the kernel side\n"
    )
    assert get_cmd.resolve("kern", hosts) == "10.203.0.1"
    assert get_cmd.resolve("KERN.lan", hosts) == "10.203.0.1"
    assert get_cmd.resolve("10.1.2.3", hosts) == "10.1.2.3"
    with pytest.raises(ValueError, match="not in"):
        get_cmd.resolve("other", hosts)


def test_format_rate_never_rounds_to_zero() -> None:
    assert get_cmd.format_rate(10, 0.001) == "10.0 kB/s"
    assert get_cmd.format_rate(5, 1.0) == "5 B/s"
    assert get_cmd.format_rate(250_000_000, 2.0) == "125.0 MB/s"


class Recorder:
    """An HTTP server (h11) that records requests; /old redirects to /new."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        request: Any = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        target = request.target.decode()
        self.requests.append((request.method.decode(), target, headers, body))
        if target == "/old":
            status, extra, payload = 301, [("Location", "/new")], b"moved"
        elif target == "/loop":
            status, extra, payload = 302, [("Location", "/loop")], b""
        else:
            status, extra, payload = 200, [], b"body of " + target.encode()
        out = conn.send(
            h11.Response(
                status_code=status,
                headers=[("Content-Length", str(len(payload))), *extra],
            )
        )
        if request.method != b"HEAD":
            out += conn.send(h11.Data(data=payload))
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        await stream.aclose()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    server = Recorder()

    class Fake:
        def __init__(self, port: int) -> None:
            self.port = port

        async def connect(self, addr: tuple[str, int]) -> trio.SocketStream:
            return await trio.open_tcp_stream("127.0.0.1", self.port)

    @asynccontextmanager
    async def fake_open(**kwargs: Any) -> AsyncIterator[Fake]:
        async with trio.open_nursery() as nursery:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, server.handle, [listener])
            yield Fake(listener.socket.getsockname()[1])
            nursery.cancel_scope.cancel()

    monkeypatch.setattr(ustack, "open_tun_stack", fake_open, raising=False)
    monkeypatch.setattr(ustack.cli.common, "check_free", lambda *a: None)
    return server


def test_get_redirect_without_L_says_where(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "http://10.203.0.1:8000/old"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "ustack: 301 Moved Permanently: redirects to http://10.203.0.1:8000/new "
        "(add -L to follow)"
    )


def test_get_L_follows_to_stdout(
    recorder: Recorder, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert cli.main(["get", "-L", "-s", "-o", "-", "http://10.203.0.1:8000/old"]) == 0
    out = capsysbinary.readouterr()
    assert out.out == b"body of /new" and out.err == b""  # -s: no summary
    assert [r[1] for r in recorder.requests] == ["/old", "/new"]


def test_get_L_stops_a_redirect_loop(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "-L", "http://10.203.0.1:8000/loop"]) == 1
    assert "more than 20 redirects" in capsys.readouterr().err
    assert len(recorder.requests) == 21


def test_get_I_prints_headers(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "-I", "http://10.203.0.1:8000/x"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP/1.1 200 OK\r\n") and "content-length: 10" in out
    assert recorder.requests[0][0] == "HEAD"


def test_get_X_d_H(
    recorder: Recorder, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (tmp_path / "body").write_bytes(b"file body")
    argv = ["get", "-s", "-H", "X-Test: 1", "-H", "User-Agent: me"]
    assert cli.main([*argv, "-d", "a=1", "http://10.203.0.1:8000/p"]) == 0
    assert cli.main([*argv, "-X", "put", "-d", f"@{tmp_path}/body", "http://h:1/"]) == 2
    assert (
        cli.main(
            [*argv, "-X", "PUT", "-d", f"@{tmp_path}/body", "http://10.203.0.1:8000/q"]
        )
        == 0
    )
    (m1, t1, h1, b1), (m2, t2, h2, b2) = recorder.requests
    assert (m1, t1, b1) == ("POST", "/p", b"a=1")
    assert (m2, t2, b2) == ("PUT", "/q", b"file body")
    assert (
        h1["x-test"] == "1"
        and h1["user-agent"] == "me"
        and h1["host"] == ("10.203.0.1:8000")
    )


def test_get_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Silent:
        async def connect(self, addr: tuple[str, int]) -> None:
            await trio.sleep_forever()

    @asynccontextmanager
    async def fake_open(**kwargs: Any) -> AsyncIterator[Silent]:
        yield Silent()

    monkeypatch.setattr(ustack, "open_tun_stack", fake_open, raising=False)
    monkeypatch.setattr(ustack.cli.common, "check_free", lambda *a: None)
    argv = ["get", "--connect-timeout", "0.05", "http://10.203.0.1/"]
    assert cli.main(argv) == 1
    assert "timed out after 0.05 s (--connect-timeout)" in capsys.readouterr().err


# ----------------------------------------------------------------------
# trace: pcapng, --host, -c


def _syn(src: int, dst_host: int) -> bytes:
    from ustack.wire.ipv4 import build_tcp_packet
    from ustack.wire.tcp import SYN, TcpSegment

    seg = TcpSegment(src, 80, 1000, 0, SYN, 1024)
    return build_tcp_packet(bytes([10, 0, 0, 1]), bytes([10, 0, 0, dst_host]), seg, 0)


def pcapng(packets: list[tuple[float, bytes]], big_endian: bool = False) -> bytes:
    """A minimal pcapng file as tshark writes it: SHB, IDB (raw IP, ns
    resolution), one EPB per packet."""
    e = ">" if big_endian else "<"

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(e + "II", kind, n) + body + struct.pack(e + "I", n)

    shb = block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack(e + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(e + "HH", 0, 0)
    idb = block(1, struct.pack(e + "HHI", 101, 0, 65535) + tsresol)
    out = shb + idb + block(2989, b"custom block, skipped")
    for when, packet in packets:
        ticks = round(when * 1e9)
        head = struct.pack(
            e + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(packet), len(packet)
        )
        out += block(6, head + packet)
    return out


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_reads_like_pcap(big_endian: bool, tmp_path: Path) -> None:
    packets = [(1700000000.25 + i, _syn(40000 + i, 2)) for i in range(3)]
    records = list(read_pcap(pcapng(packets, big_endian)))
    assert [r.packet for r in records] == [p for _, p in packets]
    assert [r.time for r in records] == pytest.approx([t for t, _ in packets])


def test_trace_host_and_count_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.pcapng"
    packets = [(1.0 + i, _syn(40000 + i, 2 + i % 2)) for i in range(6)]
    path.write_bytes(pcapng(packets))
    assert cli.main(["trace", str(path), "--host", "10.0.0.3"]) == 0
    out = capsys.readouterr().out
    assert out.count("connection ") == 3 and "10.0.0.2:80" not in out
    assert cli.main(["trace", str(path), "-c", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("connection ") == 2
    with (tmp_path / "y.pcap").open("wb") as f:
        writer = PcapWriter(f)
        for when, packet in packets:
            writer.write(when, packet)
        writer.flush()
    assert cli.main(["trace", str(tmp_path / "y.pcap")]) == 0
    from_pcap = capsys.readouterr().out
    assert cli.main(["trace", str(path)]) == 0
    assert capsys.readouterr().out == from_pcap
