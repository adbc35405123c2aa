"""`ustack ss`: the running stack's connections, with ss(8)'s habits.

Accepts ss's flags (`-t -a -n -o -i` are what it always shows; `-l` only
listeners, `-H` no header), `--state` (repeatable, with ss's groups) and a
filter expression like ss's: `state time-wait dst 10.203.0.1 sport = :80`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ustack.cli.common import (
    Formatter,
    control_parent,
    control_path_for,
    split_addr,
)
from ustack.cli.output import print_table
from ustack.config import Settings

_ALL = (
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "CLOSE-WAIT",
    "LAST-ACK",
    "CLOSING",
    "LISTEN",
)
# ss(8)'s state groups ("STATE-FILTER").
GROUPS = {
    "all": _ALL,
    "connected": tuple(s for s in _ALL if s != "LISTEN"),
    "synchronized": tuple(s for s in _ALL if s not in ("LISTEN", "SYN-SENT")),
    "bucket": ("SYN-RECV", "TIME-WAIT"),
    "big": tuple(s for s in _ALL if s not in ("SYN-RECV", "TIME-WAIT")),
}

Row = dict[str, Any]


@dataclass
class RowFilter:
    """What to show: states (None: all) and address/port predicates."""

    states: set[str] | None = None
    tests: list[Callable[[Row], bool]] = field(default_factory=list)

    def add_state(self, name: str) -> None:
        from ustack.observe.introspect import normalize_state

        key = name.strip().lower()
        names = GROUPS[key] if key in GROUPS else (normalize_state(name),)
        self.states = (self.states or set()) | set(names)

    def __call__(self, row: Row) -> bool:
        if self.states is not None and row["state"] not in self.states:
            return False
        return all(test(row) for test in self.tests)


def _endpoint_test(key: str, spec: str) -> Callable[[Row], bool]:
    """`dst 10.203.0.1`, `dst 10.203.0.0/24`, `dst 10.203.0.1:80`, `dst :80`."""
    host, sep, port_text = spec.rpartition(":") if ":" in spec else (spec, "", "")
    want_port = None
    if sep:
        if not port_text.isdigit():
            raise ValueError(f"{key} {spec!r}: the port must be a number")
        want_port = int(port_text)
    net = None
    if host not in ("", "*"):
        try:
            net = ipaddress.IPv4Network(host, strict=False)
        except ValueError:
            raise ValueError(f"{key} {spec!r}: not an IPv4 address or prefix") from None
    column = "peer" if key == "dst" else "local"

    def test(row: Row) -> bool:
        ip, port = split_addr(row[column])
        if want_port is not None and port != want_port:
            return False
        if net is None:
            return True
        try:
            return ipaddress.IPv4Address(ip) in net
        except ValueError:
            return False  # 0.0.0.0:* of a listener matches no address filter

    return test


_PORT_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "eq": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "ne": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "gt": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "lt": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "ge": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "le": lambda a, b: a <= b,
}


def parse_filter(tokens: list[str], states: list[str] | None = None) -> RowFilter:
    """ss's filter words: `state S` / `exclude`-free subset, `src|dst ADDR`,
    `sport|dport [OP] [:]PORT`; `and` between them is optional."""
    result = RowFilter()
    for name in states or []:
        result.add_state(name)
    words = [w for w in tokens if w not in ("and", "&&")]
    i = 0

    def need(what: str) -> str:
        nonlocal i
        if i >= len(words):
            raise ValueError(f"ss filter: {what} needs a value")
        i += 1
        return words[i - 1]

    while i < len(words):
        word = words[i].lower()
        i += 1
        if word == "state":
            result.add_state(need("state"))
        elif word in ("src", "dst"):
            result.tests.append(_endpoint_test(word, need(word)))
        elif word in ("sport", "dport"):
            value = need(word)
            op = "="
            if value in _PORT_OPS:
                op, value = value, need(word)
            port_text = value.lstrip(":")
            if not port_text.isdigit():
                raise ValueError(f"ss filter: {word} {value!r} is not a port")
            result.tests.append(_port_test(word, _PORT_OPS[op], int(port_text)))
        else:
            raise ValueError(
                f"ss filter: unknown word {words[i - 1]!r} (known: state, src, "
                "dst, sport, dport)"
            )
    return result


def _port_test(
    key: str, op: Callable[[int, int], bool], want: int
) -> Callable[[Row], bool]:
    column = "local" if key == "sport" else "peer"

    def test(row: Row) -> bool:
        port = split_addr(row[column])[1]
        return port is not None and op(port, want)

    return test


def add_parser(sub: Any) -> None:
    ss = sub.add_parser(
        "ss",
        parents=[control_parent()],
        formatter_class=Formatter,
        help="the running stack's connections (like ss -tanoi)",
        description="The running stack's connections, like ss -tanoi. FILTER is "
        "ss's: state S, src|dst ADDR[/PREFIX][:PORT], sport|dport [OP] [:]PORT.",
    )
    ss.add_argument("filter", nargs="*", metavar="FILTER", help="ss-style filter")
    ss.add_argument(
        "--state",
        action="append",
        help="only this state or group (repeatable): estab, time-wait, listen, "
        "..., connected, synchronized, bucket, big, all",
    )
    ss.add_argument("--port", type=int, help="only connections with this port")
    ss.add_argument("-l", "--listening", action="store_true", help="only listeners")
    ss.add_argument("-a", "--all", action="store_true", help="all (the default)")
    ss.add_argument("-H", "--no-header", action="store_true", help="no header line")
    for flag in ("-t", "-n", "-o", "-i", "-e", "-m", "-p"):
        ss.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    ss.add_argument("--json", action="store_true", help="JSON for scripts")
    ss.add_argument(
        "-u", "--udp", action="store_true", help="UDP sockets instead of TCP"
    )
    ss.set_defaults(func=run, check=check, set=[])


def build_filter(args: argparse.Namespace) -> RowFilter:
    states = list(args.state or [])
    if args.listening:
        states.append("listen")
    row_filter = parse_filter(list(args.filter), states)
    if args.port is not None:
        port = args.port
        row_filter.tests.append(
            lambda row: (
                port in (split_addr(row["local"])[1], split_addr(row["peer"])[1])
            )
        )
    return row_filter


def check(args: argparse.Namespace) -> None:
    build_filter(args)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.observe.control import request
    from ustack.observe.introspect import SS_COLUMNS, ss_table

    row_filter = build_filter(args)
    reply = await request(control_path_for(args), {"cmd": "ss"})
    if args.udp:
        found = list(reply.get("udp", []))
    else:
        found = list(reply["listeners"]) + list(reply["connections"])
    rows = [row for row in found if row_filter(row)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(
            [*SS_COLUMNS, "Timer", "Info"],
            ss_table(rows),
            f"ustack {reply['ip']}",
            header=not args.no_header,
        )
    return 0
