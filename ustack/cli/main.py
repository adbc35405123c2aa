"""The `ustack` command: parse, check, run one subcommand, report in one line.

Each subcommand module (up, get, nc, ss, stats, trace) adds its parser and
registers `func(args, settings) -> int` (a coroutine) and optionally
`check(args)` (raises ValueError for a usage error) via `set_defaults`.

Exit status: 0 ok, 1 the command failed (one `ustack: ...` line on stderr),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable

import trio

from ustack.cli import get, nc, ss, stats, trace, up
from ustack.cli.common import Failure, Formatter, check_addresses, err, stack_parent
from ustack.config import Settings, check_settings, settings_help
from ustack.errors import SetupError

# Commands that only read and print: a closed pipe (`ustack ss | head`)
# ends them quietly, as it does ss, cat or tcpdump (default SIGPIPE action).
_READERS = {"ss", "stats", "trace"}


def build_settings(assignments: list[str]) -> Settings:
    """Apply each `--set NAME=VALUE`; raises ValueError with a one-line message."""
    settings = Settings()
    for assignment in assignments:
        settings.set_from_string(assignment)
    check_settings(settings)
    return settings


def build_parser() -> argparse.ArgumentParser:
    import ustack

    parser = argparse.ArgumentParser(
        prog="ustack",
        description="A user-space TCP/IP stack over a TUN device.",
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"ustack {ustack.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack = stack_parent()
    up.add_parser(sub, stack)
    get.add_parser(sub, stack)
    nc.add_parser(sub, stack)
    ss.add_parser(sub)
    stats.add_parser(sub)
    trace.add_parser(sub)
    return parser


def _clean_error(exc: BaseException) -> BaseException | None:
    """The error to report in one line, looking inside exception groups."""
    if isinstance(exc, SetupError | OSError | Failure):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_clean_error(e) for e in exc.exceptions]
        if leaves and all(leaves):
            return leaves[0]
    return None


def _check(args: argparse.Namespace) -> Settings:
    """Every usage check before anything runs (ValueError: exit status 2)."""
    if "help" in (a.strip().lower() for a in args.set):
        print(settings_help())
        raise SystemExit(0)
    settings = build_settings(args.set)
    if hasattr(args, "host_ip"):
        check_addresses(args.ifname, args.host_ip, args.ip, args.mtu)
    if getattr(args, "impair", None) is not None:
        from ustack.link.impair import parse_impair_spec

        args.impair = parse_impair_spec(args.impair)
    elif getattr(args, "impair_process", False):
        raise ValueError("--impair-process: give the path with --impair SPEC too")
    check = getattr(args, "check", None)
    if check is not None:
        check(args)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        settings = _check(args)
    except SystemExit as exc:  # --help, --version, --set help, a usage error
        return exc.code if isinstance(exc.code, int) else 2
    except ValueError as exc:
        err(str(exc))
        return 2
    if argv is None and args.command in _READERS:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    netns = getattr(args, "netns", None)
    func: Callable[[argparse.Namespace, Settings], Awaitable[int]] = args.func
    try:
        if netns is not None:
            from ustack.cli import netns as netns_mod

            netns_mod.create_and_enter(netns)
        try:
            return trio.run(func, args, settings)
        finally:
            if netns is not None:
                netns_mod.delete(netns)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        clean = _clean_error(exc)
        if clean is None:
            raise
        err(str(clean))
        return 1


if __name__ == "__main__":
    sys.exit(main())
