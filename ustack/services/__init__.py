"""Classic services: echo, discard, chargen and HTTP.

Each exists twice over one set of routes and patterns: as a protocol object
(ustack.protocol callbacks; `ustack up` runs these from its packet loop, and
stream_driver runs them on any trio Stream, e.g. kernel sockets) and as a
stream handler on the public trio Stream/Listener interfaces (runs unchanged
on ustack's `TcpListener` and on trio's own TCP listeners).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio

from ustack.protocol import ProtocolFactory

from .base import Handler, guarded, log
from .http_app import HttpApp
from .http_protocol import HttpProtocol
from .httpd import HttpService, pattern_bytes, serve_http
from .protocols import ChargenProtocol, DiscardProtocol, EchoProtocol
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


def make_protocol_factory(name: str, http_root: Path | None = None) -> ProtocolFactory:
    """A factory of protocol objects for service `name`."""
    if name == "http":
        app = HttpApp(http_root, list(SERVICES.items()))
        return partial(HttpProtocol, app)
    simple: dict[str, ProtocolFactory] = {
        "echo": EchoProtocol,
        "discard": DiscardProtocol,
        "chargen": ChargenProtocol,
    }
    if name not in simple:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    return simple[name]


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
    """Serve each service on its port until cancelled: as protocol objects
    run by the packet loop where the stack offers `serve_protocol` (ustack's
    Stack), else as stream handlers on `stack.listen` (any trio listener)."""
    for name in names:
        make_handler(name, http_root)  # validate every name before listening
    async with trio.open_nursery() as nursery:
        if hasattr(stack, "serve_protocol"):
            nursery.start_soon(
                _serve_protocols, stack, names, http_root, keepalive, backlog
            )
        else:
            for name in names:
                listener = await stack.listen(SERVICES[name], backlog=backlog)
                serve = partial(serve_service, keepalive=keepalive)
                await nursery.start(serve, name, listener, http_root)
        if hasattr(stack, "udp_bind"):  # stand-ins for a Stack may be TCP only
            await nursery.start(run_udp_services, stack, names)  # echo, discard
        task_status.started()


async def _serve_protocols(
    stack: Any, names: list[str], http_root: Path | None, keepalive: bool, backlog: int
) -> None:
    """Listen with a protocol factory per service; stop listening when cancelled
    (connections already made finish on their own, or at stack shutdown)."""
    sockets = [
        stack.serve_protocol(
            SERVICES[name],
            make_protocol_factory(name, http_root),
            backlog,
            keepalive=keepalive,
        )
        for name in names
    ]
    try:
        await trio.sleep_forever()
    finally:
        for sock in sockets:
            sock.close_nowait()


__all__ = [
    "CHARGEN_CYCLE",
    "ChargenProtocol",
    "DiscardProtocol",
    "EchoProtocol",
    "HttpApp",
    "HttpProtocol",
    "SERVICES",
    "UDP_SERVICES",
    "HttpService",
    "guarded",
    "handle_chargen",
    "handle_discard",
    "handle_echo",
    "log",
    "make_handler",
    "make_protocol_factory",
    "pattern_bytes",
    "run_services",
    "run_udp_services",
    "serve_chargen",
    "serve_discard",
    "serve_echo",
    "serve_http",
    "serve_service",
]
