"""`ustack trace`: ladder diagrams of connections, live or from a capture.

Filters like tcpdump's habits: `--port N`, `--host IP`; `-c N` stops after N
segments; `-w FILE` (live) also saves the traced packets as pcap.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path
from typing import Any

from ustack.cli.common import (
    Failure,
    Formatter,
    control_parent,
    control_path_for,
    split_addr,
)
from ustack.cli.output import emit_lines
from ustack.config import Settings


def add_parser(sub: Any) -> None:
    trace = sub.add_parser(
        "trace",
        parents=[control_parent()],
        formatter_class=Formatter,
        help="ladder diagrams of connections, live or from a pcap/pcapng file",
    )
    trace.add_argument(
        "file", nargs="?", type=Path, help="a pcap or pcapng file (else: live)"
    )
    trace.add_argument("--port", type=int, help="only connections with this port")
    trace.add_argument(
        "--host", metavar="IP", help="only segments from or to this address"
    )
    trace.add_argument(
        "-c", "--count", type=int, metavar="N", help="stop after N segments"
    )
    trace.add_argument(
        "-w",
        "--write",
        type=Path,
        metavar="FILE",
        help="live: also write the traced packets to FILE (pcap)",
    )
    trace.add_argument(
        "--left", metavar="IP", help="from a file: draw this address on the left"
    )
    trace.add_argument("--svg", type=Path, metavar="OUT", help="also write an SVG")
    trace.set_defaults(func=run, check=check, set=[])


def check(args: argparse.Namespace) -> None:
    if args.host is not None:
        try:
            ipaddress.IPv4Address(args.host)
        except ValueError:
            raise ValueError(f"--host {args.host!r} is not an IPv4 address") from None
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count {args.count}: must be at least 1")
    if args.port is not None and not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: must be 1..65535")
    if args.write is not None and args.file is not None:
        raise ValueError("-w/--write is for live traces (the file is a capture)")
    for flag, path in (("-w", args.write), ("--svg", args.svg)):
        if path is not None and not path.parent.is_dir():
            raise ValueError(f"{flag} {path}: directory {path.parent} does not exist")


def _host_of(addr: str) -> str:
    return addr.rpartition(":")[0]


def _keep(ev: Any, host: str | None) -> bool:
    """The --host filter, for segments (src/dst) and state notes (local/peer)."""
    if host is None:
        return True
    ends = (ev.src, ev.dst) if hasattr(ev, "src") else (ev.local, ev.peer)
    return host in (_host_of(ends[0]), _host_of(ends[1]))


def _limit(events: list[Any], count: int | None) -> list[Any]:
    """The events up to and including the count-th segment."""
    from ustack.observe.trace import Segment

    if count is None:
        return events
    out, seen = [], 0
    for ev in events:
        if seen >= count:
            break
        out.append(ev)
        seen += isinstance(ev, Segment)
    return out


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.file is None:
        return await _live(args)
    from ustack.observe import trace
    from ustack.observe.pcap import PcapError, read_pcap_file

    try:
        records = read_pcap_file(str(args.file))
    except PcapError as exc:
        raise Failure(f"{args.file}: {exc}") from None
    except OSError as exc:
        raise Failure(f"{args.file}: {exc.strerror or exc}") from None
    events: list[Any] = trace.segments_from_packets((r.time, r.packet) for r in records)
    if args.port is not None:
        events = [
            e
            for e in events
            if args.port in (split_addr(e.src)[1], split_addr(e.dst)[1])
        ]
    events = _limit([e for e in events if _keep(e, args.host)], args.count)
    lines = trace.ladder_lines(events, left_ip=args.left, port=args.port)
    if args.svg is not None:
        args.svg.write_text(trace.ladder_svg(events, left_ip=args.left, port=args.port))
    if not lines:
        print("no TCP connections in", args.file, file=sys.stderr)
    emit_lines(lines)
    return 0


async def _live(args: argparse.Namespace) -> int:
    from ustack.observe import control, trace
    from ustack.observe.pcap import PcapWriter

    events: list[trace.Event] = []
    ladder: trace.LiveLadder | None = None
    left_ip: str | None = None
    writer = PcapWriter(args.write.open("wb"), flush_bytes=0) if args.write else None
    segments = 0
    try:
        async for message in control.subscribe(
            control_path_for(args), {"cmd": "trace", "port": args.port}
        ):
            if message.get("event") == "hello":
                left_ip = str(message["ip"])
                ladder = trace.LiveLadder(left_ip, args.port)
                where = "".join(
                    f" {name} {value}"
                    for name, value in (("port", args.port), ("host", args.host))
                    if value is not None
                )
                print(
                    f"tracing ustack {left_ip}{where}; Ctrl-C to stop",
                    file=sys.stderr,
                )
                continue
            if message.get("event") == "dropped":
                print(f"[{message['count']} events dropped]", flush=True)
                continue
            ev = trace.event_from_json(message)
            if ev is None or ladder is None or not _keep(ev, args.host):
                continue
            if writer is not None and message.get("event") == "packet":
                import base64

                writer.write(time.time(), base64.b64decode(str(message["packet"])))
            if args.svg is not None:
                events.append(ev)
            emit_lines(ladder.feed(ev))
            if isinstance(ev, trace.Segment):
                segments += 1
                if args.count is not None and segments >= args.count:
                    return 0
        raise Failure("the stack stopped (its control socket closed)")
    finally:
        if writer is not None:
            writer.close()
        if args.svg is not None and events:
            args.svg.write_text(
                trace.ladder_svg(events, left_ip=left_ip, port=args.port, source="live")
            )
