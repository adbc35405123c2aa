"""The blocking socket (`ustack.sync`) against the kernel, in a namespace."""

from __future__ import annotations

import pytest
from netns import Netns
from ways_in_prelude import run_script

pytestmark = pytest.mark.integration


def test_http_client_get_and_post_5mb(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        with sync_stack() as st:
            server = kernel_http(8000)
            conn = http.client.HTTPConnection(HOST, 8000, timeout=30)
            conn.sock = st.create_connection((HOST, 8000), timeout=30)
            conn.request("GET", "/big")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and len(body) == len(BIG), resp.status
            assert hashlib.sha256(body).hexdigest() == BIG_SHA
            # POST on the same (kept-alive) connection
            conn.request("POST", "/post", body=BIG)
            resp = conn.getresponse()
            assert resp.read().decode() == f"{BIG_SHA} {len(BIG)}"
            assert Handler.peers[0][0] == STACK_IP, Handler.peers  # via ustack
            assert Handler.peers[0] == Handler.peers[1], Handler.peers
            conn.close()
            server.shutdown()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_threaded_echo_server_50_kernel_clients(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        class Echo(socketserver.StreamRequestHandler):
            def handle(self):
                while line := self.rfile.readline():
                    self.wfile.write(line.upper())

        with sync_stack() as st:
            server = ustack.sync.ThreadingTCPServer(st, ("", 7007), Echo)
            threading.Thread(target=server.serve_forever, args=(0.05,),
                             daemon=True).start()
            results, errors = {}, []

            def client(i):
                try:
                    with socket.create_connection((STACK_IP, 7007), timeout=30) as s:
                        lines = [os.urandom(600).hex().encode() + b"\\n"
                                 for _ in range(20)]
                        s.sendall(b"".join(lines))
                        s.shutdown(socket.SHUT_WR)
                        got = b""
                        while chunk := s.recv(65536):
                            got += chunk
                        results[i] = got == b"".join(lines).upper()
                except Exception as exc:
                    errors.append(repr(exc))

            threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            assert len(results) == 50 and all(results.values()), results
            assert st.stack.counters["PassiveOpens"] >= 50, st.stack.counters
            server.shutdown()
            server.server_close()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_timeout_on_silent_peer_keeps_late_data(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import time
        with sync_stack() as st:
            sock, peer, _ = connected_pair(st)
            sock.settimeout(0.2)
            assert sock.gettimeout() == 0.2
            try:
                sock.recv(100)
            except TimeoutError:
                pass
            else:
                raise AssertionError("recv on a silent peer did not time out")
            assert socket.timeout is TimeoutError
            sock.setblocking(False)
            try:
                sock.recv(100)
            except BlockingIOError:
                pass
            else:
                raise AssertionError("non-blocking recv did not raise")
            # Data that arrives after a timeout is still there (nothing lost).
            peer.sendall(b"late")
            sock.settimeout(5)
            assert sock.recv(100) == b"late"
            # accept() times out too
            srv = st.socket()
            srv.bind(("", 9001))
            srv.listen()
            srv.settimeout(0.2)
            try:
                srv.accept()
            except TimeoutError:
                pass
            else:
                raise AssertionError("accept did not time out")
            srv.close()
            sock.close()
            assert peer.recv(10) == b""  # our FIN
            peer.close()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_close_from_another_thread_wakes_recv(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        with sync_stack() as st:
            sock, peer, _ = connected_pair(st)
            sock.settimeout(None)
            outcome, started = [], threading.Event()

            def reader():
                started.set()
                try:
                    outcome.append(sock.recv(100))
                except OSError as exc:
                    outcome.append(exc)

            t = threading.Thread(target=reader)
            t.start()
            started.wait()
            import time
            deadline = time.monotonic() + 10
            while not st.call_sync(lambda: sock._waiting):  # the reader waits
                assert time.monotonic() < deadline, "recv never started waiting"
            sock.close()
            t.join(10)
            assert not t.is_alive(), "recv still blocked after close()"
            assert isinstance(outcome[0], OSError), outcome
            assert outcome[0].errno == 9, outcome  # EBADF
            peer.settimeout(5)
            assert peer.recv(10) == b""  # the close sent our FIN
            try:
                sock.recv(1)
            except OSError as exc:
                assert exc.errno == 9
            else:
                raise AssertionError("recv after close did not raise")
            peer.close()
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_socket_api_details(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        with sync_stack() as st:
            sock, peer, addr = connected_pair(st)
            with sock:
                assert addr[0] == STACK_IP and sock.getpeername() == (HOST, 9000)
                assert sock.getsockname() == (STACK_IP, addr[1])
                import select
                try:  # no descriptor: select refuses it (bridge() gives one)
                    select.select([sock], [], [], 0)
                except ValueError:
                    pass
                else:
                    raise AssertionError("select accepted a SyncSocket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert sock.send(b"abc") == 3
                peer.sendall(b"12345678")
                buf = bytearray(8)
                n = sock.recv_into(buf)
                while n < 8:
                    n += sock.recv_into(memoryview(buf)[n:])
                assert buf == b"12345678", buf
                f = sock.makefile("rwb")
                peer.sendall(b"line one\\nline two\\n")
                assert f.readline() == b"line one\\n"
                assert f.readline() == b"line two\\n"
                f.write(b"via makefile")
                f.flush()
                got = b""
                while len(got) < 15:
                    got += peer.recv(100)
                assert got == b"abcvia makefile", got
                sock.shutdown(socket.SHUT_WR)
                assert peer.recv(10) == b""
                peer.sendall(b"after our FIN")
                assert sock.recv(100) == b"after our FIN"
                f.close()
            try:
                st.create_connection((HOST, 9999), timeout=5)
            except ConnectionRefusedError:
                pass
            else:
                raise AssertionError("connect to a closed port did not fail")
            assert sock.fileno() == -1
        print("ok")
        """,
    )
    assert out.strip() == "ok", out


def test_setup_errors_reach_the_caller(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        with sync_stack() as st:
            try:
                with ustack.sync.open_tun_stack():  # ustack0 is taken
                    pass
            except ustack.SetupError as exc:
                print("setup error:", exc)
            try:
                st.call_sync(lambda: st.socket())  # from the stack's own thread
            except RuntimeError as exc:
                print("own thread:", exc)
        try:
            st.socket()
        except RuntimeError as exc:
            print("after close:", exc)
        """,
    )
    lines = out.splitlines()
    assert lines[0].startswith("setup error:") and "ustack0" in lines[0], out
    assert lines[1].startswith("own thread:"), out
    assert lines[2].startswith("after close:"), out
