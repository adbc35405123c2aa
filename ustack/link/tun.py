"""A Linux TUN device as a `Link` (python-pytun, IFF_TUN | IFF_NO_PI).

The kernel side of the device gets `host_ip` (e.g. 10.203.0.1/24); the stack
answers as another address in that subnet, which the kernel routes into the
device. Never give the kernel the stack's own address.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

import pytun
import trio

from ustack.errors import SetupError
from ustack.link import vnet

SIOCSIFTXQLEN = 0x8943
# One read must hold any packet the kernel may hand us, whatever the MTU.
READ_SIZE = 65535


class TunLink:
    """Whole IPv4 packets to and from a TUN device. See `ustack.link.base.Link`."""

    def __init__(
        self, device: pytun.TunTapDevice, mtu: int, offload: bool = False
    ) -> None:
        self._dev: pytun.TunTapDevice | None = device
        self.name: str = device.name
        self.mtu = mtu
        # With offload every packet starts with a virtio-net header
        # (ustack.link.vnet); the stack adds and strips it.
        self.vnet_hdr = offload
        self._fd = device.fileno()
        self._read_size = max(READ_SIZE, mtu + 4) + (vnet.LENGTH if offload else 0)
        self._version_at = vnet.LENGTH if offload else 0
        self.dropped_non_ipv4 = 0
        self.tx_dropped = 0

    @classmethod
    def open(
        cls,
        ifname: str = "ustack0",
        host_ip: str = "10.203.0.1/24",
        mtu: int = 1500,
        txqueuelen: int = 10000,
        offload: bool = True,
    ) -> TunLink:
        """Create and configure the device; raise `SetupError` on failure.

        `offload` turns on checksum and TCP segmentation offload: the kernel
        then exchanges up to 64 KB TCP segments with the stack whatever the
        MTU, and neither side computes payload checksums.
        """
        iface = ipaddress.IPv4Interface(host_ip)
        device = _create(ifname, offload)
        try:
            if offload:
                fcntl.ioctl(
                    device.fileno(),
                    vnet.TUNSETOFFLOAD,
                    vnet.TUN_F_CSUM | vnet.TUN_F_TSO4,
                )
            _disable_ipv6(ifname)
            device.addr = str(iface.ip)
            device.netmask = str(iface.network.netmask)
            device.mtu = mtu
            _set_txqueuelen(ifname, txqueuelen)
            device.up()
        except OSError as exc:
            device.close()
            raise SetupError(f"configuring TUN device {ifname} failed: {exc}") from exc
        os.set_blocking(device.fileno(), False)
        return cls(device, mtu, offload)

    def fileno(self) -> int:
        return self._fd

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._fd)

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        packets: list[bytes] = []
        fd, size, read = self._fd, self._read_size, os.read
        at = self._version_at
        while len(packets) < max_packets:
            try:
                packet = read(fd, size)
            except BlockingIOError:
                break
            if len(packet) <= at or packet[at] >> 4 != 4:
                self.dropped_non_ipv4 += 1
                continue
            packets.append(packet)
        return packets

    def write(self, packet: bytes) -> None:
        try:
            os.write(self._fd, packet)
        except BlockingIOError:
            self.tx_dropped += 1
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.tx_dropped += 1

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        # Outside trio.run nobody can be waiting on the fd.
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.notify_closing(self._fd)
        dev.close()

    def __enter__(self) -> TunLink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _create(ifname: str, offload: bool = False) -> pytun.TunTapDevice:
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI
    if offload:
        flags |= pytun.IFF_VNET_HDR
    try:
        return pytun.TunTapDevice(name=ifname, flags=flags)
    except OSError as exc:
        code = exc.errno if exc.errno is not None else (exc.args or [None])[0]
        if code in (errno.EPERM, errno.EACCES):
            msg = (
                f"creating TUN device {ifname} needs root (CAP_NET_ADMIN): "
                "run with sudo"
            )
        elif code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            msg = (
                "/dev/net/tun is missing: run `modprobe tun`, or in a container "
                "pass the device through (e.g. --device /dev/net/tun)"
            )
        elif code == errno.EBUSY:
            msg = (
                f"TUN device name {ifname} is busy (another process holds it): "
                "stop it or choose another --ifname"
            )
        elif code == errno.EINVAL:
            msg = (
                f"cannot create TUN device {ifname}: a non-TUN interface with "
                "that name exists, or the name is invalid; choose another --ifname"
            )
        else:
            msg = f"creating TUN device {ifname} failed: {exc}"
        raise SetupError(msg) from exc


def _disable_ipv6(ifname: str) -> None:
    """Stop the kernel sending IPv6 (router solicitations) into the device.

    Must happen before the device is up. Failures are harmless: the link
    drops non-IPv4 packets anyway.
    """
    conf = Path("/proc/sys/net/ipv6/conf")
    target = conf / ifname / "disable_ipv6"
    if not target.exists():
        target = conf / "default" / "disable_ipv6"
        if not target.exists():
            return  # no IPv6 in this kernel / namespace
    with contextlib.suppress(OSError):
        target.write_text("1\n")


def _set_txqueuelen(ifname: str, qlen: int) -> None:
    """Raise the queue length: the default 500 drops silently under load."""
    ifreq = struct.pack("16si", ifname.encode(), qlen).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFTXQLEN, ifreq)
