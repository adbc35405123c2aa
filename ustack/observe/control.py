"""The control socket: `ustack up` answers queries from `ustack ss/stats/trace`.

A Unix stream socket, root-only (directory 0700, socket 0600), at
/run/ustack/<ifname>.sock; in a named network namespace (`ip netns`),
/run/ustack/<ifname>@<netns>.sock (interface names are only unique per
namespace, and /run is shared between them). The protocol is line-delimited
JSON: the client sends one request line, the server answers

    {"cmd": "ss"}     -> {"ok": true, "ip": ..., "connections": [...],
                          "listeners": [...], "udp": [...]}  (one line, then EOF)
    {"cmd": "stats"}  -> {"ok": true, "counters": {...}} (one line, then EOF)
    {"cmd": "trace", "port": 80 | null}
                      -> {"event": "hello", "ip": ...} then one line per event
                         until the client disconnects:
                         {"event": "packet", "time": t, "outgoing": bool,
                          "packet": base64 IPv4 packet}
                         {"event": "state", "time": t, "local": "ip:port",
                          "peer": "ip:port", "old": "ESTABLISHED", "new": ...}
                         {"event": "dropped", "count": n}  (events lost because
                          the client read too slowly)

Errors: {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ustack.errors import SetupError
from ustack.observe.introspect import (
    connection_rows,
    counter_rows,
    listener_rows,
    udp_rows,
)

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.state import State
    from ustack.tcp.tcb import Tcb
    from ustack.tcp.timewait import TimeWait

CONTROL_DIR = Path("/run/ustack")
MAX_LINE = 1 << 20
TRACE_QUEUE = 20_000


def _netns_suffix() -> str:
    """ "@<name>" inside a named network namespace (`ip netns`, found by
    comparing /proc/self/ns/net with the files in /run/netns), else ""."""
    try:
        mine = os.stat("/proc/self/ns/net")
        entries = sorted(os.listdir("/run/netns"))
    except OSError:
        return ""
    for entry in entries:
        with contextlib.suppress(OSError):
            st = os.stat(os.path.join("/run/netns", entry))
            if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
                return f"@{entry}"
    return ""


def control_path(ifname: str) -> Path:
    """Where the stack on `ifname` (in this network namespace) listens."""
    return CONTROL_DIR / f"{ifname}{_netns_suffix()}.sock"


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class _LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at EOF."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            data = await self.stream.receive_some(65536)
            if not data:
                if self.buf:
                    line, self.buf = bytes(self.buf), bytearray()
                    return line
                return None
            self.buf += data


# ----------------------------------------------------------------------
# Server


class ControlServer:
    """Serves the control protocol for `stack` at `path` (a trio task)."""

    def __init__(self, stack: Stack, path: Path) -> None:
        self.stack = stack
        self.path = Path(path)

    def _bind(self) -> socket.socket:
        path = self.path
        if path.parent == CONTROL_DIR:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise SetupError(f"{path} exists and is not a socket; remove it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # stale: nobody serves it
            else:
                raise SetupError(
                    f"another ustack serves {path}; stop it or pick another "
                    "--ifname/--control"
                )
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise SetupError(f"cannot create control socket {path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        return sock

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        raw = self._bind()
        ino = os.stat(self.path).st_ino
        try:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._handle, stream)
        finally:
            # Unlink only our own socket (not one a later stack put there).
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == ino:
                    self.path.unlink()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                reader = _LineReader(stream)
                line = await reader.readline()
                if line is None:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                except ValueError as exc:
                    await stream.send_all(_encode({"ok": False, "error": str(exc)}))
                    return
                cmd = request.get("cmd")
                if cmd == "trace":
                    await self._trace(stream, reader, request)
                    return
                await stream.send_all(_encode(self.answer(request)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
                return

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to a one-shot request (`ss`, `stats`)."""
        stack = self.stack
        cmd = request.get("cmd")
        now = trio.current_time()
        if cmd == "ss":
            return {
                "ok": True,
                "ip": stack.ip,
                "connections": connection_rows(stack, now),
                "listeners": listener_rows(stack),
                "udp": udp_rows(stack),
            }
        if cmd == "stats":
            return {
                "ok": True,
                "counters": counter_rows(stack.counters),
                "connections": sum(1 for _ in stack.connections()),
                "orphans": stack.orphan_count,
            }
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    async def _trace(
        self, stream: trio.SocketStream, reader: _LineReader, request: dict[str, Any]
    ) -> None:
        port = request.get("port")
        port = int(port) if port is not None else None
        send_ch, recv_ch = trio.open_memory_channel[tuple[Any, ...]](TRACE_QUEUE)
        dropped = 0

        clock = trio.current_time

        def tap(outgoing: bool, packet: bytes, now: float) -> None:
            # clock(), not `now`: the loop's `now` lags for later batches.
            nonlocal dropped
            try:
                send_ch.send_nowait(("p", outgoing, packet, clock()))
            except trio.WouldBlock:
                dropped += 1

        def observer(tcb: Tcb | TimeWait, old: State, new: State, now: float) -> None:
            nonlocal dropped
            try:
                send_ch.send_nowait(("s", tcb, old, new, now))
            except trio.WouldBlock:
                dropped += 1

        stack = self.stack
        stack.taps.append(tap)
        stack.state_observers.append(observer)
        try:
            async with trio.open_nursery() as nursery:

                async def until_disconnect() -> None:
                    with contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, ValueError
                    ):
                        while await reader.readline() is not None:
                            pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_disconnect)
                await stream.send_all(_encode({"event": "hello", "ip": stack.ip}))
                async for item in recv_ch:
                    if dropped:
                        await stream.send_all(
                            _encode({"event": "dropped", "count": dropped})
                        )
                        dropped = 0
                    message = _trace_message(item, port)
                    if message is not None:
                        await stream.send_all(message)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass  # the trace client went away: that ends its trace, nothing else
        finally:
            with contextlib.suppress(ValueError):
                stack.taps.remove(tap)
            with contextlib.suppress(ValueError):
                stack.state_observers.remove(observer)


_PORTS = struct.Struct("!HH")


def _trace_message(item: tuple[Any, ...], port: int | None) -> bytes | None:
    from ustack.observe.introspect import addr

    if item[0] == "p":
        _, outgoing, packet, now = item
        if port is not None:
            ihl = (packet[0] & 0x0F) * 4
            if len(packet) < ihl + 4 or packet[9] != 6:
                return None
            if port not in _PORTS.unpack_from(packet, ihl):
                return None
        return _encode(
            {
                "event": "packet",
                "time": now,
                "outgoing": outgoing,
                "packet": base64.b64encode(bytes(packet)).decode(),
            }
        )
    _, tcb, old, new, now = item
    if port is not None and port not in (tcb.local_port, tcb.remote_port):
        return None
    return _encode(
        {
            "event": "state",
            "time": now,
            "local": addr(tcb.local_ip, tcb.local_port),
            "peer": addr(tcb.remote_ip, tcb.remote_port),
            "old": old.name,
            "new": new.name,
        }
    )


# ----------------------------------------------------------------------
# Client


class ControlError(OSError):
    """The stack could not be reached or refused the request (an OSError, so
    the CLI reports it in one line)."""


async def _connect(path: Path) -> trio.SocketStream:
    try:
        return await trio.open_unix_socket(str(path))
    except FileNotFoundError:
        raise ControlError(
            f"no control socket at {path}: is `ustack up` running "
            "(same --ifname, same network namespace)?"
        ) from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root") from None
    except ConnectionRefusedError:
        raise ControlError(
            f"ustack up is not running (stale control socket {path}, left by a "
            "stack that did not exit cleanly)"
        ) from None
    except OSError as exc:
        raise ControlError(f"cannot connect to {path}: {exc}") from None


async def request(path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request, return the one-line reply."""
    stream = await _connect(path)
    async with stream:
        await stream.send_all(_encode(message))
        line = await _LineReader(stream).readline()
    if line is None:
        raise ControlError("the stack closed the control connection without a reply")
    reply: dict[str, Any] = json.loads(line)
    if not reply.get("ok", True):
        raise ControlError(str(reply.get("error")))
    return reply


async def subscribe(
    path: Path, message: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """Send a streaming request (`trace`) and yield each message."""
    stream = await _connect(path)
    async with stream:
        await stream.send_all(_encode(message))
        reader = _LineReader(stream)
        while (line := await reader.readline()) is not None:
            yield json.loads(line)


def running_stacks() -> list[tuple[str, Path]]:
    """(ifname, socket path) of every live `ustack up` in this network
    namespace, found in CONTROL_DIR (stale sockets are skipped)."""
    suffix = _netns_suffix()
    found = []
    try:
        entries = sorted(CONTROL_DIR.glob("*.sock"))
    except OSError:
        return []
    for path in entries:
        name, at, ns = path.stem.partition("@")
        if (f"@{ns}" if at else "") != suffix:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            continue
        finally:
            probe.close()
        found.append((name, path))
    return found
