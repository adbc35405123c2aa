"""TLS over ustack against a kernel-side HTTPS server with a throwaway
certificate (trustme, made per test; no key is ever written to the repo)."""

from __future__ import annotations

import textwrap

import pytest
from netns import Netns
from ways_in_prelude import run_script

pytestmark = pytest.mark.integration

TLS = textwrap.dedent("""
    import trustme
    CA = trustme.CA()
    SERVER_CTX = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("kernel.test", HOST).configure_cert(SERVER_CTX)
    CLIENT_CTX = ssl.create_default_context()
    CA.configure_trust(CLIENT_CTX)
""")


def test_https_via_trio_sslstream(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import trio
        from ustack.cli.httpclient import http_get

        async def main():
            async with ustack.open_tun_stack(settings=SETTINGS) as stack:
                server = kernel_http(8443, SERVER_CTX)
                tcp = await stack.connect((HOST, 8443))
                tls = trio.SSLStream(tcp, CLIENT_CTX, server_hostname="kernel.test")
                digest = hashlib.sha256()
                result = await http_get(tls, "kernel.test", "/big", digest.update)
                assert result.status == 200 and result.body_bytes == len(BIG)
                assert digest.hexdigest() == BIG_SHA
                assert tls.version().startswith("TLSv1.")
                await tls.aclose()
                # a wrong name is refused by certificate checking
                tcp = await stack.connect((HOST, 8443))
                bad = trio.SSLStream(tcp, CLIENT_CTX, server_hostname="other.test")
                try:
                    await bad.do_handshake()
                except trio.BrokenResourceError as exc:
                    assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
                else:
                    raise AssertionError("a certificate for the wrong name passed")
                await tcp.aclose()
                assert Handler.peers[0][0] == STACK_IP, Handler.peers
                await trio.to_thread.run_sync(server.shutdown)

        trio.run(main)
        print("ok")
        """,
        TLS,
    )
    assert out.strip() == "ok", out


def test_https_httpx_async_uses_start_tls(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import httpx, trio

        async def main():
            async with ustack.open_tun_stack(settings=SETTINGS) as stack:
                server = kernel_http(8443, SERVER_CTX)
                transport = stack.async_httpx_transport(verify=CLIENT_CTX)
                async with httpx.AsyncClient(transport=transport, timeout=30) as c:
                    r = await c.get(f"https://{HOST}:8443/big")  # IP in the cert
                    assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
                assert Handler.peers[0][0] == STACK_IP, Handler.peers
                await trio.to_thread.run_sync(server.shutdown)

        trio.run(main)
        print("ok")
        """,
        TLS,
    )
    assert out.strip() == "ok", out


def test_https_blocking_through_the_bridge(netns: Netns) -> None:
    out = run_script(
        netns,
        """
        import select
        import httpx, requests
        with sync_stack() as st:
            server = kernel_http(8443, SERVER_CTX)
            # http.client over stdlib ssl over the socketpair bridge
            raw = st.create_connection((HOST, 8443), timeout=30).bridge()
            assert select.select([raw], [], [], 0) == ([], [], [])
            tls = CLIENT_CTX.wrap_socket(raw, server_hostname="kernel.test")
            conn = http.client.HTTPSConnection("kernel.test", 8443, context=CLIENT_CTX)
            conn.sock = tls
            conn.request("GET", "/big")
            body = conn.getresponse().read()
            assert hashlib.sha256(body).hexdigest() == BIG_SHA
            conn.close()
            # requests (urllib3 does TLS on the bridge)
            import tempfile
            ca_file = tempfile.mktemp(suffix=".pem")  # the CA certificate only
            CA.cert_pem.write_to_path(ca_file)
            with requests.Session() as session:
                session.mount("https://", st.requests_adapter())
                r = session.get(f"https://{HOST}:8443/big", verify=ca_file, timeout=30)
                assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
            os.unlink(ca_file)
            # httpx sync: start_tls through the bridge
            transport = st.httpx_transport(verify=CLIENT_CTX)
            with httpx.Client(transport=transport, timeout=30) as client:
                r = client.post(f"https://{HOST}:8443/post", content=BIG)
                assert r.text == f"{BIG_SHA} {len(BIG)}", r.text
            assert {peer[0] for peer in Handler.peers} == {STACK_IP}, Handler.peers
            assert len(Handler.peers) == 3
            server.shutdown()
        print("ok")
        """,
        TLS,
    )
    assert out.strip() == "ok", out
