"""tools/vm/proxy.py: the VM's only way out reaches allow-listed registries only."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "vm"))
from proxy import Denied, plan, serve  # noqa: E402

ALLOW = {"registry.test", "files.registry.test"}


def test_connect_to_an_allowed_host_on_443_is_tunnelled() -> None:
    head = b"CONNECT files.registry.test:443 HTTP/1.1\r\nHost: files.registry.test:443"
    assert plan(head, ALLOW) == ("files.registry.test", 443, None)


@pytest.mark.parametrize(
    "target", ["elsewhere.test:443", "registry.test:22", "registry.test.evil:443"]
)
def test_connect_outside_the_allow_list_is_denied(target: str) -> None:
    with pytest.raises(Denied):
        plan(f"CONNECT {target} HTTP/1.1".encode(), ALLOW)


def test_plain_get_is_sent_in_origin_form_one_request_per_connection() -> None:
    head = (
        b"GET http://registry.test/debian/dists/x/Release HTTP/1.1\r\n"
        b"Host: registry.test\r\nConnection: keep-alive\r\nUser-Agent: apt"
    )
    host, port, request = plan(head, ALLOW)
    assert (host, port) == ("registry.test", 80)
    assert request is not None
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /debian/dists/x/Release HTTP/1.1"
    assert "Host: registry.test" in lines
    assert "User-Agent: apt" in lines
    assert "Connection: close" in lines
    assert "Connection: keep-alive" not in lines
    assert request.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "url",
    [
        "http://elsewhere.test/",
        "https://registry.test/",
        "http://registry.test:8080/",
        "ftp://registry.test/",
    ],
)
def test_plain_request_outside_the_allow_list_is_denied(url: str) -> None:
    with pytest.raises(Denied):
        plan(f"GET {url} HTTP/1.1\r\nHost: x".encode(), ALLOW)


def test_denied_request_gets_a_403_and_a_log_line() -> None:
    guest, proxy_end = socket.socketpair()
    log = io.StringIO()
    with guest, proxy_end:
        guest.sendall(b"CONNECT elsewhere.test:443 HTTP/1.1\r\n\r\n")
        serve(proxy_end, ALLOW, log)
        proxy_end.close()
        answer = guest.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert "denied 'CONNECT elsewhere.test:443 HTTP/1.1'" in log.getvalue()
