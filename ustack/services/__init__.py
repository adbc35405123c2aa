"""Classic services on the public trio Stream/Listener interfaces.

They run unchanged on ustack's `TcpListener` and on trio's own TCP listeners.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio

from .base import Handler, guarded, log
from .httpd import HttpService, pattern_bytes, serve_http
from .simple import (
    CHARGEN_CYCLE,
    handle_chargen,
    handle_discard,
    handle_echo,
    serve_chargen,
    serve_discard,
    serve_echo,
)
from .udp import UDP_SERVICES, run_udp_services

# name -> well-known port
SERVICES: dict[str, int] = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}


def make_handler(
    name: str, http_root: Path | None = None, *, keepalive: bool = False
) -> Handler:
    """The guarded connection handler for service `name`."""
    handlers: dict[str, Handler] = {
        "echo": handle_echo,
        "discard": handle_discard,
        "chargen": handle_chargen,
    }
    if name == "http":
        handler: Handler = HttpService(http_root, list(SERVICES.items()))
    elif name in handlers:
        handler = handlers[name]
    else:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    return guarded(handler, name, keepalive=keepalive)


async def serve_service(
    name: str,
    listener: trio.abc.Listener[Any],
    http_root: Path | None = None,
    *,
    keepalive: bool = False,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `name` on any trio listener (ustack's or trio's) until cancelled."""
    handler = make_handler(name, http_root, keepalive=keepalive)
    await trio.serve_listeners(handler, [listener], task_status=task_status)


async def run_services(
    stack: Any,
    names: list[str],
    http_root: Path | None,
    keepalive: bool = False,
    *,
    backlog: int = 128,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on each service's port via `stack.listen` and serve until cancelled."""
    for name in names:
        make_handler(name, http_root)  # validate every name before listening
    async with trio.open_nursery() as nursery:
        for name in names:
            listener = await stack.listen(SERVICES[name], backlog=backlog)
            serve = partial(serve_service, keepalive=keepalive)
            await nursery.start(serve, name, listener, http_root)
        if hasattr(stack, "udp_bind"):  # stand-ins for a Stack may be TCP only
            await nursery.start(run_udp_services, stack, names)  # echo, discard
        task_status.started()


__all__ = [
    "CHARGEN_CYCLE",
    "SERVICES",
    "UDP_SERVICES",
    "HttpService",
    "guarded",
    "handle_chargen",
    "handle_discard",
    "handle_echo",
    "log",
    "make_handler",
    "pattern_bytes",
    "run_services",
    "run_udp_services",
    "serve_chargen",
    "serve_discard",
    "serve_echo",
    "serve_http",
    "serve_service",
]
