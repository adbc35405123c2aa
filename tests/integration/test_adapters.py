"""Existing client code on ustack: requests, httpx (sync and trio), trio's
socket factory; each fetches from a kernel-side server through ustack."""

from __future__ import annotations

import pytest
from netns import Netns
from ways_in_prelude import run_script

pytestmark = pytest.mark.integration


def test_requests_session(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import requests
        with sync_stack() as st:
            server = kernel_http(8000)
            with requests.Session() as session:
                session.mount("http://", st.requests_adapter())
                r = session.get(f"http://{HOST}:8000/big", timeout=30)
                assert r.status_code == 200
                assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
                r = session.post(f"http://{HOST}:8000/post", data=BIG, timeout=30)
                assert r.text == f"{BIG_SHA} {len(BIG)}", r.text
            # both requests through ustack, on one pooled connection
            assert Handler.peers[0][0] == STACK_IP, Handler.peers
            assert Handler.peers[0] == Handler.peers[1], Handler.peers
            assert st.stack.counters["ActiveOpens"] == 1, st.stack.counters
            server.shutdown()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_httpx_sync_client(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import httpx
        with sync_stack() as st:
            server = kernel_http(8000)
            with httpx.Client(transport=st.httpx_transport(), timeout=30) as client:
                r = client.get(f"http://{HOST}:8000/big")
                assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
                r = client.post(f"http://{HOST}:8000/post", content=BIG)
                assert r.text == f"{BIG_SHA} {len(BIG)}", r.text
            assert Handler.peers[0][0] == STACK_IP, Handler.peers
            assert Handler.peers[0] == Handler.peers[1], Handler.peers
            server.shutdown()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_httpx_async_client_on_trio_stack(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import httpx, trio

        async def main():
            async with ustack.open_tun_stack(settings=SETTINGS) as stack:
                server = kernel_http(8000)
                transport = stack.async_httpx_transport()
                async with httpx.AsyncClient(transport=transport, timeout=30) as c:
                    r = await c.get(f"http://{HOST}:8000/big")
                    assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
                    r = await c.post(f"http://{HOST}:8000/post", content=BIG)
                    assert r.text == f"{BIG_SHA} {len(BIG)}", r.text
                assert Handler.peers[0][0] == STACK_IP, Handler.peers
                assert Handler.peers[0] == Handler.peers[1], Handler.peers
                await trio.to_thread.run_sync(server.shutdown)

        trio.run(main)
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_unmodified_trio_code_via_socket_factory(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import trio

        async def fetch(port):  # ordinary trio code: nothing ustack-specific
            stream = await trio.open_tcp_stream(HOST, port)
            async with stream:
                await stream.send_all(b"ping")
                await stream.send_eof()
                got = b""
                while data := await stream.receive_some():
                    got += data
                return got, stream.socket.getsockname()

        async def upper(stream):  # ordinary trio server handler
            async with stream:
                while data := await stream.receive_some():
                    await stream.send_all(data.upper())

        def kernel_echo_once(listener):
            peer, _ = listener.accept()
            with peer:
                while data := peer.recv(100):
                    peer.sendall(data + b"!")

        def kernel_client(port):
            with socket.create_connection((STACK_IP, port), timeout=10) as s:
                s.sendall(b"hello")
                s.shutdown(socket.SHUT_WR)
                got = b""
                while data := s.recv(100):
                    got += data
                return got

        async def main():
            async with ustack.open_tun_stack(settings=SETTINGS) as stack:
                trio.socket.set_custom_socket_factory(ustack.trio_socket_factory(stack))
                listener = socket.create_server((HOST, 9000))
                t = threading.Thread(target=kernel_echo_once, args=(listener,))
                t.start()
                got, local = await fetch(9000)
                assert got == b"ping!", got
                assert local[0] == STACK_IP, local  # the connection was ustack's
                await trio.to_thread.run_sync(t.join)
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(trio.serve_tcp, upper, 9100)
                    assert len(listeners) == 1  # IPv4 only: AF_INET6 was refused
                    reply = await trio.to_thread.run_sync(kernel_client, 9100)
                    assert reply == b"HELLO", reply
                    nursery.cancel_scope.cancel()
                assert stack.counters["PassiveOpens"] == 1, stack.counters

        trio.run(main)
        print("ok")
        """,
    )
    assert out.strip() == "ok", out
