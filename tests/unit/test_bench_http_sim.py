"""tools/bench_http_sim.py: the in-process HTTP keep-alive harness."""

from __future__ import annotations

import pytest
from bench_http_sim import REQUEST, part_of, run


@pytest.mark.parametrize(("n", "conns"), [(1, 1), (7, 3), (120, 50)])
def test_the_harness_answers_every_request(n: int, conns: int) -> None:
    # run() raises unless every client got n // conns (or one more) complete
    # 200 responses with the /bytes/1000 body, each checked byte for byte.
    assert run(n, conns) == n


def test_the_request_is_wrks() -> None:
    assert REQUEST.startswith(b"GET /bytes/1000 HTTP/1.1\r\n")
    assert REQUEST.endswith(b"\r\n\r\n")


def test_profile_parts_by_file() -> None:
    assert part_of("/x/ustack/tcp/tcb.py").startswith("TCB")
    assert part_of("/x/ustack/wire/tcp.py").startswith("wire")
    assert part_of("/x/ustack/stack.py").startswith("stack glue")
    assert part_of("/x/ustack/services/http_app.py").startswith("HTTP")
    assert part_of("/v/site-packages/h11/_connection.py") == "h11"
    assert part_of("~").startswith("other")
