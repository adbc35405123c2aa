"""The http service (port 80) against curl in the namespace."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import TIME_FACTOR, UstackProcess

pytestmark = pytest.mark.integration

BASE = "http://10.203.0.2"
BIG = 100 * 1024 * 1024
UstackUp = Callable[..., UstackProcess]


def pattern(n: int) -> bytes:
    """The /bytes/N body: byte i is i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def test_pattern_matches_services_definition() -> None:
    from ustack.services.httpd import pattern_bytes

    for n in (0, 1, 250, 251, 252, 100_000):
        assert bytes(pattern_bytes(n)) == pattern(n)


@pytest.fixture
def http_root(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from the http root\n")
    (root / "blob.bin").write_bytes(os.urandom(300_000))
    return root


def curl(stack: UstackProcess, *args: str, timeout: float = 60) -> bytes:
    timeout *= TIME_FACTOR  # a backstop: 100 MB under qemu's TCG can take 3 min
    return stack.run(
        "curl", "-sS", "--fail", "--max-time", str(timeout), *args, timeout=timeout + 10
    ).stdout


def test_index_lists_http_root(ustack_up: UstackUp, http_root: Path) -> None:
    stack = ustack_up("--http-root", str(http_root))
    out = curl(stack, "-i", f"{BASE}/").decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert "content-type: text/html" in head.lower(), head
    assert "hello.txt" in body and "blob.bin" in body, body


def test_get_and_head_file(ustack_up: UstackUp, http_root: Path) -> None:
    stack = ustack_up("--http-root", str(http_root))
    blob = (http_root / "blob.bin").read_bytes()
    assert curl(stack, f"{BASE}/blob.bin") == blob
    head = curl(stack, "-I", f"{BASE}/blob.bin").decode().lower()
    assert head.startswith("http/1.1 200"), head
    assert f"content-length: {len(blob)}" in head, head
    missing = stack.run(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
        f"{BASE}/no-such-file",
        timeout=30,
    )
    assert missing.stdout == b"404"


def test_keep_alive_reuses_connection(ustack_up: UstackUp) -> None:
    stack = ustack_up()
    proc = stack.run(
        "curl",
        "-sS",
        "-v",
        "--fail",
        "--max-time",
        "20",
        f"{BASE}/bytes/1000",
        f"{BASE}/bytes/2000",
        timeout=30,
    )
    assert proc.stdout == pattern(1000) + pattern(2000)
    log = proc.stderr.decode(errors="replace")
    assert "Re-using existing connection" in log, log
    assert "Content-Length: 1000" in log.replace("content-length", "Content-Length")


# Both TUN paths: offload (virtio-net header, 64 KB segments, partial
# checksums; the default) and plain packets with full checksums.
PATHS = pytest.mark.parametrize("path_flag", ["--offload", "--no-offload"])


@PATHS
def test_get_100_mb(ustack_up: UstackUp, tmp_path: Path, path_flag: str) -> None:
    stack = ustack_up(path_flag)
    out = tmp_path / "big"
    stats = curl(
        stack,
        "-o",
        str(out),
        "-w",
        "%{http_code} %{size_download}",
        f"{BASE}/bytes/{BIG}",
        timeout=180,
    )
    assert stats.split() == [b"200", str(BIG).encode()]
    got = hashlib.sha256(out.read_bytes()).hexdigest()
    assert got == hashlib.sha256(pattern(BIG)).hexdigest()


@PATHS
def test_post_100_mb_sha256(
    ustack_up: UstackUp, tmp_path: Path, path_flag: str
) -> None:
    stack = ustack_up(path_flag)
    body = tmp_path / "body"
    digest = hashlib.sha256()
    with body.open("wb") as f:
        for _ in range(100):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
    answer = curl(
        stack,
        "--data-binary",
        f"@{body}",
        "-H",
        "Content-Type: application/octet-stream",
        f"{BASE}/sha256",
        timeout=180,
    )
    assert answer.decode().strip() == digest.hexdigest()


@PATHS
def test_200_concurrent_downloads(ustack_up: UstackUp, path_flag: str) -> None:
    stack = ustack_up(path_flag)
    urls = []
    for _ in range(200):
        urls += [f"{BASE}/bytes/10000", "-o", "/dev/null"]
    out = curl(
        stack,
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "200",
        "-w",
        "%{http_code} %{size_download}\\n",
        *urls,
        timeout=120,
    )
    lines = out.decode().splitlines()
    assert len(lines) == 200, out
    assert set(lines) == {"200 10000"}, sorted(set(lines))
