"""The `ustack` command: a module per subcommand.

`main.py` parses and dispatches; `up.py`, `get.py`, `nc.py` open a stack of
their own (flags in `common.py`); `ss.py`, `stats.py`, `trace.py` ask a
running `ustack up` over its control socket; `netns.py` is `up --netns`;
`output.py` prints tables and ladders; `httpclient.py` is `get`'s HTTP/1.1.
"""

from ustack.cli.get import parse_url
from ustack.cli.main import build_parser, build_settings, main
from ustack.cli.up import ALL_SERVICES, parse_services

__all__ = [
    "ALL_SERVICES",
    "build_parser",
    "build_settings",
    "main",
    "parse_services",
    "parse_url",
]
