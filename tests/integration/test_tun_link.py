"""TunLink against the real kernel, inside a throwaway namespace."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from netns import Netns

pytestmark = pytest.mark.integration

PING_READER = textwrap.dedent("""
    import subprocess, trio
    from ustack.link.tun import TunLink

    link = TunLink.open(ifname="ustack0", host_ip="10.203.0.1/24", mtu=1400,
                        txqueuelen=4321, offload=False)
    show = subprocess.run(["ip", "-o", "link", "show", "ustack0"],
                          capture_output=True, text=True, check=True).stdout
    assert "mtu 1400" in show and "qlen 4321" in show and ",UP" in show, show
    addr = subprocess.run(["ip", "-o", "addr", "show", "ustack0"],
                          capture_output=True, text=True, check=True).stdout
    assert "inet 10.203.0.1/24" in addr and "inet6" not in addr, addr
    with open("/proc/sys/net/ipv6/conf/ustack0/disable_ipv6") as f:
        assert f.read().strip() == "1"

    # Ping the stack's side (nobody answers): the kernel routes it into the TUN.
    ping = subprocess.Popen(["ping", "-c", "3", "-i", "0.2", "-W", "1",
                             "10.203.0.2"], stdout=subprocess.DEVNULL)

    async def main():
        requests = []
        with trio.fail_after(10):
            while len(requests) < 2:
                await link.wait_readable()
                for pkt in link.read_batch(64):
                    assert pkt[0] >> 4 == 4
                    proto, src, dst = pkt[9], pkt[12:16], pkt[16:20]
                    ihl = (pkt[0] & 15) * 4
                    if proto == 1 and pkt[ihl] == 8:  # ICMP echo request
                        assert src == bytes([10, 203, 0, 1]), src
                        assert dst == bytes([10, 203, 0, 2]), dst
                        requests.append(pkt)
        assert link.read_batch(0) == []
    trio.run(main)
    ping.wait(10)
    link.write(b"\\x45" + bytes(19))  # junk the kernel drops; must not raise
    link.close()
    link.close()  # idempotent
    print("ok", link.dropped_non_ipv4, link.tx_dropped)
""")


def test_tun_link_reads_icmp_echo_request(netns: Netns) -> None:
    out = netns.python(PING_READER, timeout=30).stdout.decode()
    assert out.startswith("ok"), out


def test_busy_name_is_a_setup_error(netns: Netns) -> None:
    code = textwrap.dedent("""
        from ustack.errors import SetupError
        from ustack.link.tun import TunLink
        first = TunLink.open()
        try:
            TunLink.open()
        except SetupError as exc:
            print(exc)
        first.close()
        TunLink.open().close()  # the name is free again
    """)
    out = netns.python(code, timeout=30).stdout.decode()
    assert "ustack0" in out and "busy" in out, out


def test_without_cap_net_admin_is_a_setup_error(netns: Netns) -> None:
    code = textwrap.dedent("""
        from ustack.errors import SetupError
        from ustack.link.tun import TunLink
        try:
            TunLink.open()
        except SetupError as exc:
            print(exc)
    """)
    out = netns.run(
        "setpriv",
        "--bounding-set",
        "-net_admin",
        "--inh-caps",
        "-net_admin",
        sys.executable,
        "-c",
        code,
        timeout=30,
    ).stdout.decode()
    assert "needs root" in out and "sudo" in out, out


def test_missing_dev_net_tun_is_a_setup_error(netns: Netns) -> None:
    code = textwrap.dedent("""
        from ustack.errors import SetupError
        from ustack.link.tun import TunLink
        try:
            TunLink.open()
        except SetupError as exc:
            print(exc)
    """)
    # A private mount namespace where /dev/net is an empty tmpfs.
    proc = netns.run(
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs none /dev/net && exec "$0" -c "$1"',
        sys.executable,
        code,
        timeout=30,
    )
    out = proc.stdout.decode()
    assert "modprobe tun" in out, (out, proc.stderr)
    assert subprocess.run(["test", "-c", "/dev/net/tun"]).returncode == 0
