"""The observing and client subcommands: `ss`, `stats`, `trace`, `nc`, and
what `ustack up` adds for them (control socket, --pcap, logging).

Kept apart from cli.py so that file only wires them in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import trio

from ustack.config import Settings

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.state import State
    from ustack.tcp.tcb import Tcb
    from ustack.tcp.timewait import TimeWait

log = logging.getLogger("ustack")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# ----------------------------------------------------------------------
# Parser


def add_up_options(up: argparse.ArgumentParser) -> None:
    up.add_argument(
        "--pcap", type=Path, metavar="FILE", help="write every packet in and out here"
    )
    up.add_argument(
        "--control",
        type=Path,
        metavar="PATH",
        help="control socket (default /run/ustack/IFNAME.sock)",
    )
    up.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log state transitions (-v: INFO, -vv: DEBUG)",
    )
    up.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper)


def add_commands(sub: Any, stack_parent: argparse.ArgumentParser) -> None:
    """Add ss, stats, trace and nc to the `ustack` subparsers."""
    control = argparse.ArgumentParser(add_help=False)
    control.add_argument("--ifname", default="ustack0", help="the stack's TUN device")
    control.add_argument(
        "--control", type=Path, metavar="PATH", help="control socket path"
    )

    ss = sub.add_parser(
        "ss", parents=[control], help="the running stack's connections (like ss -tanoi)"
    )
    ss.add_argument("--state", help="only this state, e.g. time-wait, estab, listen")
    ss.add_argument("--port", type=int, help="only connections with this port")
    ss.add_argument("--json", action="store_true", help="JSON for scripts")
    ss.add_argument(
        "-u", "--udp", action="store_true", help="UDP sockets instead of TCP"
    )
    ss.set_defaults(func=ss_command, set=[])

    stats = sub.add_parser(
        "stats", parents=[control], help="the running stack's counters (like nstat)"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=stats_command, set=[])

    trace = sub.add_parser(
        "trace",
        parents=[control],
        help="ladder diagrams of connections, live or from a pcap file",
    )
    trace.add_argument("file", nargs="?", type=Path, help="a pcap file (else: live)")
    trace.add_argument("--port", type=int, help="only connections with this port")
    trace.add_argument(
        "--left", metavar="IP", help="pcap: draw this address on the left"
    )
    trace.add_argument("--svg", type=Path, metavar="OUT", help="also write an SVG")
    trace.set_defaults(func=trace_command, set=[])

    nc = sub.add_parser(
        "nc", parents=[stack_parent], help="netcat through ustack (its own stack)"
    )
    nc.add_argument("host")
    nc.add_argument("port", type=int)
    nc.set_defaults(func=nc_command)


def control_path_for(args: argparse.Namespace) -> Path:
    from ustack.observe.control import control_path

    return Path(args.control) if args.control else control_path(args.ifname)


# ----------------------------------------------------------------------
# `ustack up` extras


class UpExtras:
    """Logging, pcap capture and the control socket for `ustack up`.

    Use as a context manager around the stack (so the capture also gets the
    shutdown's FINs and RSTs), and start `run(stack)` in the stack's nursery.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pcap: Any = None
        self._pcap_file: BinaryIO | None = None

    def __enter__(self) -> UpExtras:
        args = self.args
        level_name = getattr(args, "log_level", None)
        verbose = getattr(args, "verbose", 0)
        if level_name or verbose:
            level = (
                getattr(logging, level_name)
                if level_name
                else (logging.INFO if verbose == 1 else logging.DEBUG)
            )
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            log.addHandler(handler)
            log.setLevel(level)
        if getattr(args, "pcap", None) is not None:
            import time

            from ustack.observe.pcap import PcapWriter

            self._pcap_file = open(args.pcap, "wb")  # noqa: SIM115 (closed in exit)
            # Stamp packets when the tap sees them: the loop's `now` can lag
            # behind for later batches of one wake-up.
            self.pcap = PcapWriter(self._pcap_file, clock=time.time)
            self.pcap.flush()  # the header, so the file is valid from the start
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None

    async def run(
        self,
        stack: Stack,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        from ustack.observe.control import ControlServer

        if log.isEnabledFor(logging.INFO):
            stack.state_observers.append(log_transition)
        if log.isEnabledFor(logging.DEBUG):
            stack.timer_observers.append(log_timer)
        if self.pcap is not None:
            stack.taps.append(self.pcap.tap)
        server = ControlServer(stack, control_path_for(self.args))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            if self.pcap is not None:
                nursery.start_soon(self._flush_pcap)
            log.info("control socket at %s", server.path)
            task_status.started()

    async def _flush_pcap(self) -> None:
        while self.pcap is not None:
            await trio.sleep(1.0)
            if self.pcap is not None:
                self.pcap.flush()


def log_transition(tcb: Tcb | TimeWait, old: State, new: State, now: float) -> None:
    """A state observer: `10.203.0.1:40000 -> 10.203.0.2:80 ESTABLISHED -> ...`."""
    from ustack.observe.introspect import addr

    log.info(
        "%s -> %s %s -> %s",
        addr(tcb.local_ip, tcb.local_port),
        addr(tcb.remote_ip, tcb.remote_port),
        old.name,
        new.name,
    )


def log_timer(tcb: Tcb, timer: str, now: float) -> None:
    """A timer observer (-vv): `... retransmit timer fired (retries 2, rto 0.8s)`."""
    from ustack.observe.introspect import addr

    log.debug(
        "%s -> %s %s timer fired in %s (retries %d, rto %.3fs)",
        addr(tcb.local_ip, tcb.local_port),
        addr(tcb.remote_ip, tcb.remote_port),
        timer,
        tcb.state.name,
        tcb.retries,
        tcb.rto.rto,
    )


# ----------------------------------------------------------------------
# ss, stats


def _print_table(header: list[str], cells: list[list[str]], title: str) -> None:
    from ustack.observe.introspect import format_plain

    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=True, header_style="bold")
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i in (1, 2) else "left")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
    else:
        for text in format_plain(header, cells):
            print(text)


async def ss_command(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.observe.control import request
    from ustack.observe.introspect import (
        SS_COLUMNS,
        filter_rows,
        normalize_state,
        ss_table,
    )

    state = normalize_state(args.state) if args.state else None
    reply = await request(control_path_for(args), {"cmd": "ss"})
    if args.udp:
        found = list(reply.get("udp", []))
    else:
        found = list(reply["listeners"]) + list(reply["connections"])
    rows = filter_rows(found, state, args.port)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(
            [*SS_COLUMNS, "Timer", "Info"], ss_table(rows), f"ustack {reply['ip']}"
        )
    return 0


async def stats_command(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.observe.control import request

    reply = await request(control_path_for(args), {"cmd": "stats"})
    counters: dict[str, int] = reply["counters"]
    if args.json:
        print(json.dumps(counters, indent=2, sort_keys=True))
    else:
        cells = [[name, str(value)] for name, value in sorted(counters.items())]
        _print_table(["Counter", "Value"], cells, "ustack counters")
    return 0


# ----------------------------------------------------------------------
# trace


def _emit_lines(lines: list[str]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)
        for line in lines:
            style = ""
            if line.startswith("connection "):
                style = "bold"
            elif "RST" in line:
                style = "red"
            elif "<-" in line:
                style = "yellow"
            elif "->" in line or "-->" in line:
                style = "cyan"
            if "(known)" in line:
                style = "green"
            console.print(f"[{style}]{escape(line)}[/]" if style else escape(line))
    else:
        for line in lines:
            print(line)
        sys.stdout.flush()


async def trace_command(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.observe import trace

    if args.file is not None:
        from ustack.observe.pcap import read_pcap_file

        records = read_pcap_file(str(args.file))
        events = trace.segments_from_packets((r.time, r.packet) for r in records)
        lines = trace.ladder_lines(events, left_ip=args.left, port=args.port)
        if args.svg is not None:
            args.svg.write_text(
                trace.ladder_svg(events, left_ip=args.left, port=args.port)
            )
        if not lines:
            print("no TCP connections in", args.file, file=sys.stderr)
        _emit_lines(lines)
        return 0
    return await _live_trace(args)


async def _live_trace(args: argparse.Namespace) -> int:
    from ustack.observe import control, trace

    events: list[trace.Event] = []
    ladder: trace.LiveLadder | None = None
    left_ip: str | None = None
    try:
        async for message in control.subscribe(
            control_path_for(args), {"cmd": "trace", "port": args.port}
        ):
            if message.get("event") == "hello":
                left_ip = str(message["ip"])
                ladder = trace.LiveLadder(left_ip, args.port)
                print(
                    f"tracing ustack {left_ip}"
                    + (f" port {args.port}" if args.port else "")
                    + "; Ctrl-C to stop",
                    file=sys.stderr,
                )
                continue
            if message.get("event") == "dropped":
                print(f"[{message['count']} events dropped]", flush=True)
                continue
            ev = trace.event_from_json(message)
            if ev is None or ladder is None:
                continue
            if args.svg is not None:
                events.append(ev)
            _emit_lines(ladder.feed(ev))
    finally:
        if args.svg is not None and events:
            args.svg.write_text(
                trace.ladder_svg(events, left_ip=left_ip, port=args.port, source="live")
            )
    return 0


# ----------------------------------------------------------------------
# nc


async def _stdin_chunks(fd: int) -> Any:
    """Read stdin in a thread (abandoned on cancel: os.read is not cancellable)."""
    while True:
        data = await trio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True)
        yield data
        if not data:
            return


async def nc_session(
    stream: trio.abc.HalfCloseableStream, stdin_fd: int, out: BinaryIO
) -> None:
    """stdin -> stream (EOF: send_eof), stream -> out; done when the peer closes."""
    async with trio.open_nursery() as nursery:

        async def pump_stdin() -> None:
            async for data in _stdin_chunks(stdin_fd):
                if not data:
                    await stream.send_eof()
                    return
                await stream.send_all(data)

        nursery.start_soon(pump_stdin)
        while data := await stream.receive_some():
            out.write(data)
            out.flush()
        nursery.cancel_scope.cancel()  # the peer closed: stop reading stdin


async def nc_command(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.cli.common import err as _err
    from ustack.cli.common import open_stack as _open_stack

    async with _open_stack(args, settings) as stack:
        try:
            stream = await stack.connect((args.host, args.port))
        except OSError as exc:
            _err(f"connect to {args.host}:{args.port} failed: {exc.strerror or exc}")
            return 1
        async with stream:
            try:
                await nc_session(stream, sys.stdin.fileno(), sys.stdout.buffer)
            except (OSError, trio.BrokenResourceError) as exc:
                _err(f"connection to {args.host}:{args.port}: {exc}")
                return 1
    return 0


# ----------------------------------------------------------------------
# `ustack get` progress bar


def normalize_state(name: str) -> str:
    from ustack.observe.introspect import normalize_state as _normalize

    return _normalize(name)


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
