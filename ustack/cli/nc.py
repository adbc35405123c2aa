"""`ustack nc`: netcat through ustack, on a stack of its own.

`nc HOST PORT` connects out; `nc -l PORT` listens on ustack's address and
serves one connection. Like netcat-openbsd: stdin goes to the connection (EOF
half-closes with a FIN, as `nc -N`), the connection to stdout, and it exits
when the peer closes; `-z` only checks that the port accepts, `-w SECS`
bounds the connect and any idle time, `-v` reports on stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, BinaryIO

import trio

from ustack.cli.common import Formatter, describe_os_error, err, open_stack
from ustack.config import Settings


def add_parser(sub: Any, stack_parent: argparse.ArgumentParser) -> None:
    nc = sub.add_parser(
        "nc",
        parents=[stack_parent],
        formatter_class=Formatter,
        help="netcat through ustack (its own stack)",
        description="netcat through ustack: `nc HOST PORT` or `nc -l PORT`.",
    )
    nc.add_argument("target", nargs="+", metavar="HOST PORT | -l PORT")
    nc.add_argument(
        "-l", "--listen", action="store_true", help="listen on ustack's address"
    )
    nc.add_argument(
        "-z", "--zero", action="store_true", help="only connect, send nothing"
    )
    nc.add_argument(
        "-w", "--wait", type=float, metavar="SECS", help="connect and idle timeout"
    )
    nc.add_argument("-v", "--verbose", action="store_true", help="report on stderr")
    nc.add_argument(
        "-N", action="store_true", help="half-close on EOF (always done; accepted)"
    )
    nc.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    target = args.target
    if args.listen:
        if args.zero:
            raise ValueError("-z and -l do not go together")
        if len(target) == 2:
            if target[0] != args.ip:
                raise ValueError(
                    f"nc -l {target[0]}: ustack listens only on its --ip {args.ip}"
                )
            target = target[1:]
        if len(target) != 1:
            raise ValueError("usage: ustack nc -l PORT")
        args.host, port_text = args.ip, target[0]
    else:
        if len(target) != 2:
            raise ValueError("usage: ustack nc HOST PORT (or -l PORT)")
        args.host, port_text = target
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"nc: port {port_text!r} must be 1..65535")
    args.port = int(port_text)
    if args.wait is not None and not args.wait > 0:
        raise ValueError(f"-w {args.wait:g}: the timeout must be positive")


async def _stdin_chunks(fd: int) -> Any:
    """Read stdin in a thread (abandoned on cancel: os.read is not cancellable)."""
    while True:
        data = await trio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True)
        yield data
        if not data:
            return


async def nc_session(
    stream: trio.abc.HalfCloseableStream,
    stdin_fd: int,
    out: BinaryIO,
    idle: float | None = None,
) -> bool:
    """stdin -> stream (EOF: send_eof), stream -> out; done when the peer
    closes. With `idle`, give up after that long without data either way.
    Returns False if it gave up."""
    timeout = idle if idle is not None else math.inf
    with trio.move_on_after(timeout) as idle_scope:
        async with trio.open_nursery() as nursery:

            async def pump_stdin() -> None:
                async for data in _stdin_chunks(stdin_fd):
                    idle_scope.deadline = trio.current_time() + timeout
                    if not data:
                        await stream.send_eof()
                        return
                    await stream.send_all(data)

            nursery.start_soon(pump_stdin)
            while data := await stream.receive_some():
                idle_scope.deadline = trio.current_time() + timeout
                out.write(data)
                out.flush()
            nursery.cancel_scope.cancel()  # the peer closed: stop reading stdin
    return not idle_scope.cancelled_caught


async def run(args: argparse.Namespace, settings: Settings) -> int:
    wait = args.wait if args.wait is not None else math.inf
    where = f"{args.host} {args.port}"
    async with open_stack(args, settings) as stack:
        if args.listen:
            listener = await stack.listen(args.port, backlog=1)
            if args.verbose:
                err(f"listening on {args.ip} {args.port}")
            async with listener:
                stream = await listener.accept()
            if args.verbose:
                peer = stream.socket.getpeername()
                err(f"connection from {peer[0]} {peer[1]}")
        else:
            try:
                with trio.fail_after(wait):
                    stream = await stack.connect((args.host, args.port))
            except trio.TooSlowError:
                err(f"connect to {where}: timed out after {args.wait:g} s (-w)")
                return 1
            except OSError as exc:
                err(f"connect to {where} failed: {describe_os_error(exc)}")
                return 1
            if args.verbose:
                err(f"connection to {where} port succeeded")
        async with stream:
            if args.zero:
                return 0
            try:
                finished = await nc_session(
                    stream, sys.stdin.fileno(), sys.stdout.buffer, args.wait
                )
            except (OSError, trio.BrokenResourceError) as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                detail = (
                    describe_os_error(cause) if isinstance(cause, OSError) else cause
                )
                err(f"connection to {where}: {detail}")
                return 1
            if not finished:
                if args.verbose:
                    err(f"idle for {args.wait:g} s (-w): closing")
                return 1
    return 0
