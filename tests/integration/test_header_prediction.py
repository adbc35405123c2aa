"""Header prediction on the real path: a kernel client uploads to ustack's
discard service through the TUN device (offload on, timestamps and SACK as
Linux negotiates them), and nearly every data segment ustack receives takes
the fast path (TCPHPHits, Linux's counter name); the rest (the handshake's
last ACK, the FIN) go the generic RFC 9293 3.10.7.4 way."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from netns import UstackProcess, ustack_command

pytestmark = pytest.mark.integration
UstackUp = Callable[..., UstackProcess]

UPLOAD = """
import socket, sys
s = socket.create_connection(("10.203.0.2", 9), timeout=20)
s.sendall(bytes(int(sys.argv[1])))
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
"""


def test_in_order_upload_is_header_predicted(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    stack.python(UPLOAD, "2000000", timeout=60)
    out = stack.run(*ustack_command(), "stats", "--json", timeout=30).stdout
    counters: dict[str, int] = json.loads(out)
    in_segs = counters["InSegs"]
    hits = counters.get("TCPHPHits", 0)
    # 2 MB arrive in at least 2e6 / 65535 segments (offload may merge them).
    assert hits >= 2_000_000 // 65535, counters
    assert hits + counters.get("TCPHPAcks", 0) >= in_segs * 0.8, counters
