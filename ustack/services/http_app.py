"""The HTTP service's routes without I/O: a request in, a `Reply` out.

Both drivers use it: `HttpService` (a task per connection over any trio
Stream) and `HttpProtocol` (callbacks from ustack's packet loop, or from
ustack.services.stream_driver on kernel sockets). Routes: static files
under a root, `/bytes/N`, `POST /sha256`, the services page.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
from collections.abc import Iterable, Iterator, Sequence
from email.utils import formatdate
from http import HTTPStatus
from itertools import chain
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

import h11

CHUNK = 256 * 1024  # body chunk: big chunks keep per-call cost low
MAX_BYTES = 10 * 2**30  # /bytes/N upper bound
MAX_IGNORED_BODY = 1 << 20  # request body we will read and drop on GET/HEAD
JOIN_LIMIT = 64 * 1024  # small pieces up to this are joined into one write
_PERIOD = bytes(range(251))
# Any CHUNK-long window of the pattern starts within the first 251 bytes.
_PATTERN = memoryview(_PERIOD * (CHUNK // 251 + 2))
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"

Body = Iterable[bytes | memoryview]


def pattern_bytes(n: int) -> bytes:
    """The /bytes/N body: byte i is i % 251."""
    return (_PERIOD * (n // 251 + 1))[:n]


class Reply:
    """A response: status, headers (Content-Length included) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        status: int,
        length: int,
        body: Body,
        ctype: str = _TEXT,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.headers = [*_common_headers(length, ctype), *headers]
        self.body = body

    @classmethod
    def text(
        cls,
        status: int,
        body: str,
        ctype: str = _TEXT,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        raw = body.encode()
        return cls(status, len(raw), (raw,), ctype, headers)


class Sha256Sink:
    """POST /sha256: the reply comes once the whole body has been seen."""

    __slots__ = ("_digest",)

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self._digest.update(data)

    def finish(self) -> Reply:
        return Reply.text(200, self._digest.hexdigest() + "\n")


class HttpApp:
    """The routes; `services` feeds the index page when there is no root."""

    __slots__ = ("root", "services")

    def __init__(
        self, root: Path | None = None, services: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.root = root.resolve() if root is not None else None
        self.services = list(services)

    def route(self, req: h11.Request) -> Reply | Sha256Sink:
        method = req.method.decode("ascii", "replace")
        path = unquote(urlsplit(req.target.decode("ascii", "replace")).path)
        head = method == "HEAD"
        if path == "/sha256":
            if method != "POST":
                return Reply.text(405, "use POST\n", headers=[("Allow", "POST")])
            return Sha256Sink()
        if method not in ("GET", "HEAD"):
            return Reply.text(
                405, "method not allowed\n", headers=[("Allow", "GET, HEAD")]
            )
        length = _content_length(req)
        if length is not None and length > MAX_IGNORED_BODY:
            return Reply.text(
                413, "request body too large\n", headers=[("Connection", "close")]
            )
        if path.startswith("/bytes/"):
            return _bytes(path.removeprefix("/bytes/"))
        if self.root is not None:
            return self._file(path, head)
        if path == "/":
            return Reply.text(200, self._services_page(), _HTML)
        return Reply.text(404, "not found\n")

    def _file(self, path: str, head: bool) -> Reply:
        assert self.root is not None
        if "\x00" in path:
            return Reply.text(400, "bad path\n")
        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root):  # .. or a symlink out of root
            return Reply.text(403, "forbidden\n")
        if target.is_dir():
            return Reply.text(200, self._listing(target), _HTML)
        if not target.is_file():
            return Reply.text(404, "not found\n")
        try:
            f = target.open("rb")
        except PermissionError:
            return Reply.text(403, "forbidden\n")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        size = target.stat().st_size
        if head:
            f.close()
            return Reply(200, size, (), ctype)
        return Reply(200, size, _file_chunks(f, size), ctype)

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


def reply_bytes(
    conn: h11.Connection, reply: Reply, head: bool
) -> Iterator[bytes | memoryview]:
    """The reply as h11 frames it, in writes: the status line, headers and
    small bodies joined into one (with Nagle on, RFC 896, a second small
    write would wait for the peer's delayed ACK), large chunks passed through
    without a copy."""
    response = h11.Response(
        status_code=reply.status,
        headers=reply.headers,
        reason=HTTPStatus(reply.status).phrase,  # we only send standard codes
    )
    body: Iterable[object] = () if head else (h11.Data(data=c) for c in reply.body)  # type: ignore[arg-type]
    pending: list[bytes | memoryview] = []
    size = 0
    for event in chain((response,), body, (h11.EndOfMessage(),)):
        for part in conn.send_with_data_passthrough(event) or []:  # type: ignore[arg-type]
            if size + len(part) > JOIN_LIMIT:
                if pending:
                    yield b"".join(pending)
                    pending.clear()
                    size = 0
                if len(part) > JOIN_LIMIT:
                    yield part
                    continue
            pending.append(part)
            size += len(part)
    if pending:
        yield b"".join(pending)


def error_reply(exc: h11.RemoteProtocolError) -> Reply:
    """The answer to a request h11 could not parse. The reason phrase only:
    h11's message quotes the request bytes as a Python repr, which is no
    business of the client's (issue 10 item 15)."""
    status = exc.error_status_hint or 400
    return Reply.text(
        status,
        f"{status} {HTTPStatus(status).phrase}\n",
        headers=[("Connection", "close")],
    )


def _bytes(arg: str) -> Reply:
    if not (arg.isascii() and arg.isdigit()) or int(arg) > MAX_BYTES:
        return Reply.text(400, f"/bytes/N wants an integer 0..{MAX_BYTES}\n")
    n = int(arg)
    return Reply(200, n, _pattern_chunks(n), "application/octet-stream")


def _pattern_chunks(n: int) -> Iterator[memoryview]:
    off = 0
    while off < n:
        size = min(CHUNK, n - off)
        start = off % 251
        yield _PATTERN[start : start + size]
        off += size


def _file_chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    # Local reads of CHUNK bytes are quick; no thread hop needed.
    with f:
        while size > 0 and (chunk := f.read(min(CHUNK, size))):
            yield chunk
            size -= len(chunk)


def _common_headers(length: int, ctype: str) -> list[tuple[str, str]]:
    """Headers of every response (RFC 9110 6.6.1: an origin server with a
    clock MUST send Date)."""
    return [
        ("Server", "ustack"),
        ("Date", formatdate(usegmt=True)),
        ("Content-Type", ctype),
        ("Content-Length", str(length)),
    ]


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
