"""`ustack up`: the stack and its services, with logging, --pcap, the control
socket for ss/stats/trace, and --netns."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import trio

from ustack.cli.common import Formatter, err, open_stack
from ustack.config import Settings
from ustack.errors import SetupError

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.state import State
    from ustack.tcp.tcb import Tcb
    from ustack.tcp.timewait import TimeWait

ALL_SERVICES = "echo,discard,chargen,http"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = logging.getLogger("ustack")


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


def add_parser(sub: Any, stack_parent: argparse.ArgumentParser) -> None:
    up = sub.add_parser(
        "up",
        parents=[stack_parent],
        formatter_class=Formatter,
        help="run the stack and services",
    )
    up.add_argument(
        "--netns",
        metavar="NAME",
        help="create network namespace NAME, run everything in it (enter with "
        "ip netns exec NAME ...), delete it at exit",
    )
    up.add_argument(
        "--services",
        default=ALL_SERVICES,
        help="comma-separated subset of the services, or 'all'",
    )
    up.add_argument("--http-root", type=Path, help="directory the http service serves")
    up.add_argument(
        "--keepalive", action="store_true", help="SO_KEEPALIVE on service connections"
    )
    up.add_argument(
        "--pcap", type=Path, metavar="FILE", help="write every packet in and out here"
    )
    up.add_argument(
        "--control",
        type=Path,
        metavar="PATH",
        help="control socket (default /run/ustack/IFNAME[@NETNS].sock)",
    )
    up.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log state transitions (-v: INFO, -vv: DEBUG)",
    )
    up.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper)
    up.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    args.services = parse_services(args.services)
    if args.http_root is not None and not args.http_root.is_dir():
        raise ValueError(f"--http-root {args.http_root} is not a directory")
    if args.pcap is not None and not args.pcap.parent.is_dir():
        raise ValueError(
            f"--pcap {args.pcap}: directory {args.pcap.parent} does not exist"
        )
    if args.netns is not None:
        from ustack.cli.netns import check_name

        check_name(args.netns)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.services import SERVICES, run_services

    services = " ".join(f"{n}:{SERVICES[n]}" for n in args.services) or "none"
    where = f" in netns {args.netns}" if args.netns else ""
    ready = (
        f"ustack ready: {args.ip} on {args.ifname}{where} "
        f"(kernel side {args.host_ip}); services {services}"
    )
    extras = UpExtras(args)  # logging, --pcap, control socket
    with extras, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_stack(args, settings) as stack, trio.open_nursery() as nursery:
            await nursery.start(
                run_services, stack, args.services, args.http_root, args.keepalive
            )
            await nursery.start(extras.run, stack)
            print(ready, flush=True)
            if args.netns:
                err(
                    f"enter the namespace with: sudo ip netns exec {args.netns} "
                    "bash (it is deleted when ustack exits)"
                )
            if sys.stdout.isatty():
                _pretty_summary(args, settings)
            async for signum in signals:
                err(f"{signal.Signals(signum).name}, shutting down")
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


def control_path(args: argparse.Namespace) -> Path:
    from ustack.observe.control import control_path as default_path

    return Path(args.control) if args.control else default_path(args.ifname)


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

            try:
                self._pcap_file = open(args.pcap, "wb")  # noqa: SIM115 (closed in exit)
            except OSError as exc:
                raise SetupError(f"--pcap {args.pcap}: {exc.strerror or exc}") from None
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
        server = ControlServer(stack, control_path(self.args))
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
