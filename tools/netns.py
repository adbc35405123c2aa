#!/usr/bin/env python3
"""Throwaway network namespaces for tests, benchmarks and demos.

Every packet ustack's tests send stays inside a namespace created here, and
the namespace is always deleted afterwards (processes left in it are killed).

As a library (the test suite imports it):

    with temp_netns() as ns:
        ns.run("ip", "addr")                 # ip netns exec NS ip addr
        proc = ns.popen("ustack", "up")      # long-running process in NS
        ns.tcp_states()                      # parsed `ss -tan`

As a command (demo: everything inside a fresh namespace, deleted after):

    sudo python3 tools/netns.py -- ./tools/up.sh
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# Real-time limits here are backstops against a hang, never measurements; on a
# slow machine they are multiplied by USTACK_TEST_TIME_FACTOR (tools/vm-test.sh
# sets 3 under qemu's TCG, where starting a Python CLI alone takes ~15 s).
TIME_FACTOR = float(os.environ.get("USTACK_TEST_TIME_FACTOR", "1"))
DEFAULT_TIMEOUT = 30.0 * TIME_FACTOR


@dataclass(frozen=True)
class TcpSocket:
    """One row of `ss -tan`."""

    state: str  # as ss prints it: ESTAB, TIME-WAIT, FIN-WAIT-2, LISTEN, ...
    local: str  # "10.203.0.1:40000"
    peer: str  # "10.203.0.2:7"
    recv_q: int
    send_q: int


class Netns:
    """A named network namespace; commands run in it via `ip netns exec`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *(os.fspath(a) for a in args)]

    def run(
        self,
        *args: str | os.PathLike[str],
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        input: bytes | None = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command in the namespace; capture output; raise on failure."""
        kwargs.setdefault("capture_output", True)
        proc = subprocess.run(
            self.cmd(*args), timeout=timeout, input=input, check=False, **kwargs
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"command failed with exit code {proc.returncode}: "
                f"{' '.join(os.fspath(a) for a in args)}\n"
                f"stdout: {_tail(proc.stdout)}\nstderr: {_tail(proc.stderr)}"
            )
        return proc

    def python(
        self, code: str, *args: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `python -c code args...` (this interpreter) in the namespace."""
        return self.run(sys.executable, "-c", code, *args, timeout=timeout, **kwargs)

    def popen(
        self, *args: str | os.PathLike[str], **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start a long-running command in the namespace (caller stops it)."""
        return subprocess.Popen(self.cmd(*args), **kwargs)

    def tcp_states(self) -> list[TcpSocket]:
        """The kernel's TCP sockets in this namespace (`ss -tan`)."""
        out = self.run("ss", "-tanH", timeout=10).stdout.decode()
        rows = []
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 5:
                rows.append(TcpSocket(f[0], f[3], f[4], int(f[1]), int(f[2])))
        return rows

    def wait_tcp_state(
        self,
        state: str,
        *,
        peer: str | None = None,
        local: str | None = None,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> TcpSocket:
        """Poll `ss` until a socket in `state` (matching peer/local) shows up."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.tcp_states()
            for row in rows:
                if (
                    row.state == state
                    and peer in (None, row.peer)
                    and local in (None, row.local)
                ):
                    return row
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {state} socket (peer={peer}, local={local}) within "
                    f"{timeout} s; ss -tan shows: {rows}"
                )
            time.sleep(interval)

    def wait_listening(self, port: int, timeout: float = 10.0) -> None:
        """Poll `ss` until a kernel socket listens on `port` in this namespace."""
        deadline = time.monotonic() + timeout
        while not any(
            r.state == "LISTEN" and r.local.rsplit(":", 1)[-1] == str(port)
            for r in self.tcp_states()
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port} in {self.name}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, timeout=10
        ).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def delete(self) -> None:
        """Kill whatever still runs inside, then delete the namespace."""
        for _ in range(3):
            self.kill_all()
            proc = subprocess.run(
                ["ip", "netns", "delete", self.name], capture_output=True, timeout=10
            )
            if not os.path.exists(f"/run/netns/{self.name}"):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"could not delete network namespace {self.name}: {_tail(proc.stderr)}"
        )


def create_netns(prefix: str = "ustack-t-") -> Netns:
    """Create a uniquely named namespace with `lo` up."""
    name = f"{prefix}{secrets.token_hex(4)}"
    subprocess.run(
        ["ip", "netns", "add", name], check=True, capture_output=True, timeout=10
    )
    ns = Netns(name)
    try:
        ns.run("ip", "link", "set", "lo", "up", timeout=10)
    except BaseException:
        ns.delete()
        raise
    return ns


@contextlib.contextmanager
def temp_netns(prefix: str = "ustack-t-") -> Iterator[Netns]:
    """A fresh namespace for the duration of the block; always deleted."""
    ns = create_netns(prefix)
    try:
        yield ns
    finally:
        ns.delete()


USTACK_DEFAULT_ARGS = (
    "--ifname",
    "ustack0",
    "--host-ip",
    "10.203.0.1/24",
    "--ip",
    "10.203.0.2",
)


def ustack_command() -> list[str]:
    """`$USTACK_COMMAND` if set, else the `ustack` of this interpreter's venv."""
    if os.environ.get("USTACK_COMMAND"):
        return shlex.split(os.environ["USTACK_COMMAND"])
    script = os.path.join(os.path.dirname(sys.executable), "ustack")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "ustack"]


class UstackProcess:
    """`ustack up` running in a namespace; started by `start_ustack`."""

    def __init__(self, ns: Netns, args: Sequence[str], log_dir: str) -> None:
        self.ns = ns
        self.args = list(args)
        self.stdout_path = os.path.join(log_dir, f"ustack-{ns.name}.out")
        self.stderr_path = os.path.join(log_dir, f"ustack-{ns.name}.err")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = ns.popen(
                *ustack_command(),
                "up",
                *self.args,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def output(self) -> str:
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def errors(self) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def describe(self) -> str:
        return (
            f"ustack up {' '.join(self.args)} (exit code {self.proc.poll()})\n"
            f"--- stdout ---\n{_tail(self.output().encode(), 4000)}\n"
            f"--- stderr ---\n{_tail(self.errors().encode(), 8000)}"
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the line containing `ready` on stdout."""
        timeout *= TIME_FACTOR
        deadline = time.monotonic() + timeout
        while "ready" not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "ustack up exited before ready\n" + self.describe()
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"ustack up not ready within {timeout} s\n" + self.describe()
                )
            time.sleep(0.02)

    # Conveniences that run things next to the stack.
    def run(
        self, *args: str | os.PathLike[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        return self.ns.run(*args, **kwargs)

    def python(
        self, code: str, *args: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        return self.ns.python(code, *args, **kwargs)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, return the exit code (SIGKILL after `timeout`)."""
        timeout *= TIME_FACTOR
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"ustack up ignored SIGTERM for {timeout} s\n" + self.describe()
                ) from None
        return self.proc.returncode


def start_ustack(
    ns: Netns,
    *extra: str,
    log_dir: str = "/tmp",
    defaults: Sequence[str] = USTACK_DEFAULT_ARGS,
    ready_timeout: float = 20.0,
) -> UstackProcess:
    """Start `ustack up DEFAULTS EXTRA...` in `ns` and wait until it is ready."""
    stack = UstackProcess(ns, [*defaults, *extra], log_dir)
    try:
        stack.wait_ready(ready_timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


def _tail(data: bytes | None, limit: int = 2000) -> str:
    text = (data or b"").decode(errors="replace")
    return text if len(text) <= limit else "..." + text[-limit:]


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: sudo tools/netns.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("network namespaces need root: run with sudo", file=sys.stderr)
        return 1
    with temp_netns("ustack-demo-") as ns:
        print(
            f"[netns] running in namespace {ns.name}; other shells can join "
            f"with: sudo ip netns exec {ns.name} bash",
            file=sys.stderr,
        )
        proc = subprocess.Popen(ns.cmd(*args))

        def forward(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        # Pass SIGINT/SIGTERM/SIGHUP on and wait, so the namespace is deleted.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, forward)
        try:
            return proc.wait(timeout=None)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
