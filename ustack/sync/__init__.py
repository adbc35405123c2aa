"""Blocking, stdlib-shaped sockets over a stack running in a background thread.

with ustack.sync.open_tun_stack(host_ip="10.203.0.1/24", ip="10.203.0.2") as st:
    with st.create_connection(("10.203.0.1", 8000), timeout=5) as sock:
        sock.sendall(b"hello")
"""

from ustack.sync.runner import SyncStack, open_tun_stack, run_stack
from ustack.sync.server import ThreadingTCPServer
from ustack.sync.socket import SyncSocket

__all__ = [
    "SyncSocket",
    "SyncStack",
    "ThreadingTCPServer",
    "open_tun_stack",
    "run_stack",
]
