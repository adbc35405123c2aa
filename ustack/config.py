"""Stack-wide TCP settings, named after their Linux sysctl counterparts.

One `Settings` object is shared by the CLI (`--set NAME=VALUE`), the API and
the tests. Times are in seconds (floats).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
from dataclasses import dataclass, fields


@dataclass(slots=True)
class Settings:
    """Every tunable of a stack. Each field's docstring (or, for a field
    without one, the comment above it) is what `ustack up --set help` prints."""

    msl: float = 30.0
    """Maximum segment lifetime (s): TIME_WAIT lasts 2*msl (RFC 9293 3.4.2;
    Linux fixes TIME_WAIT at 60 s)."""
    fin_timeout: float = 60.0
    """net.ipv4.tcp_fin_timeout (s): how long an orphan may sit in FIN_WAIT_2."""
    keepalive_time: float = 7200.0
    """net.ipv4.tcp_keepalive_time (s): idle time before the first keepalive
    probe on an SO_KEEPALIVE socket (RFC 1122 4.2.3.6)."""
    keepalive_intvl: float = 75.0
    """net.ipv4.tcp_keepalive_intvl (s): time between unanswered probes."""
    keepalive_probes: int = 9
    """net.ipv4.tcp_keepalive_probes: unanswered probes before the connection
    is dropped (ETIMEDOUT)."""
    syn_retries: int = 6
    """net.ipv4.tcp_syn_retries: SYN retransmissions before connect() fails
    with ETIMEDOUT."""
    synack_retries: int = 5
    """net.ipv4.tcp_synack_retries: SYN-ACK retransmissions before a half-open
    connection is dropped."""
    retries2: int = 15
    """net.ipv4.tcp_retries2: data and FIN retransmissions (and zero-window
    probes) before the connection is dropped with ETIMEDOUT."""
    orphan_retries: int = 8
    """net.ipv4.tcp_orphan_retries: the same for orphans (closed by the
    application, still sending their data or FIN)."""
    max_orphans: int = 4096
    """net.ipv4.tcp_max_orphans: orphaned connections at most; a connection
    closed past it is reset instead (counted as OrphanOverflow)."""
    backlog: int = 4096
    """net.core.somaxconn: upper bound on a listener's accept queue."""
    max_connections: int = 262144
    """Connections (not counting TIME_WAIT) the stack holds at most; past it,
    SYNs get cookies and connect() fails with ENOBUFS."""
    max_tw_buckets: int = 262144
    """net.ipv4.tcp_max_tw_buckets: TIME_WAIT records at most; past it, a
    closing connection skips TIME_WAIT (counted as TCPTimeWaitOverflow)."""
    max_syn_backlog: int = 1024
    """net.ipv4.tcp_max_syn_backlog: half-open connections per listener."""
    rto_initial: float = 1.0
    """Retransmission timeout (s) before the first RTT sample (RFC 6298 2.1)."""
    rto_min: float = 0.2
    """Lower bound of the RTO (s): Linux's 200 ms floor (RFC 6298 2.4 says 1 s)."""
    rto_max: float = 120.0
    """Upper bound of the RTO (s) as it doubles on each timeout (RFC 6298 2.5)."""
    delack: float = 0.04
    """Delayed ACK (s) for a lone segment, so the ACK may ride on a reply
    (Linux TCP_DELACK_MIN 40 ms; RFC 1122 4.2.3.2 requires < 0.5 s)."""
    rcv_buf: int = 1 << 20
    """Receive buffer per connection (bytes): bounds the advertised window."""
    snd_buf: int = 1 << 20
    """Send buffer per connection (bytes): send_all waits while it is full."""
    ooo_max_bytes: int = 1 << 20
    """Out-of-order reassembly bound (bytes held beyond RCV.NXT)."""
    wscale: int = 7
    """Window scale we offer (RFC 7323 2.3); 0..14."""
    port_low: int = 32768
    """Lowest ephemeral port (net.ipv4.ip_local_port_range)."""
    port_high: int = 60999
    """Highest ephemeral port (net.ipv4.ip_local_port_range)."""
    invalid_ratelimit: float = 0.5
    """Least time (s) between ACKs for invalid segments without data
    (net.ipv4.tcp_invalid_ratelimit, 500 ms; RFC 5961 10)."""
    challenge_ack_limit: int = 100
    """Challenge ACKs per second per connection (RFC 5961 7). Per connection,
    not stack-wide: a shared budget is a side channel (CVE-2016-5696)."""
    timestamps: bool = True
    """TCP timestamps (RFC 7323; net.ipv4.tcp_timestamps): RTTM and PAWS."""
    sack: bool = True
    """SACK (RFC 2018; net.ipv4.tcp_sack): we report out-of-order data."""
    syncookies: bool = True
    """SYN cookies when a listener's SYN queue is full
    (net.ipv4.tcp_syncookies=1)."""
    ipfrag_high_thresh: int = 4 << 20
    """net.ipv4.ipfrag_high_thresh: bytes of IP fragments held for reassembly
    at most; fragments past it are dropped (RFC 791, RFC 815)."""
    ipfrag_time: float = 30.0
    """net.ipv4.ipfrag_time (s): how long a datagram may wait for its fragments."""
    ipfrag_max_frags: int = 64
    """Fragments per datagram at most (a bound on reassembly work)."""
    min_pmtu: int = 552
    """net.ipv4.route.min_pmtu: the floor of path MTU discovery (RFC 1191)."""
    mtu_expires: float = 600.0
    """net.ipv4.route.mtu_expires (s): how long a learned path MTU is kept."""
    icmp_ratelimit: float = 1.0
    """net.ipv4.icmp_ratelimit (s): least time between ICMP errors to one
    destination (burst 6)."""
    icmp_msgs_per_sec: int = 1000
    """net.ipv4.icmp_msgs_per_sec: ICMP errors per second, stack-wide."""
    icmp_msgs_burst: int = 50
    """net.ipv4.icmp_msgs_burst: the stack-wide ICMP error burst."""
    udp_rcvbuf: int = 212992
    """A UDP socket's receive buffer (net.core.rmem_default), bytes."""
    # Grace period for orderly close when the stack shuts down.
    shutdown_grace: float = 2.0
    congestion: str = "cubic"
    """net.ipv4.tcp_congestion_control: "cubic" (RFC 9438 with HyStart++,
    RFC 9406; Linux's default), "reno" or "newreno" (RFC 5681 with byte
    counting). Per socket: setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"reno")."""
    tlp: bool = True
    """net.ipv4.tcp_early_retrans (>= 3): tail loss probes (RFC 8985 7)."""
    frto: bool = True
    """net.ipv4.tcp_frto: F-RTO detection of spurious timeouts (RFC 5682)."""
    slow_start_after_idle: bool = True
    """net.ipv4.tcp_slow_start_after_idle: shrink a stale cwnd after more
    than an RTO without sending (RFC 5681 4.1, RFC 2861)."""
    pacing: str = "auto"
    """Pacing of the sender (Linux internal TCP pacing): "auto" paces when the
    congestion control asks for it (bbr), "on" paces every controller at
    200% of cwnd/srtt in slow start and 120% after (tcp_pacing_ss_ratio,
    tcp_pacing_ca_ratio), "off" never paces."""
    busy_poll: int = 0
    """net.core.busy_read (µs): after serving a batch, keep reading the link
    without sleeping for up to this long before waiting on its fd again, as
    Linux's busy polling (SO_BUSY_POLL) does for a socket. Cuts the wake-up
    from a request's latency at the price of up to this much CPU spinning
    after each burst of traffic; 0 (Linux's default) never spins, 50 is what
    Linux's documentation suggests."""
    ecn: int = 2
    """net.ipv4.tcp_ecn: Explicit Congestion Notification (RFC 3168). 2 (Linux's
    default): accept it when a peer's SYN asks; 1: also ask for it on active
    opens; 0: off."""

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def set_from_string(self, assignment: str) -> None:
        """Apply one `NAME=VALUE` assignment, as given to `ustack up --set`."""
        name, sep, raw = assignment.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"expected NAME=VALUE, got {assignment!r}")
        known = {f.name: f for f in fields(self)}
        if name not in known:
            raise ValueError(
                f"unknown setting {name!r}; known: {', '.join(sorted(known))}"
            )
        current = getattr(self, name)
        try:
            value = _parse(type(current), raw.strip())
        except ValueError:
            raise ValueError(
                f"setting {name} wants a {type(current).__name__}, got {raw!r}"
            ) from None
        _check_range(name, value)
        if name == "congestion":
            from ustack.tcp.cc import ALGORITHMS

            if value not in ALGORITHMS:
                names = ", ".join(sorted(ALGORITHMS))
                raise ValueError(f"congestion {raw!r} unknown; known: {names}")
        if name == "pacing" and value not in ("auto", "on", "off"):
            raise ValueError(f"pacing {raw!r} unknown; known: auto, off, on")
        setattr(self, name, value)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------
# Checking and describing values (for `--set`)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Inclusive bounds beyond "not negative" (which every number must be).
_RANGES: dict[str, tuple[float, float]] = {
    "wscale": (0, 14),  # RFC 7323 2.3: larger shifts are treated as 14
    "port_low": (1, 65535),
    "port_high": (1, 65535),
    "rto_initial": (0.001, math.inf),
    "rto_min": (0.001, math.inf),
    "rto_max": (0.001, math.inf),
    "delack": (0, 0.5),  # RFC 1122 4.2.3.2: an ACK must not wait 0.5 s
    "rcv_buf": (1, math.inf),
    "snd_buf": (1, math.inf),
    "ecn": (0, 2),
    "busy_poll": (0, 100_000),  # at most 0.1 s of spinning per burst
}


def _parse(kind: type, raw: str) -> object:
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(raw)
    value = kind(raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(raw)
    return value


def _check_range(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = _RANGES.get(name, (0, math.inf))
    if not low <= value <= high:
        bound = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise ValueError(f"setting {name} must be {bound}, got {value:g}")


def check_settings(settings: Settings) -> None:
    """Cross-field checks (ValueError with a one-line message)."""
    if settings.rto_min > settings.rto_max:
        raise ValueError(
            f"setting rto_min ({settings.rto_min:g}) exceeds rto_max "
            f"({settings.rto_max:g})"
        )
    if settings.port_low > settings.port_high:
        raise ValueError(
            f"setting port_low ({settings.port_low}) exceeds port_high "
            f"({settings.port_high})"
        )


def field_docs() -> dict[str, str]:
    """Each field's documentation, one line: its docstring, else the comment
    lines right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(Settings))
    except (OSError, TypeError):  # no source shipped (e.g. bytecode only)
        return {}
    lines = source.splitlines()
    tree = ast.parse(source).body[0]
    assert isinstance(tree, ast.ClassDef)
    docs: dict[str, str] = {}
    body = tree.body
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        text = ""
        after = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            text = after.value.value
        else:
            above: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            text = " ".join(above)
        docs[node.target.id] = " ".join(text.split())
    return docs


def settings_help() -> str:
    """The table `ustack up --set help` prints: name, default, description."""
    docs = field_docs()
    defaults = Settings()
    rows = [(f.name, repr(getattr(defaults, f.name))) for f in fields(Settings)]
    width = max(len(name) for name, _ in rows)
    dwidth = max(len(default) for _, default in rows)
    out = [f"{'setting':<{width}}  {'default':>{dwidth}}  description"]
    for name, default in rows:
        out.append(f"{name:<{width}}  {default:>{dwidth}}  {docs.get(name, '')}")
    return "\n".join(out)
