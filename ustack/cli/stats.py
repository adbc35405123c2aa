"""`ustack stats`: the running stack's counters, like nstat."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ustack.cli.common import Formatter, control_parent, control_path_for
from ustack.cli.output import print_table
from ustack.config import Settings


def add_parser(sub: Any) -> None:
    stats = sub.add_parser(
        "stats",
        parents=[control_parent()],
        formatter_class=Formatter,
        help="the running stack's counters (like nstat)",
    )
    stats.add_argument("--json", action="store_true", help="JSON for scripts")
    stats.set_defaults(func=run, set=[])


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ustack.observe.control import request

    reply = await request(control_path_for(args), {"cmd": "stats"})
    counters: dict[str, int] = reply["counters"]
    if args.json:
        print(json.dumps(counters, indent=2, sort_keys=True))
    else:
        cells = [[name, str(value)] for name, value in sorted(counters.items())]
        print_table(["Counter", "Value"], cells, "ustack counters")
    return 0
