"""Stack-wide TCP settings, named after their Linux sysctl counterparts.

One `Settings` object is shared by the CLI (`--set NAME=VALUE`), the API and
the tests. Times are in seconds (floats).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

_BOOLEANS = {"1": True, "true": True, "on": True, "yes": True,
             "0": False, "false": False, "off": False, "no": False}


@dataclass(slots=True)
class Settings:
    # TIME_WAIT lasts 2*msl (RFC 9293 3.4.2; Linux fixes TIME_WAIT at 60 s).
    msl: float = 30.0
    # net.ipv4.tcp_fin_timeout: how long an orphan may sit in FIN_WAIT_2.
    fin_timeout: float = 60.0
    # net.ipv4.tcp_keepalive_time / _intvl / _probes (RFC 1122 4.2.3.6).
    keepalive_time: float = 7200.0
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    # net.ipv4.tcp_syn_retries / tcp_synack_retries.
    syn_retries: int = 6
    synack_retries: int = 5
    # net.ipv4.tcp_retries2 / tcp_orphan_retries: data and FIN retransmissions.
    retries2: int = 15
    orphan_retries: int = 8
    # net.ipv4.tcp_max_orphans.
    max_orphans: int = 4096
    # net.core.somaxconn: upper bound on a listener's accept queue.
    backlog: int = 4096
    # Connections (not counting TIME_WAIT) the stack holds at most; past it,
    # SYNs get cookies and connect() fails with ENOBUFS.
    max_connections: int = 262144
    # net.ipv4.tcp_max_tw_buckets: TIME_WAIT records at most; past it, a
    # closing connection skips TIME_WAIT (counted as TCPTimeWaitOverflow).
    max_tw_buckets: int = 262144
    # net.ipv4.tcp_max_syn_backlog: half-open connections per listener.
    max_syn_backlog: int = 1024
    # RTO bounds (RFC 6298 2.1, 2.4; Linux uses a 200 ms floor).
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 120.0
    # Delayed ACK for a lone segment, so the ACK may ride on a reply
    # (Linux TCP_DELACK_MIN 40 ms; RFC 1122 4.2.3.2 requires < 0.5 s).
    delack: float = 0.04
    # Buffers per connection (bytes).
    rcv_buf: int = 1 << 20
    snd_buf: int = 1 << 20
    # Out-of-order reassembly bound (bytes held beyond RCV.NXT).
    ooo_max_bytes: int = 1 << 20
    # Window scale we offer (RFC 7323 2.3); 0..14.
    wscale: int = 7
    # Ephemeral port range (net.ipv4.ip_local_port_range).
    port_low: int = 32768
    port_high: int = 60999
    # Least time between ACKs for invalid segments without data
    # (net.ipv4.tcp_invalid_ratelimit, 500 ms; RFC 5961 10).
    invalid_ratelimit: float = 0.5
    # Challenge ACKs per second per connection (RFC 5961 7). Per connection,
    # not stack-wide: a shared budget is a side channel (CVE-2016-5696).
    challenge_ack_limit: int = 100
    # TCP timestamps (RFC 7323; net.ipv4.tcp_timestamps): RTTM and PAWS.
    timestamps: bool = True
    # SACK (RFC 2018; net.ipv4.tcp_sack): we report out-of-order data.
    sack: bool = True
    # SYN cookies when a listener's SYN queue is full (net.ipv4.tcp_syncookies=1).
    syncookies: bool = True
    # IP layer (issue 13). Reassembly: net.ipv4.ipfrag_high_thresh (bytes
    # held at most), ipfrag_time (seconds per datagram), and at most this
    # many fragments per datagram.
    ipfrag_high_thresh: int = 4 << 20
    ipfrag_time: float = 30.0
    ipfrag_max_frags: int = 64
    # Path MTU discovery (RFC 1191): net.ipv4.route.min_pmtu (floor) and
    # mtu_expires (seconds a learned path MTU is kept).
    min_pmtu: int = 552
    mtu_expires: float = 600.0
    # ICMP errors we send: net.ipv4.icmp_ratelimit (seconds between messages
    # to one destination, burst 6), icmp_msgs_per_sec and icmp_msgs_burst.
    icmp_ratelimit: float = 1.0
    icmp_msgs_per_sec: int = 1000
    icmp_msgs_burst: int = 50
    # A UDP socket's receive buffer (net.core.rmem_default), bytes.
    udp_rcvbuf: int = 212992
    # Grace period for orderly close when the stack shuts down.
    shutdown_grace: float = 2.0
    # net.ipv4.tcp_congestion_control: "cubic" (RFC 9438 with HyStart++,
    # RFC 9406; Linux's default), "reno" or "newreno" (RFC 5681 with byte
    # counting). Per socket: setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"reno").
    congestion: str = "cubic"
    # net.ipv4.tcp_early_retrans (>= 3): tail loss probes (RFC 8985 7).
    tlp: bool = True
    # net.ipv4.tcp_frto: F-RTO detection of spurious timeouts (RFC 5682).
    frto: bool = True
    # net.ipv4.tcp_slow_start_after_idle: shrink a stale cwnd after more
    # than an RTO without sending (RFC 5681 4.1, RFC 2861).
    slow_start_after_idle: bool = True

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
        if isinstance(current, bool):
            flag = raw.strip().lower()
            if flag not in _BOOLEANS:
                raise ValueError(f"setting {name} wants 0 or 1, got {raw!r}")
            setattr(self, name, _BOOLEANS[flag])
            return
        try:
            value: object = type(current)(raw.strip())
        except ValueError:
            raise ValueError(
                f"setting {name} wants a {type(current).__name__}, got {raw!r}"
            ) from None
        setattr(self, name, value)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
