"""The output pass of a request/response turn (Tcb._send_one_small: nothing
in flight, the write fits one segment) against the full pass, with the
oracle of test_sender_fastpath (every output pass also run on a deep copy
with `Tcb.fast_output` off; every slot must agree). Traffic: requests and
replies of sizes around one MSS, windows that shut or shrink, Nagle on or
off, FIN after a reply, idle gaps past the RTO (restart after idle), loss,
on both ends."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcb_harness import Pair
from tests.unit.test_sender_fastpath import Oracle, _Impaired, oracle  # noqa: F401
from ustack.config import Settings
from ustack.tcp.tcb import Tcb

_ORIGINAL = Tcb._send_one_small


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.0, 0.1]),
    ts=st.booleans(),
    sack=st.booleans(),
    ecn=st.sampled_from([0, 1]),
    rcv_buf=st.sampled_from([65535, 3000]),
)
def test_request_response_turns(
    oracle: Oracle,  # noqa: F811
    seed: int, loss: float, ts: bool, sack: bool, ecn: int, rcv_buf: int,
) -> None:
    rng = random.Random(seed)
    s = Settings(timestamps=ts, sack=sack, ecn=ecn, snd_buf=60000,
                 rcv_buf=rcv_buf, msl=0.5)
    pair = Pair(settings=s, mss=536, delay=0.005)
    a, b = pair.establish()
    pair.net = _Impaired(rng, loss, 0.0, 0.0)
    taken = 0

    def counted(tcb: Tcb, *args: object) -> bool:
        nonlocal taken
        done = _ORIGINAL(tcb, *args)  # type: ignore[arg-type]
        taken += done
        return done

    Tcb._send_one_small = counted  # type: ignore[method-assign,assignment]
    try:
        for turn in range(30):
            for tcb in (a, b):
                tcb.nodelay = rng.random() < 0.5
            a.send(rng.randbytes(rng.choice([1, 46, 535, 536, 537, 1200])))
            pair.pump()
            pair.advance(rng.choice([0.0, 0.01, 0.05]))
            b.read(rng.choice([10, 1 << 20]))
            b.send(rng.randbytes(rng.choice([1, 536, 1134, 2000])))
            if turn == 29 and rng.random() < 0.5:
                b.close(pair.now)  # FIN after the last reply
            pair.pump()
            pair.advance(rng.choice([0.0, 0.01, 0.3, 3.0]))  # 3 s: idle > RTO
            a.read(1 << 20)
            pair.pump()
    finally:
        Tcb._send_one_small = _ORIGINAL  # type: ignore[method-assign]
    assert oracle.outputs > 0
    if loss == 0.0:
        assert taken > 0  # the shortcut ran (and matched the full pass)
