"""The `ustack` command: `up`, `get`, `nc`, `ss`, `stats`, `trace`.

`main.py` parses arguments and runs `up` and `get`; `tools.py` holds the
observing commands and `nc`; `common.py` what they share.
"""

from ustack.cli.main import (
    ALL_SERVICES,
    build_parser,
    build_settings,
    main,
    parse_services,
    parse_url,
)

__all__ = [
    "ALL_SERVICES",
    "build_parser",
    "build_settings",
    "main",
    "parse_services",
    "parse_url",
]
