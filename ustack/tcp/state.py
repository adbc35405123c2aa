"""The eleven TCP states (RFC 9293 3.3.2)."""

from __future__ import annotations

import enum


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    @property
    def ss_name(self) -> str:
        """The name `ss -tan` prints for this state."""
        return _SS_NAMES[self]


_SS_NAMES = {
    State.CLOSED: "UNCONN",
    State.LISTEN: "LISTEN",
    State.SYN_SENT: "SYN-SENT",
    State.SYN_RECEIVED: "SYN-RECV",
    State.ESTABLISHED: "ESTAB",
    State.FIN_WAIT_1: "FIN-WAIT-1",
    State.FIN_WAIT_2: "FIN-WAIT-2",
    State.CLOSE_WAIT: "CLOSE-WAIT",
    State.CLOSING: "CLOSING",
    State.LAST_ACK: "LAST-ACK",
    State.TIME_WAIT: "TIME-WAIT",
}

# States in which the peer may still send us data.
RECEIVING = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
# States in which we may still send new data.
SENDING = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
