"""Command line: `ustack up` (stack + services) and `ustack get URL`.

Subcommands register a `func(args, settings) -> int` coroutine via
`set_defaults`, so new ones (e.g. `ss`) slot in without touching `main`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import trio

from ustack.cli import tools as cli_tools
from ustack.cli.common import err as _err
from ustack.cli.common import open_stack as _open_stack
from ustack.config import Settings
from ustack.errors import SetupError

ALL_SERVICES = "echo,discard,chargen,http"


def parse_services(text: str) -> list[str]:
    """`echo,http` -> ["echo", "http"]; "all" means every service."""
    from ustack.services import SERVICES

    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if name == "all":
            names.extend(SERVICES)
        elif name and name not in SERVICES:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        elif name:
            names.append(name)
    return list(dict.fromkeys(names))


def build_settings(assignments: list[str]) -> Settings:
    """Apply each `--set NAME=VALUE`; raises ValueError with a one-line message."""
    settings = Settings()
    for assignment in assignments:
        settings.set_from_string(assignment)
    return settings


def parse_url(url: str) -> tuple[str, int, str]:
    """`http://10.203.0.1:8000/x?y` -> ("10.203.0.1", 8000, "/x?y")."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    host = parts.hostname or ""
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(
            f"host must be an IPv4 address (ustack has no DNS), got {host!r}"
        ) from None
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, target


def build_parser() -> argparse.ArgumentParser:
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument("--ifname", default="ustack0", help="TUN device name")
    stack.add_argument(
        "--host-ip", default="10.203.0.1/24", help="kernel side address/prefix"
    )
    stack.add_argument("--ip", default="10.203.0.2", help="ustack's own address")
    stack.add_argument("--mtu", type=int, default=1500)
    stack.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="checksum and segmentation offload on the TUN device (virtio-net "
        "header): 64 KB segments between kernel and ustack whatever the MTU "
        "(default: on; --no-offload for plain packets with full checksums)",
    )
    stack.add_argument(
        "--impair",
        metavar="SPEC",
        help="impair the link, e.g. loss=5%%,dup=1%%,reorder=5%%,delay=20ms,"
        "jitter=5ms,seed=7 or drop=fin:in:1 (see README)",
    )
    stack.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Settings field (repeatable), e.g. --set msl=1",
    )

    parser = argparse.ArgumentParser(
        prog="ustack", description="A user-space TCP/IP stack over a TUN device."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[stack], help="run the stack and services")
    up.add_argument(
        "--services",
        default=ALL_SERVICES,
        help=f"comma-separated subset of {ALL_SERVICES} (default: all)",
    )
    up.add_argument("--http-root", type=Path, help="directory the http service serves")
    up.add_argument(
        "--keepalive", action="store_true", help="SO_KEEPALIVE on service connections"
    )
    up.set_defaults(func=_up)
    cli_tools.add_up_options(up)

    get = sub.add_parser("get", parents=[stack], help="HTTP GET through ustack")
    get.add_argument("url", help="http://IPv4[:port]/path")
    get.add_argument("-o", "--output", type=Path, help="write the body here")
    get.set_defaults(func=_get)
    cli_tools.add_commands(sub, stack)
    return parser


async def _up(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.services import SERVICES, run_services

    services = " ".join(f"{n}:{SERVICES[n]}" for n in args.services) or "none"
    ready = (
        f"ustack ready: {args.ip} on {args.ifname} "
        f"(kernel side {args.host_ip}); services {services}"
    )
    extras = cli_tools.UpExtras(args)  # logging, --pcap, control socket
    with extras, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _open_stack(args, settings) as stack, trio.open_nursery() as nursery:
            await nursery.start(
                run_services, stack, args.services, args.http_root, args.keepalive
            )
            await nursery.start(extras.run, stack)
            print(ready, flush=True)
            if sys.stdout.isatty():
                _pretty_summary(args, settings)
            async for signum in signals:
                _err(f"{signal.Signals(signum).name}, shutting down")
                break
            nursery.cancel_scope.cancel()
    return 0


def _pretty_summary(args: argparse.Namespace, settings: Settings) -> None:
    from rich.console import Console
    from rich.table import Table

    from ustack.services import SERVICES

    table = Table(title="ustack services", show_header=True)
    table.add_column("service")
    table.add_column("address")
    for name in args.services:
        table.add_row(name, f"{args.ip}:{SERVICES[name]}")
    Console().print(table)
    changed = {
        k: v for k, v in settings.as_dict().items() if v != getattr(Settings(), k)
    }
    if changed:
        Console().print("settings:", changed)


async def _get(args: argparse.Namespace, settings: Settings) -> int:
    import h11

    from ustack.httpclient import http_get

    host, port, target = parse_url(args.url)
    host_header = host if port == 80 else f"{host}:{port}"
    out = args.output.open("wb") if args.output else sys.stdout.buffer
    progress = cli_tools.GetProgress(enabled=bool(args.output) and sys.stderr.isatty())
    try:
        async with _open_stack(args, settings) as stack:
            try:
                stream = await stack.connect((host, port))
            except OSError as exc:
                _err(f"connect to {host}:{port} failed: {exc.strerror or exc}")
                return 1
            start = time.monotonic()
            async with stream:
                try:
                    with progress:
                        result = await http_get(
                            stream,
                            host_header,
                            target,
                            progress.wrap(out.write),
                            on_response=progress.on_response,
                        )
                except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
                    _err(f"GET {args.url} failed: {exc}")
                    return 1
            elapsed = max(time.monotonic() - start, 1e-9)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    if not result.ok:
        _err(f"GET {args.url}: {result.status} {result.reason}")
        return 1
    mbps = result.body_bytes / elapsed / 1e6
    print(
        f"ustack get: {result.status} {result.reason}, {result.body_bytes} bytes "
        f"in {elapsed:.2f} s ({mbps:.2f} MB/s)",
        file=sys.stderr,
    )
    return 0


def _clean_error(exc: BaseException) -> BaseException | None:
    """The SetupError/OSError to report in one line, looking inside groups."""
    if isinstance(exc, SetupError | OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_clean_error(e) for e in exc.exceptions]
        if leaves and all(leaves):
            return leaves[0]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse printed it
        return exc.code if isinstance(exc.code, int) else 2
    try:
        settings = build_settings(args.set)
        if args.command == "up":
            args.services = parse_services(args.services)
            if args.http_root is not None and not args.http_root.is_dir():
                raise ValueError(f"--http-root {args.http_root} is not a directory")
        if args.command == "get":
            parse_url(args.url)
        if getattr(args, "impair", None) is not None:
            from ustack.link.impair import parse_impair_spec

            args.impair = parse_impair_spec(args.impair)
        if args.command == "ss" and args.state:
            cli_tools.normalize_state(args.state)
    except ValueError as exc:
        _err(str(exc))
        return 2
    func: Callable[[argparse.Namespace, Settings], Awaitable[int]] = args.func
    try:
        return trio.run(func, args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        clean = _clean_error(exc)
        if clean is None:
            raise
        _err(str(clean))
        return 1


if __name__ == "__main__":
    sys.exit(main())
