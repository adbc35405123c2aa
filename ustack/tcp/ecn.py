"""Explicit Congestion Notification for TCP (RFC 3168), as Linux does it.

Per connection ECN is one small int of flags on the TCB (`Tcb.ecn_flags`,
Linux's tp->ecn_flags), so a connection without ECN costs nothing more:
- OK: negotiated (set on an active open when our SYN asks for it and
  cleared if the SYN-ACK does not agree, as Linux's tcp_ecn_send_syn /
  tcp_ecn_rcv_synack);
- QUEUE_CWR: we reduced the window; the next new data segment carries CWR
  (RFC 3168 6.1.2, Linux TCP_ECN_QUEUE_CWR);
- DEMAND_CWR: a CE mark arrived; every segment we send carries ECE until the
  peer's CWR (RFC 3168 6.1.3, Linux TCP_ECN_DEMAND_CWR);
- SEEN: an ECT or CE segment arrived (Linux TCP_ECN_SEEN, `ss`'s ecnseen).
"""

from __future__ import annotations

from ustack.wire.tcp import CWR, ECE

# IP ECN codepoints (RFC 3168 5): the low two bits of the TOS byte.
NOT_ECT = 0
ECT_1 = 1
ECT_0 = 2
CE = 3

OK = 1
QUEUE_CWR = 2
DEMAND_CWR = 4
SEEN = 8

# RFC 3168 6.1.1: an "ECN-setup SYN" has ECE and CWR; the SYN-ACK, ECE only.
SETUP_SYN = ECE | CWR

# The IpExt counters Linux keeps per received packet, by codepoint (Linux
# counts InNoECTPkts too; ustack leaves the common case uncounted).
IN_COUNTERS = ("", "InECT1Pkts", "InECT0Pkts", "InCEPkts")


def server_accepts(setting: int, syn_flags: int, syn_ecn: int) -> bool:
    """A passive open agrees to ECN (Linux tcp_ecn_create_request): the SYN
    asks for it and `ecn` is 1 or 2. A SYN that is itself ECT is not an RFC
    3168 sender (SYNs are never ECT, 6.1.1): no ECN with it."""
    return bool(setting) and syn_flags & SETUP_SYN == SETUP_SYN and not syn_ecn


def synack_agrees(flags: int) -> bool:
    """RFC 3168 6.1.1 (Linux tcp_ecn_rcv_synack): ECE without CWR."""
    return flags & SETUP_SYN == ECE
