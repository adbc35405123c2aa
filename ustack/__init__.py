"""ustack: a user-space TCP/IP stack in Python over a Linux TUN device."""

from ustack.adapters.trio_socket import trio_socket_factory
from ustack.api import Socket, Stack, TcpListener, TcpStream, open_tun_stack
from ustack.config import Settings
from ustack.errors import SetupError
from ustack.tcp.state import State

__all__ = [
    "Settings",
    "SetupError",
    "Socket",
    "Stack",
    "State",
    "TcpListener",
    "TcpStream",
    "open_tun_stack",
    "trio_socket_factory",
]
__version__ = "0.1.0"
