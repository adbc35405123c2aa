"""What `ustack ss` and `ustack stats` show: rows built from a running stack.

Pure functions over `Stack.connections()`, `Stack.listeners()` and
`Stack.counters`; every value is JSON-serializable (they travel over the
control socket as they are).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ustack.tcp.cc.base import INITIAL_SSTHRESH
from ustack.tcp.ecn import OK as ECN_OK
from ustack.tcp.ecn import SEEN as ECN_SEEN
from ustack.tcp.state import State

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.tcb import Tcb
    from ustack.tcp.timewait import TimeWait

# The counters `ustack stats` always shows (zero when nothing happened yet),
# named like Linux's /proc/net/snmp and netstat (nstat).
STANDARD_COUNTERS = (
    # Every counter the stack increments, so `ustack nstat` lists them even at
    # 0 (like `nstat -az`); tests/unit/test_counter_names.py keeps this whole.
    # Tcp MIB (RFC 4022), as nstat names them.
    "ActiveOpens",
    "PassiveOpens",
    "AttemptFails",
    "EstabResets",
    "InSegs",
    "OutSegs",
    "RetransSegs",
    "InErrs",
    "InCsumErrors",
    "OutRsts",
    # IP MIB (RFC 4293) and ustack's own.
    "InReceives",
    "InAddrErrors",
    "InUnknownProtos",
    "InternalErrors",
    "ReasmReqds",
    "ReasmOKs",
    "ReasmFails",
    "ReasmTimeout",
    "FragOKs",
    "FragCreates",
    # ECN (RFC 3168): Linux's IpExt and TcpExt names.
    "InECT0Pkts",
    "InECT1Pkts",
    "InCEPkts",
    "TCPDeliveredCE",
    # Listening, SYN cookies, orphans and TIME-WAIT (Linux's TcpExt names).
    "ListenDrops",
    "ListenOverflows",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "OrphanOverflow",
    "TCPTimeWaitOverflow",
    "TWExpired",
    "TWReused",
    # Aborts, RFC 5961 challenge ACKs, PAWS and out-of-window ACK limits.
    "TCPAbortOnClose",
    "TCPAbortOnData",
    "TCPAbortOnTimeout",
    "TCPChallengeACK",
    "TCPChallengeACKLimited",
    "PAWSEstab",
    "PAWSEstabRejected",
    "PAWSOldAck",
    "PAWSDisorderedAck",
    "TCPACKSkippedInvalid",
    "TCPACKSkippedPAWS",
    "TCPACKSkippedTimeWait",
    "OutOfWindowIcmps",
    # Receive path: header prediction, out-of-order queue, pruning.
    "TCPHPHits",
    "TCPHPAcks",
    "TCPOFOQueue",
    "TCPOFODrop",
    "TCPOFOMerge",
    "PruneCalled",
    "OfoPruned",
    "TCPDSACKOfoSent",
    "TCPDSACKOldSent",
    # Timers and probes.
    "TCPKeepAlive",
    "TCPWinProbe",
    "TCPPMTUReduced",
    # Loss recovery and undo.
    "TCPTimeouts",
    "TCPLossProbes",
    "TCPLossProbeRecovery",
    "TCPSackRecovery",
    "TCPRenoRecovery",
    "TCPFastRetrans",
    "TCPSlowStartRetrans",
    "TCPLostRetransmit",
    "TCPSpuriousRTOs",
    "TCPDSACKRecv",
    "TCPDSACKUndo",
    "TCPFullUndo",
    "TCPPartialUndo",
    "TCPLossUndo",
    # ICMP (RFC 2011) and Linux's rate-limit counters.
    "IcmpInMsgs",
    "IcmpInErrors",
    "IcmpInCsumErrors",
    "IcmpInDestUnreachs",
    "IcmpInTimeExcds",
    "IcmpInParmProbs",
    "IcmpInSrcQuenchs",
    "IcmpInEchos",
    "IcmpInEchoReps",
    "IcmpOutMsgs",
    "IcmpOutErrors",
    "IcmpOutDestUnreachs",
    "IcmpOutTimeExcds",
    "IcmpOutEchoReps",
    "IcmpOutRateLimitGlobal",
    "IcmpOutRateLimitHost",
    # UDP (RFC 4113).
    "UdpInDatagrams",
    "UdpNoPorts",
    "UdpInErrors",
    "UdpInCsumErrors",
    "UdpRcvbufErrors",
    "UdpOutDatagrams",
)


def addr(ip: bytes, port: int) -> str:
    return f"{ipaddress.IPv4Address(ip)}:{port}"


def timer_of(tcb: Tcb, now: float) -> tuple[str, float] | None:
    """The timer `ss -o` would show for this TCB: (name, seconds left).

    Names as ss prints them, where ss has one: "on" (retransmission),
    "persist" (zero-window probe), "keepalive", "timewait"; ustack adds
    "fin_wait2" (orphan FIN-WAIT-2 timeout) and "delack" (delayed ACK).
    """
    if tcb.close_deadline is not None:
        name = "timewait" if tcb.state is State.TIME_WAIT else "fin_wait2"
        return name, max(0.0, tcb.close_deadline - now)
    if tcb.rtx_deadline is not None:
        name = "persist" if tcb.persist else "on"
        return name, max(0.0, tcb.rtx_deadline - now)
    if tcb.ka_deadline is not None:
        return "keepalive", max(0.0, tcb.ka_deadline - now)
    if tcb.delack_deadline is not None:
        return "delack", max(0.0, tcb.delack_deadline - now)
    return None


def _is_orphan(tcb: Tcb) -> bool:
    conn = tcb.owner
    return bool(getattr(conn, "orphan", False))


def connection_row(tcb: Tcb, now: float) -> dict[str, Any]:
    timer = timer_of(tcb, now)
    rto = tcb.rto
    return {
        "state": tcb.state.ss_name,
        "recv_q": len(tcb.rcvbuf),
        "send_q": len(tcb.sndbuf),
        "local": addr(tcb.local_ip, tcb.local_port),
        "peer": addr(tcb.remote_ip, tcb.remote_port),
        "timer": timer[0] if timer else None,
        "timer_left": round(timer[1], 3) if timer else None,
        "retrans": tcb.retries,
        "rto": round(rto.rto, 3),
        "rtt": round(rto.srtt, 6) if rto.srtt is not None else None,
        "rttvar": round(rto.rttvar, 6) if rto.srtt is not None else None,
        "cwnd": tcb.cwnd,
        "ssthresh": _ssthresh(tcb),
        "congestion": tcb.congestion_name,
        "ca_state": tcb.ca_state.name.lower(),
        "mss": tcb.mss,
        "orphan": _is_orphan(tcb),
        # Like ss -i: "ecn" once negotiated, "ecnseen" once ECT/CE arrived.
        "ecn": bool(tcb.ecn_flags & ECN_OK),
        "ecnseen": bool(tcb.ecn_flags & ECN_SEEN),
        **_rate_fields(tcb),
    }


def _rate_fields(tcb: Tcb) -> dict[str, Any]:
    """ss -i's pacing_rate, delivery_rate, app_limited and bbr:(...), in
    bytes/s and seconds (None where the connection has no such state)."""
    pacer = tcb.pacer
    cc = tcb.cc_if_made  # an idle connection's controller is not made for ss
    sampler = cc.sampler if cc is not None else None
    info = cc.describe() if cc is not None and cc.name == "bbr" else None
    return {
        "pacing_rate": round(pacer.rate) if pacer is not None and pacer.rate else None,
        "delivery_rate": round(sampler.delivery_rate) if sampler is not None else None,
        "app_limited": bool(sampler.app_limited) if sampler is not None else None,
        "bbr": info,
    }


def _ssthresh(tcb: Tcb) -> int | None:
    """None while still "infinite" (RFC 5681 3.1), as ss leaves it out."""
    value = tcb.ssthresh
    return value if value < INITIAL_SSTHRESH else None


def time_wait_row(record: TimeWait, now: float) -> dict[str, Any]:
    """A TIME_WAIT record (no TCB left, so no RTO/RTT/cwnd: like Linux's
    timewait sockets)."""
    return {
        "state": "TIME-WAIT",
        "recv_q": 0,
        "send_q": 0,
        "local": addr(record.local_ip, record.local_port),
        "peer": addr(record.remote_ip, record.remote_port),
        "timer": "timewait",
        "timer_left": round(max(0.0, record.deadline - now), 3),
        "retrans": 0,
        "rto": None,
        "rtt": None,
        "rttvar": None,
        "cwnd": None,
        "mss": None,
        "orphan": False,
    }


def connection_rows(stack: Stack, now: float) -> list[dict[str, Any]]:
    """One row per connection (not listeners), sorted by local then peer;
    TIME_WAIT records (`Stack.time_wait()`) included."""
    rows = [connection_row(tcb, now) for tcb in stack.connections()]
    rows.extend(time_wait_row(record, now) for record in stack.time_wait())
    rows.sort(key=lambda r: (_sort_key(r["local"]), _sort_key(r["peer"])))
    return rows


def listener_rows(stack: Stack) -> list[dict[str, Any]]:
    """LISTEN rows; like ss, Recv-Q is the accept queue and Send-Q the backlog."""
    rows: list[dict[str, Any]] = [
        {
            "state": "LISTEN",
            "recv_q": len(listening.ready),
            "send_q": listening.backlog,
            "local": f"{stack.ip}:{listening.port}",
            "peer": "0.0.0.0:*",
            "port": listening.port,
            "accept_queue": len(listening.ready),
            "syn_queue": listening.half_open,
            "backlog": listening.backlog,
        }
        for listening in stack.listeners()
    ]
    rows.sort(key=lambda r: r["port"])
    return rows


def udp_rows(stack: Stack) -> list[dict[str, Any]]:
    """UDP sockets like `ss -uan`: UNCONN (bound) or ESTAB (connected);
    Recv-Q is the payload bytes waiting to be read."""
    rows: list[dict[str, Any]] = []
    for binding in stack.udp.bindings():
        peer = binding.peer
        rows.append(
            {
                "proto": "udp",
                "state": "UNCONN" if peer is None else "ESTAB",
                "recv_q": sum(len(data) for data, _ in binding.queue),
                "send_q": 0,
                "local": f"{stack.ip}:{binding.port}",
                "peer": "0.0.0.0:*" if peer is None else addr(peer[0], peer[1]),
                "datagrams": len(binding.queue),
                "rcvbuf": binding.rcvbuf,
            }
        )
    rows.sort(key=lambda r: (_sort_key(r["local"]), _sort_key(r["peer"])))
    return rows


def counter_rows(counters: Mapping[str, int]) -> dict[str, int]:
    """Counters by name, sorted, with the standard ones present even at 0."""
    merged = {name: 0 for name in STANDARD_COUNTERS}
    merged.update(counters)
    return dict(sorted(merged.items()))


def _sort_key(address: str) -> tuple[int, int]:
    ip, _, port = address.rpartition(":")
    try:
        ip_int = int(ipaddress.IPv4Address(ip))
    except ValueError:
        ip_int = 0
    return ip_int, int(port) if port.isdigit() else 0


# ----------------------------------------------------------------------
# Filtering and formatting (client side: rows come from the control socket)

STATE_ALIASES = {
    "established": "ESTAB",
    "estab": "ESTAB",
    "syn-sent": "SYN-SENT",
    "syn-recv": "SYN-RECV",
    "syn-received": "SYN-RECV",
    "fin-wait-1": "FIN-WAIT-1",
    "fin-wait-2": "FIN-WAIT-2",
    "close-wait": "CLOSE-WAIT",
    "closing": "CLOSING",
    "last-ack": "LAST-ACK",
    "time-wait": "TIME-WAIT",
    "listen": "LISTEN",
    "listening": "LISTEN",
    "unconn": "UNCONN",
    "unconnected": "UNCONN",
}


def normalize_state(name: str) -> str:
    """`time-wait`, `TIME_WAIT`, `TIME-WAIT` -> `TIME-WAIT` (ss's names)."""
    key = name.strip().lower().replace("_", "-")
    if key not in STATE_ALIASES:
        known = sorted(set(STATE_ALIASES.values()))
        raise ValueError(f"unknown state {name!r}; known: {', '.join(known)}")
    return STATE_ALIASES[key]


def filter_rows(
    rows: list[dict[str, Any]], state: str | None = None, port: int | None = None
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if state is not None and row["state"] != state:
            continue
        if port is not None:
            ports = {row["local"].rpartition(":")[2], row["peer"].rpartition(":")[2]}
            if str(port) not in ports:
                continue
        out.append(row)
    return out


def timer_text(row: Mapping[str, Any]) -> str:
    """`timer:(timewait,0.812sec,0)` as `ss -o` prints it, or ""."""
    if not row.get("timer"):
        return ""
    return f"timer:({row['timer']},{row['timer_left']:.3f}sec,{row['retrans']})"


def _bps(rate: float) -> str:
    """Bytes/s as ss prints rates: bits per second with a k/M/G suffix."""
    bits = rate * 8
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.1f}{unit}"
    return f"{bits:.0f}bps"


def info_text(row: Mapping[str, Any]) -> str:
    """The `ss -i` part: rto, rtt, cwnd, retrans (and orphan)."""
    if row.get("proto") == "udp":
        return f"datagrams:{row['datagrams']} rcvbuf:{row['rcvbuf']}"
    if row["state"] == "LISTEN":
        return f"accept_queue:{row['accept_queue']} syn_queue:{row['syn_queue']}"
    if row.get("rto") is None:  # a TIME_WAIT record: nothing more to say
        return ""
    parts = [flag for flag in ("ecn", "ecnseen") if row.get(flag)]
    if row.get("congestion"):
        parts.append(row["congestion"])
    parts.append(f"rto:{row['rto'] * 1000:g}ms")
    if row.get("rtt") is not None:
        parts.append(f"rtt:{row['rtt'] * 1000:.3f}/{row['rttvar'] * 1000:.3f}ms")
    parts.append(f"mss:{row['mss']}")
    # Like ss -i: cwnd and ssthresh in segments (the JSON rows hold bytes).
    mss = max(1, row["mss"])
    parts.append(f"cwnd:{row['cwnd'] // mss}")
    if row.get("ssthresh") is not None:
        parts.append(f"ssthresh:{row['ssthresh'] // mss}")
    if row.get("ca_state") not in (None, "open"):
        parts.append(f"ca_state:{row['ca_state']}")
    bbr = row.get("bbr")
    if bbr:
        mrtt = bbr.get("mrtt")
        parts.append(
            f"bbr:(bw:{_bps(bbr['bw'])},mrtt:{mrtt * 1000 if mrtt else 0:.3f},"
            f"pacing_gain:{bbr['pacing_gain']:g},cwnd_gain:{bbr['cwnd_gain']:g})"
        )
    if row.get("pacing_rate"):
        parts.append(f"pacing_rate {_bps(row['pacing_rate'])}")
    if row.get("delivery_rate"):
        parts.append(f"delivery_rate {_bps(row['delivery_rate'])}")
    if row.get("app_limited"):
        parts.append("app_limited")
    parts.append(f"retrans:{row['retrans']}")
    if row.get("orphan"):
        parts.append("orphan")
    return " ".join(parts)


SS_COLUMNS = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")


def ss_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Table cells: the five ss columns, then Timer and Info."""
    return [
        [
            row["state"],
            str(row["recv_q"]),
            str(row["send_q"]),
            row["local"],
            row["peer"],
            timer_text(row),
            info_text(row),
        ]
        for row in rows
    ]


def format_plain(header: list[str], cells: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces (numbers right-aligned)."""
    widths = [len(h) for h in header]
    for line in cells:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))
    numeric = {1, 2} if header[:3] == list(SS_COLUMNS[:3]) else set()

    def fmt(line: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        return "  ".join(parts).rstrip()

    return [fmt(header)] + [fmt(line) for line in cells]


def ss_lines(rows: list[dict[str, Any]]) -> list[str]:
    return format_plain([*SS_COLUMNS, "Timer", "Info"], ss_table(rows))


def stats_lines(counters: Mapping[str, int]) -> list[str]:
    """`nstat`-like: name and value, one per line, sorted by name."""
    if not counters:
        return []
    width = max(len(name) for name in counters)
    return [f"{name:<{width}}  {value}" for name, value in sorted(counters.items())]
