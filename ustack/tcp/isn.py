"""Initial sequence numbers (RFC 6528) and timestamp offsets (RFC 7323 7.1).

ISN = M + F(4-tuple, secret): M is a clock ticking every 4 microseconds, F a
keyed hash, so the ISN of one connection tells nothing about another's.
The timestamp clock gets an offset F(address pair, secret), as Linux's
secure_tcp_ts_off: connections between the same two hosts share one
timestamp clock, which the peer's RFC 6191 / tcp_tw_reuse checks rely on.

Both clocks must not restart with the process, or a restarted stack would
hand out ISNs and TSvals below the ones of its previous life: the stack
reads `system_clock()` (CLOCK_BOOTTIME: system-wide, monotonic) and keeps
the secret in a root-only file mixed with the kernel's boot id, so it lasts
exactly one boot, like Linux's net_secret. The TCB itself reads no clock:
the stack passes the ISN and the offset in.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

SECRET_PATH = Path("/run/ustack/tcp-secret")  # beside the control sockets
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def system_clock() -> float:
    """Seconds on a monotonic clock shared by every process since boot."""
    return time.clock_gettime(_CLOCK)


def boot_secret(path: Path = SECRET_PATH) -> bytes:
    """A 16-byte key that every ustack process of this boot shares.

    Read from `path` (created with mode 0600 if missing) and mixed with the
    boot id; where neither can be had (not root, no /proc) a fresh random
    key, which then lasts only as long as the process.
    """
    try:
        boot_id = _BOOT_ID.read_bytes().strip()
    except OSError:
        return os.urandom(16)
    try:
        stored = path.read_bytes()
    except FileNotFoundError:
        stored = b""
    except OSError:
        return os.urandom(16)
    if len(stored) != 32:
        stored = os.urandom(32)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(stored)
        except OSError:
            return os.urandom(16)
    return hashlib.blake2s(boot_id, key=stored, digest_size=16).digest()


class IsnGenerator:
    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def __call__(
        self,
        now: float,
        local_ip: bytes,
        local_port: int,
        remote_ip: bytes,
        remote_port: int,
    ) -> int:
        """The ISN at `now` (seconds of `system_clock()`)."""
        material = (
            local_ip
            + remote_ip
            + local_port.to_bytes(2, "big")
            + remote_port.to_bytes(2, "big")
        )
        digest = hashlib.blake2s(material, key=self._key, digest_size=4).digest()
        ticks = int(now * 250_000)  # RFC 6528 3: a 4-microsecond timer
        return (ticks + int.from_bytes(digest, "big")) & 0xFFFFFFFF

    def ts_offset(self, local_ip: bytes, remote_ip: bytes, clock_shift: float) -> int:
        """The offset a TCB adds to its 1 ms clock for TSval: the keyed hash
        of the address pair, plus `clock_shift` (system clock minus the
        stack's clock) so that TSval follows `system_clock()`."""
        material = b"ts" + local_ip + remote_ip
        digest = hashlib.blake2s(material, key=self._key, digest_size=4).digest()
        return (int.from_bytes(digest, "big") + int(clock_shift * 1000)) & 0xFFFFFFFF
