"""A minimal streaming HTTP/1.1 GET over any trio Stream (used by `ustack get`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import trio

RECV_SIZE = 256 * 1024


@dataclass
class HttpResult:
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_bytes: int = 0  # bytes handed to the sink

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def http_get(
    stream: trio.abc.Stream,
    host: str,
    target: str,
    sink: Callable[[bytes], object],
    *,
    body_on_error: bool = False,
    on_response: Callable[[HttpResult], object] | None = None,
) -> HttpResult:
    """Send `GET target` (Connection: close) and stream the body into `sink`.

    A non-2xx body is read and dropped unless `body_on_error`. `on_response`
    is called with the result once status and headers are known. Raises
    h11.RemoteProtocolError on a malformed or truncated response.
    """
    return await http_request(
        stream,
        "GET",
        host,
        target,
        sink,
        body_on_error=body_on_error,
        on_response=on_response,
    )


async def http_request(
    stream: trio.abc.Stream,
    method: str,
    host: str,
    target: str,
    sink: Callable[[bytes], object],
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    body_on_error: bool = False,
    on_response: Callable[[HttpResult], object] | None = None,
) -> HttpResult:
    """Like http_get, for any method, extra `headers` (they replace the
    defaults of the same name) and a request `body` (sent with its
    Content-Length)."""
    conn = h11.Connection(h11.CLIENT)
    extra = headers or []
    given = {name.lower() for name, _ in extra}
    defaults = [("Host", host), ("User-Agent", "ustack"), ("Connection", "close")]
    all_headers = [(k, v) for k, v in defaults if k.lower() not in given] + extra
    if (body or method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
        all_headers.append(("Content-Length", str(len(body))))
    request = h11.Request(method=method, target=target, headers=all_headers)
    data = conn.send(request) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))
    result = HttpResult()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(RECV_SIZE))  # type: ignore[arg-type]
        elif isinstance(event, h11.Response):
            result.status = event.status_code
            result.reason = event.reason.decode("latin-1") or _phrase(event.status_code)
            result.headers = [
                (k.decode(), v.decode("latin-1")) for k, v in event.headers
            ]
            if on_response is not None:
                on_response(result)
        elif isinstance(event, h11.Data):
            if result.ok or body_on_error:
                sink(event.data)
                result.body_bytes += len(event.data)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return result


def _phrase(status: int) -> str:
    """The standard reason phrase, for servers that send none (HTTP/1.1 lets
    them: RFC 9112 4)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
