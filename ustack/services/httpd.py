"""HTTP/1.1 service on h11: static files, `/bytes/N`, `POST /sha256`.

Bodies are streamed both ways in large chunks; nothing is buffered whole.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
from collections.abc import Sequence
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import h11
import trio

from .base import guarded

CHUNK = 256 * 1024  # send/receive/read size: big chunks keep per-call cost low
MAX_BYTES = 10 * 2**30  # /bytes/N upper bound
MAX_IGNORED_BODY = 1 << 20  # request body we will read and drop on GET/HEAD
_PERIOD = bytes(range(251))
# Any CHUNK-long window of the pattern starts within the first 251 bytes.
_PATTERN = memoryview(_PERIOD * (CHUNK // 251 + 2))
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"


def pattern_bytes(n: int) -> bytes:
    """The /bytes/N body: byte i is i % 251."""
    return (_PERIOD * (n // 251 + 1))[:n]


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    """The next h11 event, reading from the stream as needed (b"" = EOF)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if conn.they_are_waiting_for_100_continue:
            await _send(
                conn, stream, h11.InformationalResponse(status_code=100, headers=[])
            )
        conn.receive_data(await stream.receive_some(CHUNK))  # type: ignore[arg-type]


_JOIN_LIMIT = 64 * 1024


async def _send(conn: h11.Connection, stream: trio.abc.Stream, event: object) -> None:
    # Passthrough avoids h11 copying large Data payloads; small pieces (header
    # lines, chunk framing) are joined so they leave as one segment, not one
    # Nagle-delayed segment per line.
    parts = conn.send_with_data_passthrough(event) or []  # type: ignore[arg-type]
    if len(parts) > 1 and sum(len(p) for p in parts) <= _JOIN_LIMIT:
        parts = [b"".join(parts)]
    for part in parts:
        await stream.send_all(part)


class _Exchange:
    """One request/response on a connection.

    Pieces of the response (status line and headers, small bodies, the end)
    are gathered and leave in one send: with Nagle on (RFC 896), a second
    small write would wait for the client's delayed ACK (~40 ms on Linux).
    """

    def __init__(
        self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request
    ) -> None:
        self.conn, self.stream = conn, stream
        self.head = req.method == b"HEAD"
        self._pending: list[bytes | memoryview] = []
        self._pending_len = 0

    async def start(
        self,
        status: int,
        length: int,
        ctype: str = _TEXT,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        hdrs = [*_common_headers(length, ctype), *headers]
        await self._queue(_response(status, hdrs))

    async def data(self, chunk: bytes | memoryview) -> None:
        if not self.head:
            await self._queue(h11.Data(data=chunk))  # type: ignore[arg-type]

    async def end(self) -> None:
        await self._queue(h11.EndOfMessage())
        await self._flush()

    async def _queue(self, event: object) -> None:
        # Passthrough avoids h11 copying large Data payloads.
        for part in self.conn.send_with_data_passthrough(event) or []:  # type: ignore[arg-type]
            if self._pending_len + len(part) > _JOIN_LIMIT:
                await self._flush()
                if len(part) > _JOIN_LIMIT:
                    await self.stream.send_all(part)
                    continue
            self._pending.append(part)
            self._pending_len += len(part)

    async def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
            await self.stream.send_all(data)

    async def simple(
        self,
        status: int,
        body: str,
        ctype: str = _TEXT,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        raw = body.encode()
        await self.start(status, len(raw), ctype, headers)
        await self.data(raw)
        await self.end()


class HttpService:
    """Connection handler; `services` feeds the index page when there is no root."""

    def __init__(
        self, root: Path | None = None, services: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.root = root.resolve() if root is not None else None
        self.services = list(services)

    async def __call__(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                try:
                    event = await _next_event(conn, stream)
                    if isinstance(event, h11.ConnectionClosed):
                        return
                    assert isinstance(event, h11.Request)
                    await self._dispatch(_Exchange(conn, stream, event), event)
                    if conn.our_state is not h11.DONE:
                        return  # MUST_CLOSE: Connection: close, HTTP/1.0, 413
                    if not await self._drain_body(conn, stream):
                        return
                except h11.RemoteProtocolError as exc:
                    await self._protocol_error(conn, stream, exc)
                    return
                if conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async def _protocol_error(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        exc: h11.RemoteProtocolError,
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint or 400
        # The reason phrase only: h11's message quotes the request bytes as a
        # Python repr, which is no business of the client's (issue 10 item 15).
        body = f"{status} {HTTPStatus(status).phrase}\n".encode()
        headers = [*_common_headers(len(body), _TEXT), ("Connection", "close")]
        await _send(conn, stream, _response(status, headers))
        await _send(conn, stream, h11.Data(data=body))
        await _send(conn, stream, h11.EndOfMessage())

    async def _drain_body(self, conn: h11.Connection, stream: trio.abc.Stream) -> bool:
        """Skip an unread request body (bounded); False if we should close."""
        seen = 0
        while conn.their_state is h11.SEND_BODY:
            event = await _next_event(conn, stream)
            if isinstance(event, h11.Data):
                seen += len(event.data)
                if seen > MAX_IGNORED_BODY:
                    return False
        return True

    async def _dispatch(self, ex: _Exchange, req: h11.Request) -> None:
        method = req.method.decode("ascii", "replace")
        path = unquote(urlsplit(req.target.decode("ascii", "replace")).path)
        if path == "/sha256":
            if method != "POST":
                await ex.simple(405, "use POST\n", headers=[("Allow", "POST")])
            else:
                await self._sha256(ex)
            return
        if method not in ("GET", "HEAD"):
            await ex.simple(
                405, "method not allowed\n", headers=[("Allow", "GET, HEAD")]
            )
            return
        length = _content_length(req)
        if length is not None and length > MAX_IGNORED_BODY:
            await ex.simple(
                413, "request body too large\n", headers=[("Connection", "close")]
            )
            return
        if path.startswith("/bytes/"):
            await self._bytes(ex, path.removeprefix("/bytes/"))
        elif self.root is not None:
            await self._file(ex, path)
        elif path == "/":
            await ex.simple(200, self._services_page(), _HTML)
        else:
            await ex.simple(404, "not found\n")

    async def _bytes(self, ex: _Exchange, arg: str) -> None:
        if not (arg.isascii() and arg.isdigit()) or int(arg) > MAX_BYTES:
            await ex.simple(400, f"/bytes/N wants an integer 0..{MAX_BYTES}\n")
            return
        n = int(arg)
        await ex.start(200, n, "application/octet-stream")
        off = 0
        while off < n and not ex.head:
            size = min(CHUNK, n - off)
            start = off % 251
            await ex.data(_PATTERN[start : start + size])
            off += size
        await ex.end()

    async def _sha256(self, ex: _Exchange) -> None:
        digest = hashlib.sha256()
        while True:
            event = await _next_event(ex.conn, ex.stream)
            if isinstance(event, h11.Data):
                digest.update(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        await ex.simple(200, digest.hexdigest() + "\n")

    async def _file(self, ex: _Exchange, path: str) -> None:
        assert self.root is not None
        if "\x00" in path:
            await ex.simple(400, "bad path\n")
            return
        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root):  # .. or a symlink out of root
            await ex.simple(403, "forbidden\n")
        elif target.is_dir():
            await ex.simple(200, self._listing(target), _HTML)
        elif not target.is_file():
            await ex.simple(404, "not found\n")
        else:
            try:
                f = target.open("rb")
            except PermissionError:
                await ex.simple(403, "forbidden\n")
                return
            with f:
                ctype = (
                    mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                )
                size = target.stat().st_size
                await ex.start(200, size, ctype)
                # Local reads of CHUNK bytes are quick; no thread hop needed.
                while not ex.head and (chunk := f.read(min(CHUNK, size))):
                    await ex.data(chunk)
                    size -= len(chunk)
                await ex.end()

    def _listing(self, directory: Path) -> str:
        assert self.root is not None
        rel = directory.relative_to(self.root).as_posix()
        base = "/" if rel == "." else f"/{rel}/"
        items = []
        for entry in sorted(directory.iterdir()):
            name = entry.name + ("/" if entry.is_dir() else "")
            items.append(
                f'<li><a href="{quote(base + name)}">{html.escape(name)}</a></li>'
            )
        return _page(f"Index of {html.escape(base)}", "<ul>" + "".join(items) + "</ul>")

    def _services_page(self) -> str:
        svc = "".join(f"<li>{html.escape(n)}: port {p}</li>" for n, p in self.services)
        endpoints = (
            "<li><code>GET /bytes/N</code>: N bytes, byte i = i % 251</li>"
            "<li><code>POST /sha256</code>: hex SHA-256 of the request body</li>"
        )
        return _page(
            "ustack",
            f"<h2>Services</h2><ul>{svc}</ul><h2>Endpoints</h2><ul>{endpoints}</ul>",
        )


def _common_headers(length: int, ctype: str) -> list[tuple[str, str]]:
    """Headers of every response (RFC 9110 6.6.1: an origin server with a
    clock MUST send Date)."""
    return [
        ("Server", "ustack"),
        ("Date", formatdate(usegmt=True)),
        ("Content-Type", ctype),
        ("Content-Length", str(length)),
    ]


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    reason = HTTPStatus(status).phrase  # we only send standard codes
    return h11.Response(status_code=status, headers=headers, reason=reason)


def _content_length(req: h11.Request) -> int | None:
    for name, value in req.headers:
        if name == b"content-length":
            return int(value)
    return None


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><h1>{title}</h1>{body}</body></html>\n"
    )


async def serve_http(
    listener: trio.abc.Listener[trio.abc.Stream],
    root: Path | None = None,
    services: Sequence[tuple[str, int]] = (),
) -> None:
    await trio.serve_listeners(guarded(HttpService(root, services), "http"), [listener])
