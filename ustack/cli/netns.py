"""`ustack up --netns NAME`: run the stack in a network namespace of its own.

The namespace is created like `ip netns add NAME` (so `ip netns exec NAME ...`
enters it), this process moves into it with setns(2) before the TUN device
exists (the device, its kernel-side address and every socket of the stack
then live there), and it is deleted at exit whatever the exit path.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from pathlib import Path

from ustack.errors import SetupError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000  # <sched.h>
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"--netns {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )


def _ip(*args: str) -> None:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"running ip {' '.join(args)} failed: {exc}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SetupError(
            f"ip {' '.join(args)} failed: {detail[-1] if detail else proc.returncode}"
        )


def create_and_enter(name: str) -> None:
    """Create namespace `name` and move this process (its calling thread, so
    call it before starting any thread) into it; lo comes up there."""
    if os.geteuid() != 0:
        raise SetupError("--netns creates a network namespace: run as root (sudo)")
    if (NETNS_DIR / name).exists():
        raise SetupError(
            f"network namespace {name} already exists: pick another --netns "
            f"or remove it (ip netns delete {name})"
        )
    _ip("netns", "add", name)
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise SetupError(f"entering namespace {name}: {os.strerror(code)}")
        finally:
            os.close(fd)
        _ip("link", "set", "lo", "up")
    except BaseException:
        delete(name)
        raise


def delete(name: str) -> None:
    """`ip netns delete NAME` (processes still inside keep it alive until
    they exit, as with ip itself)."""
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
