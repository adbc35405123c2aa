"""`ustack get URL`: ustack as an HTTP client, with curl's common flags.

`-L` follows redirects, `-I` asks HEAD and prints the headers, `-X` sets the
method, `-d` sends a body (POST unless -X), `-H` adds headers, `-s` hides the
summary and progress, `-o -` writes the body to stdout, `--connect-timeout`
bounds each connect. Host names come from /etc/hosts (ustack has no DNS).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import trio

from ustack.cli.common import (
    Failure,
    Formatter,
    describe_os_error,
    err,
    open_stack,
)
from ustack.config import Settings

HOSTS_FILE = Path("/etc/hosts")
MAX_REDIRECTS = 20


def resolve(host: str, hosts_file: Path = HOSTS_FILE) -> str:
    """An IPv4 literal as is, else its first IPv4 address in /etc/hosts."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        lines = hosts_file.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        words = line.partition("#")[0].split()
        if len(words) < 2 or host.lower() not in (w.lower() for w in words[1:]):
            continue
        try:
            return str(ipaddress.IPv4Address(words[0]))
        except ValueError:
            continue  # an IPv6 line
    raise ValueError(
        f"host {host!r} is not in {hosts_file} (ustack has no DNS): "
        "use an IPv4 address or add it there"
    )


def parse_url(url: str) -> tuple[str, int, str]:
    """`http://10.203.0.1:8000/x?y` -> ("10.203.0.1", 8000, "/x?y"); names
    are looked up in /etc/hosts."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    host = resolve(parts.hostname or "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, target


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise ValueError(f"-H {text!r}: expected 'Name: value'")
    return name, value.strip()


def add_parser(sub: Any, stack_parent: argparse.ArgumentParser) -> None:
    get = sub.add_parser(
        "get",
        parents=[stack_parent],
        formatter_class=Formatter,
        help="HTTP request through ustack (its own stack), like curl",
    )
    get.add_argument("url", help="http://HOST[:port]/path (HOST: IPv4 or /etc/hosts)")
    get.add_argument(
        "-o", "--output", metavar="FILE", help="write the body here ('-': stdout)"
    )
    get.add_argument("-L", "--location", action="store_true", help="follow redirects")
    get.add_argument(
        "-I", "--head", action="store_true", help="HEAD; print the response headers"
    )
    get.add_argument("-X", "--request", metavar="METHOD", help="request method")
    get.add_argument(
        "-d", "--data", metavar="DATA", help="request body (@FILE reads a file)"
    )
    get.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    get.add_argument(
        "-s", "--silent", action="store_true", help="no progress bar, no summary"
    )
    get.add_argument(
        "--connect-timeout", type=float, metavar="SECS", help="bound on each connect"
    )
    get.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    parse_url(args.url)
    args.headers = [parse_header(h) for h in args.header]
    method = args.request.upper() if args.request else None
    if args.head and method not in (None, "HEAD"):
        raise ValueError(f"-I asks HEAD; it does not go with -X {args.request}")
    args.method = "HEAD" if args.head else method or ("POST" if args.data else "GET")
    args.body = b""
    if args.data is not None:
        if args.data.startswith("@"):
            try:
                args.body = Path(args.data[1:]).read_bytes()
            except OSError as exc:
                raise ValueError(f"-d {args.data}: {exc.strerror or exc}") from None
        else:
            args.body = args.data.encode()
    if args.connect_timeout is not None and not args.connect_timeout > 0:
        raise ValueError(f"--connect-timeout {args.connect_timeout:g}: must be > 0")
    if args.output not in (None, "-") and not Path(args.output).parent.is_dir():
        raise ValueError(f"-o {args.output}: no such directory")


def format_rate(nbytes: int, seconds: float) -> str:
    """`12.3 MB/s`, `850 kB/s`, `120 B/s`: never a misleading `0.00 MB/s`."""
    rate = nbytes / max(seconds, 1e-9)
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.1f} {unit}"
    return f"{rate:.0f} B/s"


async def run(args: argparse.Namespace, settings: Settings) -> int:
    to_file = args.output not in (None, "-")
    progress = GetProgress(enabled=to_file and not args.silent and sys.stderr.isatty())
    out: BinaryIO = open(args.output, "wb") if to_file else sys.stdout.buffer  # noqa: SIM115
    url = args.url
    try:
        async with open_stack(args, settings) as stack:
            for _ in range(MAX_REDIRECTS + 1):
                result, elapsed = await _one_request(stack, args, url, out, progress)
                location = _header(result, "location")
                if not 300 <= result.status < 400 or location is None:
                    break
                target = urljoin(url, location)
                if not args.location:
                    err(
                        f"{result.status} {result.reason}: redirects to {target} "
                        "(add -L to follow)"
                    )
                    return 1
                url = target
            else:
                raise Failure(f"more than {MAX_REDIRECTS} redirects, last to {url}")
    finally:
        if to_file:
            out.close()
        else:
            out.flush()
    if args.head:
        return 0 if result.status < 400 else 1
    if not result.ok:
        err(f"{args.method} {url}: {result.status} {result.reason}")
        return 1
    if not args.silent:
        print(
            f"ustack get: {result.status} {result.reason}, {result.body_bytes} bytes "
            f"in {elapsed:.3f} s ({format_rate(result.body_bytes, elapsed)})",
            file=sys.stderr,
        )
    return 0


def _header(result: Any, name: str) -> str | None:
    for key, value in result.headers:
        if key.lower() == name:
            return str(value)
    return None


async def _one_request(
    stack: Any, args: argparse.Namespace, url: str, out: BinaryIO, progress: Any
) -> tuple[Any, float]:
    import h11

    from ustack.cli.httpclient import http_request

    try:
        host, port, target = parse_url(url)
    except ValueError as exc:
        raise Failure(f"redirect to {url}: {exc}") from None
    host_header = urlsplit(url).netloc
    timeout = args.connect_timeout if args.connect_timeout is not None else None
    try:
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            stream = await stack.connect((host, port))
    except trio.TooSlowError:
        raise Failure(
            f"connect to {host}:{port}: timed out after {timeout:g} s "
            "(--connect-timeout)"
        ) from None
    except OSError as exc:
        raise Failure(
            f"connect to {host}:{port} failed: {describe_os_error(exc)}"
        ) from None
    start = time.monotonic()
    async with stream:
        try:
            with progress:
                result = await http_request(
                    stream,
                    args.method,
                    host_header,
                    target,
                    progress.wrap(out.write),
                    headers=args.headers,
                    body=args.body,
                    on_response=progress.on_response,
                )
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            raise Failure(f"{args.method} {url} failed: {exc}") from None
    if args.head:
        lines = [f"HTTP/1.1 {result.status} {result.reason}"]
        lines += [f"{name}: {value}" for name, value in result.headers]
        sys.stdout.write("\r\n".join(lines) + "\r\n\r\n")
        sys.stdout.flush()
    return result, max(time.monotonic() - start, 1e-9)


class GetProgress:
    """A rich progress bar (bytes, rate, ETA) for `ustack get -o FILE` on a
    terminal; does nothing when not enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> GetProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("GET", total=None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_response(self, result: Any) -> None:
        if self._progress is None:
            return
        for name, value in result.headers:
            if name.lower() == "content-length" and value.isdigit():
                self._progress.update(self._task, total=int(value))

    def wrap(self, sink: Any) -> Any:
        if not self.enabled:
            return sink

        def write(data: bytes) -> None:
            sink(data)
            if self._progress is not None:
                self._progress.advance(self._task, len(data))

        return write
