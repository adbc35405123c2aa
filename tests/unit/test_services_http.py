"""The h11 HTTP service over trio's loopback TCP."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import pytest
import trio

from ustack.services import HttpService, pattern_bytes, serve_http
from ustack.services.httpd import CHUNK


@asynccontextmanager
async def http_conn(root: Path | None = None) -> AsyncIterator[trio.SocketStream]:
    """A client stream to a fresh HTTP service on 127.0.0.1."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_http, listener, root, [("echo", 7)])
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            yield stream
        nursery.cancel_scope.cancel()


class Client:
    """h11 client on one stream; `request` can be called repeatedly (keep-alive)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def _next(self) -> object:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(bytes(await self.stream.receive_some(1 << 16)))
        return event

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: list[bytes] | None = None,
    ) -> tuple[h11.Response, bytes]:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = [("Host", "t"), *(headers or [])]
        await self.stream.send_all(
            self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        )
        for chunk in body or []:
            await self.stream.send_all(self.conn.send(h11.Data(data=chunk)))
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
        response = await self._next()
        assert isinstance(response, h11.Response)
        data = bytearray()
        while not isinstance(event := await self._next(), h11.EndOfMessage):
            assert isinstance(event, h11.Data)
            data += event.data
        return response, bytes(data)


def header(resp: h11.Response, name: str) -> str | None:
    for k, v in resp.headers:
        if k == name.lower().encode():
            return v.decode()
    return None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello world\n")
    (site / "sub").mkdir()
    (site / "sub" / "big.bin").write_bytes(os.urandom(CHUNK * 2 + 17))
    (tmp_path / "secret.txt").write_text("top secret\n")
    (site / "escape").symlink_to(tmp_path / "secret.txt")
    return site


async def test_index_without_root_lists_services_and_endpoints() -> None:
    async with http_conn() as s:
        resp, body = await Client(s).request("GET", "/")
    assert resp.status_code == 200
    assert header(resp, "server") == "ustack"
    assert (header(resp, "content-type") or "").startswith("text/html")
    assert b"echo" in body and b"/bytes/N" in body and b"/sha256" in body
    assert header(resp, "content-length") == str(len(body))


async def test_index_with_root_lists_files(root: Path) -> None:
    async with http_conn(root) as s:
        resp, body = await Client(s).request("GET", "/")
    assert resp.status_code == 200
    assert b'href="/hello.txt"' in body and b'href="/sub/"' in body


async def test_file_get_and_head(root: Path) -> None:
    async with http_conn(root) as s:
        c = Client(s)
        resp, body = await c.request("GET", "/hello.txt")
        assert resp.status_code == 200 and body == b"hello world\n"
        assert header(resp, "content-type") == "text/plain"
        resp, body = await c.request("HEAD", "/hello.txt")
        assert resp.status_code == 200 and body == b""
        assert header(resp, "content-length") == "12"
        big = (root / "sub" / "big.bin").read_bytes()
        resp, body = await c.request("GET", "/sub/big.bin")
        assert body == big and header(resp, "content-length") == str(len(big))
        resp, _ = await c.request("GET", "/nope.txt")
        assert resp.status_code == 404


@pytest.mark.parametrize(
    "target",
    ["/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/escape"],
)
async def test_path_escape_is_blocked(root: Path, target: str) -> None:
    async with http_conn(root) as s:
        resp, body = await Client(s).request("GET", target)
    assert resp.status_code in (403, 404)
    assert b"top secret" not in body


def test_pattern_bytes() -> None:
    assert pattern_bytes(0) == b""
    data = pattern_bytes(1000)
    assert len(data) == 1000 and all(b == i % 251 for i, b in enumerate(data))


@pytest.mark.parametrize(
    "n", [0, 1, 250, 251, 252, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 1234]
)
async def test_bytes_endpoint(n: int) -> None:
    async with http_conn() as s:
        resp, body = await Client(s).request("GET", f"/bytes/{n}")
    assert resp.status_code == 200
    assert header(resp, "content-length") == str(n)
    assert body == pattern_bytes(n)


@pytest.mark.parametrize(
    "arg", ["x", "-1", "1.5", str(10 * 2**30 + 1), "%D9%A1", "%20"]
)
async def test_bytes_endpoint_rejects_bad_n(arg: str) -> None:
    async with http_conn() as s:
        resp, _ = await Client(s).request("GET", f"/bytes/{arg}")
    assert resp.status_code == 400


async def test_bytes_head_has_length_only() -> None:
    async with http_conn() as s:
        resp, body = await Client(s).request("HEAD", "/bytes/5000000")
    assert header(resp, "content-length") == "5000000" and body == b""


async def test_sha256_content_length_and_chunked_bodies() -> None:
    blob = os.urandom(3_000_000)
    want = hashlib.sha256(blob).hexdigest().encode() + b"\n"
    pieces = [blob[i : i + 100_000] for i in range(0, len(blob), 100_000)]
    async with http_conn() as s:
        c = Client(s)
        resp, body = await c.request(
            "POST", "/sha256", [("Content-Length", str(len(blob)))], pieces
        )
        assert resp.status_code == 200 and body == want
        resp, body = await c.request(
            "POST", "/sha256", [("Transfer-Encoding", "chunked")], pieces
        )
        assert resp.status_code == 200 and body == want
        resp, body = await c.request("POST", "/sha256", [("Content-Length", "0")])
        assert body == hashlib.sha256(b"").hexdigest().encode() + b"\n"


async def test_sha256_with_expect_100_continue() -> None:
    async with http_conn() as s:
        c = Client(s)
        await s.send_all(
            c.conn.send(
                h11.Request(
                    method="POST",
                    target="/sha256",
                    headers=[
                        ("Host", "t"),
                        ("Content-Length", "3"),
                        ("Expect", "100-continue"),
                    ],
                )
            )
        )
        event = await c._next()
        assert isinstance(event, h11.InformationalResponse) and event.status_code == 100
        await s.send_all(
            c.conn.send(h11.Data(data=b"abc")) + c.conn.send(h11.EndOfMessage())
        )
        resp = await c._next()
        assert isinstance(resp, h11.Response) and resp.status_code == 200


async def test_keep_alive_two_requests_one_connection() -> None:
    async with http_conn() as s:
        c = Client(s)
        r1, b1 = await c.request("GET", "/bytes/10")
        r2, b2 = await c.request("GET", "/bytes/20")
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert (b1, b2) == (pattern_bytes(10), pattern_bytes(20))


async def test_pipelined_requests_in_one_write() -> None:
    req = b"GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"
    async with http_conn() as s:
        await s.send_all(
            req * 2 + b"GET /bytes/4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = b""
        with trio.fail_after(5):
            while chunk := await s.receive_some():
                data += chunk
    assert data.count(b"HTTP/1.1 200") == 3
    assert data.endswith(pattern_bytes(4))


async def test_connection_close_is_honoured() -> None:
    async with http_conn() as s:
        resp, _ = await Client(s).request("GET", "/bytes/1", [("Connection", "close")])
        assert header(resp, "connection") == "close"
        with trio.fail_after(5):
            assert await s.receive_some() == b""


async def raw(stream: trio.abc.Stream, data: bytes) -> bytes:
    await stream.send_all(data)
    out = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some():
            out += chunk
    return out


async def test_malformed_request_gets_400_and_close() -> None:
    async with http_conn() as s:
        out = await raw(s, b"THIS IS NOT HTTP\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in out.lower()


async def test_400_body_is_the_reason_and_carries_a_date() -> None:
    """Issue 10 item 15: the body quoted h11's message, a Python repr of the
    request bytes (`bytearray(b'OPTIONS / RTSP/1.0')`), and Date was missing."""
    async with http_conn() as s:
        out = await raw(s, b"OPTIONS / RTSP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert body == b"400 Bad Request\n"
    assert b"\r\ndate: " in head.lower()


async def test_missing_host_gets_400() -> None:
    async with http_conn() as s:
        out = await raw(s, b"GET / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


async def test_unknown_method_gets_405_with_allow() -> None:
    async with http_conn() as s:
        c = Client(s)
        resp, _ = await c.request("BREW", "/")
        assert resp.status_code == 405 and header(resp, "allow") == "GET, HEAD"
        resp, _ = await c.request("GET", "/sha256")
        assert resp.status_code == 405 and header(resp, "allow") == "POST"
        resp, _ = await c.request(
            "DELETE", "/bytes/1", [("Content-Length", "5")], [b"xxxxx"]
        )
        assert resp.status_code == 405
        resp, body = await c.request("GET", "/bytes/2")  # still usable afterwards
        assert body == pattern_bytes(2)


async def test_large_ignored_body_gets_413() -> None:
    async with http_conn() as s:
        out = await raw(
            s, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n"
        )
    assert out.startswith(b"HTTP/1.1 413 ")


async def test_client_vanishing_mid_download_does_not_kill_service() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_http, listener)
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            await s.send_all(b"GET /bytes/100000000 HTTP/1.1\r\nHost: t\r\n\r\n")
            await s.receive_some()
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            resp, body = await Client(s).request("GET", "/bytes/7")
            assert body == pattern_bytes(7)
        nursery.cancel_scope.cancel()


class RecordingStream(trio.abc.Stream):
    """Feeds canned request bytes and records each send_all call."""

    def __init__(self, request: bytes) -> None:
        self.incoming = [request]
        self.sends: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.incoming.pop(0) if self.incoming else b""

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("target", ["/", "/bytes/1000", "/nothing-here"])
async def test_small_response_leaves_in_one_send(target: str) -> None:
    # With Nagle on, a second small write would wait for the client's delayed ACK.
    stream = RecordingStream(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await HttpService(None, [("echo", 7)])(stream)
    assert len(stream.sends) == 1
    assert stream.sends[0].startswith(b"HTTP/1.1 ")


async def test_large_body_is_not_copied_into_one_send() -> None:
    stream = RecordingStream(
        f"GET /bytes/{CHUNK * 2} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    )
    await HttpService()(stream)
    assert [len(s) for s in stream.sends[1:]] == [CHUNK, CHUNK]
    assert b"".join(stream.sends[1:]) == pattern_bytes(CHUNK * 2)
