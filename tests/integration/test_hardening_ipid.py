"""nmap's view of ustack's IP IDs (issue 10 item 3), in the test's namespace.

Before: one global incrementing counter ("IP ID Sequence Generation:
Incremental"), so `nmap -sI` could use ustack as an idle-scan zombie. Now
every DF datagram carries ID 0 (RFC 6864 4.1), as Linux ("All zeros").
nmap probes only 10.203.0.2, which lives inside the namespace; the stack runs
with --no-offload so nmap's capture sees complete checksums.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable

import pytest
from netns import UstackProcess

pytestmark = pytest.mark.integration

STACK = "10.203.0.2"
UstackUp = Callable[..., UstackProcess]


def test_nmap_os_detection_sees_no_incremental_ip_id(ustack_up: UstackUp) -> None:
    if shutil.which("nmap") is None:
        pytest.fail("nmap is not installed: run .ci/setup.sh as root")
    stack = ustack_up("--no-offload")
    out = stack.run(
        "nmap", "-n", "-Pn", "-O", "-v", "--max-os-tries", "1",
        "-p", "80,4444", STACK,
        timeout=180,
    ).stdout.decode(errors="replace")
    found = re.search(r"IP ID Sequence Generation: (.+)", out)
    assert found, out
    assert found.group(1).strip() == "All zeros", out
