"""Code shared by the "ways in" tests (blocking socket, adapters, TLS).

Each test runs a script in its own namespace: this module's PRELUDE, then the
test's body. The script brings ustack up on a TUN device (10.203.0.2, kernel
side 10.203.0.1) and starts kernel-side servers bound to 10.203.0.1 as
threads, so every byte crosses ustack's TCP and the kernel's.
"""

from __future__ import annotations

import textwrap

from netns import Netns

PRELUDE = textwrap.dedent('''
    import hashlib, http.client, http.server, os, socket, socketserver, ssl
    import sys, threading
    import ustack, ustack.sync
    from ustack import Settings

    HOST, STACK_IP = "10.203.0.1", "10.203.0.2"
    SETTINGS = Settings(msl=0.5, shutdown_grace=2.0)
    BIG = os.urandom(5_000_000)
    BIG_SHA = hashlib.sha256(BIG).hexdigest()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        peers = []  # (ip, port) of every connection's requests, in order

        def log_message(self, *args):
            pass

        def _reply(self, body, ctype="application/octet-stream"):
            Handler.peers.append(self.client_address)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(BIG if self.path == "/big" else b"hello from the kernel")

        def do_POST(self):
            left, digest = int(self.headers["Content-Length"]), hashlib.sha256()
            total = left
            while left:
                chunk = self.rfile.read(min(left, 65536))
                assert chunk, "short body"
                digest.update(chunk)
                left -= len(chunk)
            self._reply(f"{digest.hexdigest()} {total}".encode(), "text/plain")

    class KernelHttp(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self):  # skip getfqdn(): no DNS look-up from the netns
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = HOST, self.server_address[1]

    def kernel_http(port, context=None):
        """A kernel-side HTTP(S) server on HOST:port, served by a thread."""
        server = KernelHttp((HOST, port), Handler)
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def sync_stack():
        return ustack.sync.open_tun_stack(settings=SETTINGS)

    def connected_pair(st, port=9000):
        """(ustack SyncSocket, kernel socket) connected to each other."""
        listener = socket.create_server((HOST, port))
        sock = st.create_connection((HOST, port), timeout=5)
        peer, addr = listener.accept()
        listener.close()
        return sock, peer, addr
''')


def run_script(netns: Netns, body: str, setup: str = "", timeout: float = 90) -> str:
    """Run PRELUDE + setup + body in the namespace; return its stdout."""
    code = PRELUDE + setup + textwrap.dedent(body)
    return netns.python(code, timeout=timeout).stdout.decode()
