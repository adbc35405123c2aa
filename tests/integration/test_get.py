"""`ustack get`: ustack as the client, a kernel http.server as the server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netns import USTACK_DEFAULT_ARGS, Netns, ustack_command

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("megabytes", [5, 50])
def test_get_from_kernel_http_server(
    netns: Netns, tmp_path: Path, megabytes: int
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    data = os.urandom(megabytes * 1024 * 1024)
    (served / "file").write_bytes(data)
    # 10.203.0.1 exists only once ustack's TUN is up, so bind every address.
    server = netns.popen(
        sys.executable,
        "-m",
        "http.server",
        "8000",
        "--bind",
        "0.0.0.0",
        "--directory",
        str(served),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        netns.wait_listening(8000)
        out = tmp_path / "out"
        proc = netns.run(
            *ustack_command(),
            "get",
            "http://10.203.0.1:8000/file",
            "-o",
            str(out),
            *USTACK_DEFAULT_ARGS,
            "--set",
            "msl=0.5",
            timeout=300,
        )
        assert out.exists(), proc
        got = out.read_bytes()
        assert len(got) == len(data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    finally:
        server.terminate()
        server.wait(10)
