"""CLI argument handling and the up/get flows with a fake loopback stack."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import ustack
from ustack import cli
from ustack.errors import SetupError
from ustack.services import pattern_bytes, serve_http


@pytest.fixture(autouse=True)
def _no_device_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake stacks here open no device: do not let this machine's own
    devices and addresses (cli.common.check_free) decide the outcome."""
    from ustack.cli import common

    monkeypatch.setattr(common, "_kernel_devices", dict)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_build_settings_applies_assignments() -> None:
    s = cli.build_settings(["msl=1", "rto-min=0.5", "syn_retries=2"])
    assert (s.msl, s.rto_min, s.syn_retries) == (1.0, 0.5, 2)


@pytest.mark.parametrize("bad", ["bogus=1", "msl", "syn_retries=x"])
def test_bad_set_is_one_line_exit_2(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up", "--set", bad]) == 2
    assert one_line(capsys.readouterr().err).startswith("ustack: ")


def test_parse_services() -> None:
    assert cli.parse_services("echo, http") == ["echo", "http"]
    assert cli.parse_services("all") == ["echo", "discard", "chargen", "http"]
    assert cli.parse_services("echo,echo") == ["echo"]
    assert cli.parse_services("") == []
    with pytest.raises(ValueError, match="gopher"):
        cli.parse_services("echo,gopher")


def test_unknown_service_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--services", "echo,gopher"]) == 2
    assert "unknown service 'gopher'" in one_line(capsys.readouterr().err)


def test_http_root_must_be_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up", "--http-root", str(tmp_path / "missing")]) == 2
    assert "not a directory" in one_line(capsys.readouterr().err)


def test_parse_url() -> None:
    assert cli.parse_url("http://10.0.0.1/") == ("10.0.0.1", 80, "/")
    assert cli.parse_url("http://10.0.0.1:8000") == ("10.0.0.1", 8000, "/")
    assert cli.parse_url("http://10.0.0.1/a/b?c=1") == ("10.0.0.1", 80, "/a/b?c=1")
    for bad in ["http://example.com/", "https://10.0.0.1/", "10.0.0.1/"]:
        with pytest.raises(ValueError):
            cli.parse_url(bad)


def test_get_with_hostname_is_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "http://example.com/"]) == 2
    assert "IPv4" in one_line(capsys.readouterr().err)


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["up", "--mtu", "big"]) == 2
    assert cli.main(["--help"]) == 0
    assert "up" in capsys.readouterr().out


def test_parser_defaults() -> None:
    args = cli.build_parser().parse_args(["up"])
    assert (args.ifname, args.host_ip, args.ip, args.mtu) == (
        "ustack0",
        "10.203.0.1/24",
        "10.203.0.2",
        1500,
    )
    assert args.services == cli.ALL_SERVICES and args.set == []


def raise_setup(**kwargs: Any) -> Any:
    raise SetupError("ustack needs root (CAP_NET_ADMIN): run with sudo")


@asynccontextmanager
async def setup_fails_inside_nursery(**kwargs: Any) -> AsyncIterator[None]:
    async with trio.open_nursery():
        raise SetupError("/dev/net/tun missing: modprobe tun")
    yield  # pragma: no cover


@pytest.mark.parametrize("fake", [raise_setup, setup_fails_inside_nursery])
@pytest.mark.parametrize("command", [["up"], ["get", "http://10.203.0.1/"]])
def test_setup_error_is_one_clean_line(
    fake: Any,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(ustack, "open_tun_stack", fake, raising=False)
    assert cli.main(command) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("ustack: ") and "Traceback" not in err


class FakeStack:
    """listen/connect on loopback; `port_map` maps ustack ports to real ones."""

    def __init__(self, connect_error: OSError | None = None) -> None:
        self.port_map: dict[int, int] = {}
        self.connect_error = connect_error
        self.kwargs: dict[str, Any] = {}
        self.exited = False

    async def listen(self, port: int, backlog: int = 128) -> trio.SocketListener:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port_map[port] = listener.socket.getsockname()[1]
        return listener

    async def connect(self, addr: tuple[str, int]) -> trio.SocketStream:
        if self.connect_error:
            raise self.connect_error
        return await trio.open_tcp_stream("127.0.0.1", self.port_map[addr[1]])


def test_up_prints_ready_and_stops_on_sigterm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = FakeStack()

    @asynccontextmanager
    async def fake_open(**kwargs: Any) -> AsyncIterator[FakeStack]:
        stack.kwargs = kwargs

        async def kill_when_listening() -> None:
            while len(stack.port_map) < 2:
                await trio.sleep(0.01)
            with trio.fail_after(5):
                async with await trio.open_tcp_stream(
                    "127.0.0.1", stack.port_map[7]
                ) as s:
                    await s.send_all(b"hi")
                    assert await s.receive_some() == b"hi"
            os.kill(os.getpid(), signal.SIGTERM)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_when_listening)
            yield stack
        stack.exited = True

    monkeypatch.setattr(ustack, "open_tun_stack", fake_open, raising=False)
    argv = ["up", "--services", "echo,http", "--mtu", "9000", "--set", "msl=2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    ready = one_line(out)
    assert "ready" in ready and "echo:7 http:80" in ready and "ustack0" in ready
    assert stack.exited
    assert stack.kwargs["mtu"] == 9000 and stack.kwargs["settings"].msl == 2.0
    assert stack.kwargs["ip"] == "10.203.0.2"


def fake_http_stack(stack: FakeStack) -> Any:
    @asynccontextmanager
    async def fake_open(**kwargs: Any) -> AsyncIterator[FakeStack]:
        async with trio.open_nursery() as nursery:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            stack.port_map[8000] = listener.socket.getsockname()[1]
            nursery.start_soon(serve_http, listener)
            yield stack
            nursery.cancel_scope.cancel()

    return fake_open


def test_get_writes_body_to_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        ustack, "open_tun_stack", fake_http_stack(FakeStack()), raising=False
    )
    out = tmp_path / "out.bin"
    assert cli.main(["get", "http://10.203.0.1:8000/bytes/300000", "-o", str(out)]) == 0
    assert out.read_bytes() == pattern_bytes(300000)
    assert "300000 bytes" in one_line(capsys.readouterr().err)


def test_get_non_2xx_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        ustack, "open_tun_stack", fake_http_stack(FakeStack()), raising=False
    )
    out = tmp_path / "out.bin"
    assert cli.main(["get", "http://10.203.0.1:8000/missing", "-o", str(out)]) == 1
    assert "404" in one_line(capsys.readouterr().err)
    assert out.read_bytes() == b""


def test_get_connection_refused_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(
        ustack, "open_tun_stack", fake_http_stack(FakeStack(refused)), raising=False
    )
    assert cli.main(["get", "http://10.203.0.1:8000/"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "connect to 10.203.0.1:8000 failed: connection refused (" in err
