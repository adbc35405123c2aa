#!/usr/bin/env python3
"""Allow-list HTTP proxy for the test VM, one guest connection per process.

qemu's user-mode network runs with ``restrict=on`` (the guest reaches nothing
outside) plus ``guestfwd=tcp:10.0.2.100:3128-cmd:proxy.py ...``: for each TCP
connection the guest opens to 10.0.2.100:3128, qemu starts this program with
the connection as stdin/stdout/stderr. It serves exactly one HTTP proxy
request: ``CONNECT host:443`` (pip) or a plain ``GET http://host/...`` (apt),
and only when ``host`` is on the allow-list given by tools/vm-test.sh (the
package registries this machine is configured for). Everything else gets a
403. Nothing may be written to stderr (it is the guest's socket): the log
goes to --log.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import sys
import time
from typing import TextIO
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 300.0
ALLOWED_PORTS = {"CONNECT": 443, "http": 80}


class Denied(Exception):
    """The request names a host or port outside the allow-list."""


def read_head(guest: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the blank line ending the request head; return head, rest."""
    data = b""
    guest.settimeout(CONNECT_TIMEOUT_S)
    while b"\r\n\r\n" not in data:
        chunk = guest.recv(4096)
        if not chunk:
            raise EOFError("guest closed before a full request head")
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ValueError("request head too long")
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def plan(head: bytes, allow: set[str]) -> tuple[str, int, bytes | None]:
    """Where to connect and what to send first (None: answer 200 and tunnel)."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        port = int(port_text)
        if host.lower() not in allow or port != ALLOWED_PORTS["CONNECT"]:
            raise Denied(target)
        return host, port, None
    url = urlsplit(target)
    host = (url.hostname or "").lower()
    port = url.port or 80
    if url.scheme != "http" or host not in allow or port != ALLOWED_PORTS["http"]:
        raise Denied(target)
    # One request per connection (RFC 9112 section 9.6): the upstream closes
    # after its answer, so a second request on this connection, maybe for
    # another host, can never reach the wrong server.
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    headers = [
        line
        for line in lines[1:]
        if line.split(":", 1)[0].strip().lower()
        not in {"connection", "proxy-connection", "keep-alive", "host"}
    ]
    first = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", *headers]
    first.append("Connection: close")
    return host, port, ("\r\n".join(first) + "\r\n\r\n").encode("latin-1")


def pipe(guest: socket.socket, upstream: socket.socket) -> int:
    """Copy both ways until both sides closed or nothing moved for too long."""
    guest.setblocking(False)
    upstream.setblocking(False)
    peer = {guest: upstream, upstream: guest}
    sel = selectors.DefaultSelector()
    for s in peer:
        sel.register(s, selectors.EVENT_READ)
    moved = 0
    open_reads = 2
    while open_reads:
        events = sel.select(IDLE_TIMEOUT_S)
        if not events:
            break
        for key, _ in events:
            src: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                chunk = src.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(src)
                open_reads -= 1
                with contextlib.suppress(OSError):
                    peer[src].shutdown(socket.SHUT_WR)
                continue
            dst = peer[src]
            dst.setblocking(True)
            dst.sendall(chunk)
            dst.setblocking(False)
            moved += len(chunk)
    return moved


def serve(guest: socket.socket, allow: set[str], log: TextIO) -> None:
    start = time.monotonic()
    head, rest = read_head(guest)
    first_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        host, port, request = plan(head, allow)
    except (Denied, ValueError) as exc:
        guest.sendall(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        print(f"denied {first_line!r} ({exc})", file=log, flush=True)
        return
    upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    if request is None:
        guest.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        upstream.sendall(request)
    if rest:
        upstream.sendall(rest)
    moved = pipe(guest, upstream)
    upstream.close()
    took = time.monotonic() - start
    print(f"ok {first_line!r} {moved} bytes {took:.1f} s", file=log, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--allow-file", required=True, help="one host a line")
    parser.add_argument("--log", required=True, help="file to append to")
    args = parser.parse_args()
    with open(args.allow_file, encoding="utf-8") as f:
        allow = {line.strip().lower() for line in f if line.strip()}
    with open(args.log, "a", encoding="utf-8") as log:
        guest = socket.socket(fileno=sys.stdin.fileno())
        try:
            serve(guest, allow, log)
        except Exception as exc:  # noqa: BLE001 - one connection, log and end
            print(f"error {type(exc).__name__}: {exc}", file=log, flush=True)
            return 1
        finally:
            guest.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
