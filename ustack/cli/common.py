"""Helpers every command shares: one-line errors and opening a stack."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ustack.config import Settings
from ustack.errors import SetupError


def err(message: str) -> None:
    print(f"ustack: {message}", file=sys.stderr, flush=True)


def open_stack(args: argparse.Namespace, settings: Settings) -> Any:
    import ustack  # lazily: the package API may be incomplete while testing

    if getattr(args, "impair", None) is not None:
        return open_impaired_stack(args, settings)
    open_tun_stack = getattr(ustack, "open_tun_stack", None)
    if open_tun_stack is None:
        raise SetupError("this ustack build has no open_tun_stack")
    kwargs = {"offload": True} if getattr(args, "offload", False) else {}
    return open_tun_stack(
        ifname=args.ifname,
        host_ip=args.host_ip,
        ip=args.ip,
        mtu=args.mtu,
        settings=settings,
        **kwargs,
    )


@asynccontextmanager
async def open_impaired_stack(
    args: argparse.Namespace, settings: Settings
) -> AsyncIterator[Any]:
    """Like open_tun_stack, with the TUN link wrapped in an ImpairedLink."""
    import ustack
    from ustack.link.impair import ImpairedLink
    from ustack.link.tun import TunLink

    config = args.impair
    tun = TunLink.open(
        ifname=args.ifname,
        host_ip=args.host_ip,
        mtu=args.mtu,
        offload=bool(getattr(args, "offload", False)),
    )
    link = ImpairedLink.from_config(tun, config)
    err(f"impairment: {config.describe()}")
    try:
        async with ustack.Stack(
            link, ip=args.ip, settings=settings, network=args.host_ip
        ) as stack:
            yield stack
    finally:
        link.close()
        err(f"impairment counters: {link.summary()}")
