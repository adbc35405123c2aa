"""What every command shares: one-line errors, the stack flags, their checks,
and opening a stack."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ustack.config import Settings
from ustack.errors import SetupError

DEFAULT_IFNAME = "ustack0"
DEFAULT_HOST_IP = "10.203.0.1/24"
DEFAULT_IP = "10.203.0.2"
# IPv4's minimum MTU (RFC 791: every host takes 68-byte datagrams) and the
# largest a TUN device accepts (its MTU is a 16-bit length).
MTU_MIN, MTU_MAX = 68, 65535


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or action.default
            in (
                None,
                False,
                [],
                0,
                argparse.SUPPRESS,
            )
        ):
            return text
        return text + " (default: %(default)s)"


class Failure(Exception):
    """A command failed; the message is the whole story (printed in one line,
    exit status 1)."""


def err(message: str) -> None:
    print(f"ustack: {message}", file=sys.stderr, flush=True)


_CONNECT_HINTS = {
    errno.ECONNREFUSED: "connection refused (the peer answered the SYN with RST: "
    "nothing listens there)",
    errno.ETIMEDOUT: "timed out (no answer to the SYN and its retransmissions)",
    errno.ECONNRESET: "connection reset by the peer",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable (outside ustack's subnet)",
}


def describe_os_error(exc: OSError) -> str:
    """One phrase for an OSError: the known errnos in plain words, else the
    message without repeating the errno's name."""
    if exc.errno in _CONNECT_HINTS:
        return _CONNECT_HINTS[exc.errno]
    text = exc.strerror or str(exc)
    if exc.errno is not None:
        name = os.strerror(exc.errno)
        head, sep, detail = text.partition(": ")
        if sep and head == name and detail.lower() in name.lower():
            text = name  # "Connection refused: connection refused by peer"
    return text


def split_addr(addr: str) -> tuple[str, int | None]:
    """`10.203.0.1:80` -> ("10.203.0.1", 80); `0.0.0.0:*` -> ("0.0.0.0", None)."""
    host, _, port = addr.rpartition(":")
    return host, (int(port) if port.isdigit() else None)


def stack_parent() -> argparse.ArgumentParser:
    """Flags of every command that opens its own stack (up, get, nc)."""
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument("--ifname", default=DEFAULT_IFNAME, help="TUN device name")
    stack.add_argument(
        "--host-ip", default=DEFAULT_HOST_IP, help="kernel side address/prefix"
    )
    stack.add_argument("--ip", default=DEFAULT_IP, help="ustack's own address")
    stack.add_argument(
        "--mtu", type=int, default=1500, help=f"link MTU ({MTU_MIN}..{MTU_MAX})"
    )
    stack.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="checksum and segmentation offload on the TUN device (virtio-net "
        "header): 64 KB segments between kernel and ustack whatever the MTU "
        "(default: on; --no-offload for plain packets with full checksums)",
    )
    stack.add_argument(
        "--impair",
        metavar="SPEC",
        help="impair the link, e.g. loss=5%%,dup=1%%,reorder=5%%,delay=20ms,"
        "jitter=5ms,seed=7 or drop=fin:in:1 (see README)",
    )
    stack.add_argument(
        "--impair-process",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the --impair path in its own OS process with its own clock, "
        "so stalls of the stack's process do not stall (and batch) the path "
        "(default: off, in the stack's own loop)",
    )
    stack.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Settings field (repeatable), e.g. --set msl=1; "
        "--set help lists them all",
    )
    return stack


# ----------------------------------------------------------------------
# Checking the stack flags (usage errors: ValueError, exit status 2)


def check_addresses(ifname: str, host_ip: str, ip: str, mtu: int) -> None:
    """Refuse, in one line naming the flag, what would fail later or silently
    misbehave: malformed addresses, a stack address outside the kernel side's
    subnet or equal to it, loopback/multicast subnets, an MTU a TUN refuses."""
    if not ifname or len(ifname) > 15 or "/" in ifname or ifname.strip() != ifname:
        raise ValueError(f"--ifname {ifname!r}: 1-15 characters, no '/' or spaces")
    try:
        iface = ipaddress.IPv4Interface(host_ip)
    except ValueError:
        raise ValueError(
            f"--host-ip {host_ip!r} is not an IPv4 address/prefix "
            f"(e.g. {DEFAULT_HOST_IP})"
        ) from None
    if "/" not in host_ip:
        raise ValueError(f"--host-ip {host_ip!r} needs a prefix length, e.g. /24")
    net = iface.network
    if net.prefixlen > 30:
        raise ValueError(
            f"--host-ip {host_ip}: a /{net.prefixlen} leaves no room for ustack's "
            "address; use /30 or shorter"
        )
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        raise ValueError(
            f"--host-ip {host_ip} is a loopback/multicast/unspecified address; "
            f"use a private subnet such as {DEFAULT_HOST_IP}"
        )
    if iface.ip in (net.network_address, net.broadcast_address):
        raise ValueError(f"--host-ip {host_ip} is the subnet's network/broadcast")
    try:
        own = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(
            f"--ip {ip!r} is not an IPv4 address (e.g. {DEFAULT_IP})"
        ) from None
    if own == iface.ip:
        raise ValueError(
            f"--ip {ip} is the kernel side's address (--host-ip {host_ip}); "
            "give ustack another address in that subnet"
        )
    if own not in net:
        raise ValueError(f"--ip {ip} is outside --host-ip's subnet {net}")
    if own in (net.network_address, net.broadcast_address):
        raise ValueError(f"--ip {ip} is the network/broadcast address of {net}")
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise ValueError(f"--mtu {mtu}: must be between {MTU_MIN} and {MTU_MAX}")


def check_free(ifname: str, host_ip: str, ip: str) -> None:
    """Refuse (SetupError, exit 1) a device name or subnet already in use in
    this network namespace: a second stack on the same device or addresses
    would come up but never get the kernel's packets."""
    devices = _kernel_devices()
    if ifname in devices:
        raise SetupError(
            f"network device {ifname} already exists (another ustack?): "
            "stop it or pass another --ifname (and --host-ip/--ip)"
        )
    net = ipaddress.IPv4Interface(host_ip).network
    own = ipaddress.IPv4Address(ip)
    for name, addresses in devices.items():
        for address in addresses:
            if address.network.overlaps(net) or address.ip == own:
                raise SetupError(
                    f"--host-ip {host_ip}: {address} is already on {name}; "
                    "pick another subnet with --host-ip and --ip"
                )


def _kernel_devices() -> dict[str, list[ipaddress.IPv4Interface]]:
    """Every network device of this namespace with its IPv4 addresses (from
    netlink via `ip -j`: /sys/class/net may show another namespace)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, check=True, timeout=10
        ).stdout
        devices = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}  # no iproute2: the TUN set-up reports real conflicts itself
    found: dict[str, list[ipaddress.IPv4Interface]] = {}
    for dev in devices:
        addresses = found.setdefault(str(dev.get("ifname")), [])
        for info in dev.get("addr_info", []):
            if info.get("family") == "inet":
                addresses.append(
                    ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                )
    return found


# ----------------------------------------------------------------------
# Opening a stack


def open_stack(args: argparse.Namespace, settings: Settings) -> Any:
    import ustack  # lazily: the package API may be incomplete while testing

    if getattr(args, "impair", None) is not None:
        return open_impaired_stack(args, settings)
    open_tun_stack = getattr(ustack, "open_tun_stack", None)
    if open_tun_stack is None:
        raise SetupError("this ustack build has no open_tun_stack")
    check_free(args.ifname, args.host_ip, args.ip)
    return open_tun_stack(
        ifname=args.ifname,
        host_ip=args.host_ip,
        ip=args.ip,
        mtu=args.mtu,
        settings=settings,
        offload=bool(getattr(args, "offload", True)),
    )


@asynccontextmanager
async def open_impaired_stack(
    args: argparse.Namespace, settings: Settings
) -> AsyncIterator[Any]:
    """Like open_tun_stack, with the TUN link wrapped in an ImpairedLink."""
    import ustack
    from ustack.link.impair import ImpairedLink
    from ustack.link.impair_proc import SocketLink, spawn_impaired
    from ustack.link.tun import TunLink

    check_free(args.ifname, args.host_ip, args.ip)
    config = args.impair
    tun = TunLink.open(
        ifname=args.ifname,
        host_ip=args.host_ip,
        mtu=args.mtu,
        offload=bool(getattr(args, "offload", False)),
    )
    link: ImpairedLink | SocketLink
    if getattr(args, "impair_process", False):
        try:
            link = spawn_impaired(tun, config)
        except BaseException:
            tun.close()
            raise
        err(f"impairment (own process): {config.describe()}")
    else:
        link = ImpairedLink.from_config(tun, config)
        err(f"impairment: {config.describe()}")
    try:
        async with ustack.Stack(
            link, ip=args.ip, settings=settings, network=args.host_ip
        ) as stack:
            yield stack
    finally:
        link.close()
        tun.close()  # ImpairedLink closed it already (idempotent)
        err(f"impairment counters: {link.summary()}")


# ----------------------------------------------------------------------
# Finding a running `ustack up` (ss, stats, trace)


def control_parent() -> argparse.ArgumentParser:
    control = argparse.ArgumentParser(add_help=False)
    control.add_argument(
        "--ifname",
        help="the stack's TUN device (default: the one stack running in this "
        "network namespace)",
    )
    control.add_argument(
        "--control", type=Path, metavar="PATH", help="control socket path"
    )
    return control


def control_path_for(args: argparse.Namespace) -> Path:
    """--control, else the socket for --ifname, else the only live stack's
    socket in this network namespace (SetupError naming them if several)."""
    from ustack.observe.control import control_path, running_stacks

    if getattr(args, "control", None):
        return Path(args.control)
    if getattr(args, "ifname", None):
        return control_path(args.ifname)
    found = running_stacks()
    if len(found) == 1:
        return found[0][1]
    if not found:
        raise SetupError(
            "no `ustack up` is running in this network namespace "
            "(nothing serves /run/ustack/*.sock here)"
        )
    names = ", ".join(name for name, _ in found)
    raise SetupError(f"several stacks run here ({names}): pass --ifname")
