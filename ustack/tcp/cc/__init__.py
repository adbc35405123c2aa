"""Congestion control plug-ins (Linux tcp_congestion_ops in miniature).

`create(name, mss, cwnd)` builds a controller by the name Linux uses for it,
as `TCP_CONGESTION` and `--set congestion=NAME` give it.
"""

from __future__ import annotations

from ustack.tcp.cc.base import CongestionControl
from ustack.tcp.cc.bbr import Bbr
from ustack.tcp.cc.cubic import Cubic
from ustack.tcp.cc.reno import Reno

ALGORITHMS: dict[str, type[CongestionControl]] = {
    "bbr": Bbr,
    "cubic": Cubic,
    "reno": Reno,
    "newreno": Reno,  # NewReno's partial-ACK rule is in the loss recovery
}


def create(name: str, mss: int, cwnd: int) -> CongestionControl:
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        known = ", ".join(sorted(ALGORITHMS))
        raise ValueError(
            f"unknown congestion control {name!r}; known: {known}"
        ) from None
    return cls(mss, cwnd)


__all__ = ["ALGORITHMS", "CongestionControl", "create"]
