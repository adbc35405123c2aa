"""Seeded network impairment for any `Link`: loss, duplication, reordering,
delay with jitter, corruption, rate limiting and targeted drop rules.

This kernel has no netem (and many users' kernels won't either), so ustack
impairs its own link: `ImpairedLink(inner, inbound, outbound, rules)` wraps a
`TunLink` or a `MemoryLink` and implements the same `Link` protocol, so the
stack sees the impaired packet stream. *Inbound* means from the peer (the
kernel, or the other simulated stack) into ustack; *outbound* from ustack to
the peer.

Over a TUN with offload (virtio-net header) each GSO super segment of up to
64 KB is first cut into the MSS-sized packets a wire would carry
(`ustack.link.vnet.split_gso`), in both directions, so every impairment
below counts, drops, delays and limits wire packets with or without offload.

Every random decision of one direction comes from one `random.Random` seeded
from the spec's seed, so a failing run can be replayed with the same seed (in
virtual time exactly; against the real kernel as far as the kernel's own
timing allows). The two streams are keyed by direction ("SEED/in",
"SEED/out") unless the spec says which direction carries the data
(``data=in`` or ``data=out``): then they are keyed by role, "SEED/data" for
that direction and "SEED/ack" for the other. So with ``data=`` a benchmark
gives a ustack sender (data=out) and a kernel sender (data=in) the same
decision for the k-th packet of their data direction (and of their ACK
direction) at one seed; the packets themselves (handshake, pings) are
counted as they come. Without ``data=`` (the default of ``ustack up
--impair``) a seed keeps replaying what it did before the option existed.

Spec grammar (`parse_impair_spec`, used by `ustack up --impair SPEC`)::

    SPEC   := ITEM ("," ITEM)*
    ITEM   := [DIR "."] KEY "=" VALUE      # no DIR: both directions
            | "seed=" INT                  # default: random, shown by describe()
            | "data=" DIR                  # key the random streams by role
            | "drop=" RULE                 # repeatable
    DIR    := "in" | "out"
    KEY    := loss | dup | reorder | corrupt   # "5%" or a fraction "0.05"
            | ecn                              # (the same)
            | delay | jitter | hold            # "20ms", "0.5s", "300us" (bare: ms)
            | rate                             # per second: "10mbit", "125kB", "1MB"
                                               # (bare: bytes/s)
            | queue | gap | ecn_threshold      # integer (packets)
    RULE   := MATCH ":" DIR [":" COUNT] [":skip=" INT] [":after=" MATCH "/" DIR]
    MATCH  := TERM ("+" TERM)*            # all terms must hold
    TERM   := ["!"] FLAG | "pure" | "any"
    FLAG   := syn | ack | fin | rst | psh | urg | ece | cwr | data
    COUNT  := INT | "all"                  # default 1

Meaning of the keys:

- ``loss``: drop a packet with this probability.
- ``dup``: deliver a packet twice.
- ``reorder``: hold a packet back until ``gap`` (default 1) later packets of
  the same direction have gone by, or ``hold`` (default 50 ms) has passed.
- ``delay``/``jitter``: each packet is delayed by delay + uniform(-jitter,
  +jitter) (never below 0); jitter alone reorders too, like netem.
- ``corrupt``: flip one byte of the transport part (after the IP header, so
  every device still accepts the packet); the TCP/ICMP checksum must catch it.
- ``rate``/``queue``: token bucket at ``rate`` bytes/s with a burst of one
  MTU-sized packet, ``queue`` packets (default 100) waiting at most, tail drop.
- ``ecn``: mark an ECN-capable (ECT) packet Congestion Experienced (CE) with
  this probability, as an RFC 3168 router would instead of dropping it;
  packets that are not ECT pass untouched.
- ``ecn_threshold``: with ``rate``, mark ECT packets CE when they find more
  than this many packets waiting (a marking threshold like DCTCP's K or
  fq_codel's ce_threshold, in packets); non-ECT packets are only tail-dropped
  at ``queue`` as before. Both rewrite the IP header's ECN bits and checksum.

Targeted rules match TCP segments by flags: ``data`` means "has payload",
``pure`` is ``ack+!syn+!fin+!rst+!data`` (a bare ACK), ``any`` every TCP
segment. A rule drops the next COUNT matching segments in its direction,
after letting ``skip`` matches pass; with ``after=MATCH/DIR`` it is armed only
once a segment matching MATCH went by in DIR (a segment counts as gone by when
no rule dropped it). Rules run before the random impairments. Examples:

- ``drop=fin:in:1``: drop the next FIN from the peer (it will retransmit it).
- ``drop=ack:out:1:after=fin/in``: drop the ACK ustack sends after the peer's
  FIN (ustack's last ACK of an active close).
- ``drop=!fin:in:all:after=fin/out``: once ustack sent its FIN, drop every
  peer segment without FIN (the ACKs of that FIN): ustack retransmits its FIN.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import trio

from ustack.link import vnet
from ustack.link.base import Link
from ustack.wire.checksum import checksum

IN = "in"
OUT = "out"

_FLAG_BITS = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ece": 0x40,
    "cwr": 0x80,
}
DATA = 0x100  # pseudo flag: the segment carries payload
_ALL_TERMS = (*_FLAG_BITS, "data", "pure", "any")
_PURE = (_FLAG_BITS["ack"], _FLAG_BITS["syn"] | _FLAG_BITS["fin"] | 0x04 | DATA)

PROTO_TCP = 6


class ImpairSpecError(ValueError):
    """A malformed --impair spec; the message says what is wrong and how to fix it."""


# ----------------------------------------------------------------------
# Configuration values


@dataclass(frozen=True)
class Match:
    """Segments whose flags include all of `need` and none of `deny`."""

    need: int = 0
    deny: int = 0
    text: str = "any"

    def matches(self, flags: int) -> bool:
        return flags & self.need == self.need and not flags & self.deny


@dataclass(frozen=True)
class Rule:
    """Drop `count` segments matching `match` in `direction` (None: all)."""

    match: Match
    direction: str
    count: int | None = 1
    skip: int = 0
    after: tuple[Match, str] | None = None

    def describe(self) -> str:
        count = "all" if self.count is None else str(self.count)
        text = f"drop={self.match.text}:{self.direction}:{count}"
        if self.skip:
            text += f":skip={self.skip}"
        if self.after is not None:
            text += f":after={self.after[0].text}/{self.after[1]}"
        return text


@dataclass(frozen=True)
class Impairment:
    """Random impairments of one direction. Probabilities are 0..1, times s."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    gap: int = 1  # a reordered packet waits for this many later ones
    hold: float = 0.05  # ... or at most this long
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    rate: float | None = None  # bytes per second
    queue: int = 100  # packets waiting for the rate limiter
    ecn: float = 0.0  # CE-mark ECT packets with this probability
    ecn_threshold: int | None = None  # CE-mark ECT beyond this many queued
    seed: int | str = 0

    @property
    def active(self) -> bool:
        return bool(
            self.loss
            or self.dup
            or self.reorder
            or self.delay
            or self.jitter
            or self.corrupt
            or self.rate
            or self.ecn
        )


_PROB_KEYS = ("loss", "dup", "reorder", "corrupt", "ecn")
_TIME_KEYS = ("delay", "jitter", "hold")
_INT_KEYS = ("queue", "gap", "ecn_threshold")
_KEYS = (*_PROB_KEYS, *_TIME_KEYS, "rate", *_INT_KEYS)


@dataclass(frozen=True)
class ImpairConfig:
    """What `parse_impair_spec` returns: both directions, the rules, the seed."""

    inbound: Impairment = field(default_factory=Impairment)
    outbound: Impairment = field(default_factory=Impairment)
    rules: tuple[Rule, ...] = ()
    seed: int = 0
    data: str | None = None  # the direction carrying the data (data=)

    def describe(self) -> str:
        """A canonical spec that parses back to this config (seed included)."""
        items: list[str] = []
        default = Impairment()
        for key in _KEYS:
            a, b = getattr(self.inbound, key), getattr(self.outbound, key)
            if a == b:
                if a != getattr(default, key):
                    items.append(f"{key}={_format(key, a)}")
                continue
            for prefix, value in ((IN, a), (OUT, b)):
                if value != getattr(default, key):
                    items.append(f"{prefix}.{key}={_format(key, value)}")
        items.extend(rule.describe() for rule in self.rules)
        if self.data is not None:
            items.append(f"data={self.data}")
        items.append(f"seed={self.seed}")
        return ",".join(items)


def _format(key: str, value: float | int | None) -> str:
    if key in _PROB_KEYS:
        return f"{float(value or 0) * 100:g}%"
    if key in _TIME_KEYS:
        return f"{float(value or 0) * 1000:g}ms"
    if key == "rate":
        return f"{float(value or 0):.15g}B"  # no exponent: 1250000B parses
    return str(value)


# ----------------------------------------------------------------------
# Spec parsing

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s)?$")
_RATE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?)(bit|bps|b/s|b)?$", re.IGNORECASE)


def _parse_prob(key: str, raw: str) -> float:
    text = raw.strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
        else:
            value = float(text)
            if value > 1:
                raise ImpairSpecError(
                    f"{key}={raw}: write a percentage like {key}={text}% "
                    "(or a fraction between 0 and 1)"
                )
    except ValueError as exc:
        if isinstance(exc, ImpairSpecError):
            raise
        raise ImpairSpecError(
            f"{key}={raw}: expected a percentage like 5% or a fraction like 0.05"
        ) from None
    if not 0 <= value <= 1:
        raise ImpairSpecError(f"{key}={raw}: must be between 0% and 100%")
    return value


def _parse_duration(key: str, raw: str) -> float:
    m = _DURATION.match(raw.strip())
    if m is None:
        raise ImpairSpecError(
            f"{key}={raw}: expected a duration like 20ms, 0.5s or 300us"
        )
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-3}[m.group(2)]
    return float(m.group(1)) * scale


def _parse_rate(raw: str) -> float:
    m = _RATE.match(raw.strip())
    if m is None:
        raise ImpairSpecError(
            f"rate={raw}: expected a rate like 10mbit, 500kbit, 125kB or 1MB "
            "(per second)"
        )
    number, prefix, unit = m.groups()
    value = float(number) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[prefix.lower()]
    if unit is not None and unit.lower() in ("bit", "bps"):
        value /= 8
    elif unit is not None and unit == "b":  # lower-case b alone is ambiguous
        raise ImpairSpecError(
            f"rate={raw}: write bit rates as ...bit (e.g. 10mbit) and byte "
            "rates as ...B (e.g. 125kB)"
        )
    if value <= 0:
        raise ImpairSpecError(f"rate={raw}: must be positive")
    return value


def _parse_int(key: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImpairSpecError(f"{key}={raw}: expected an integer") from None
    if value < minimum:
        raise ImpairSpecError(f"{key}={raw}: must be at least {minimum}")
    return value


def parse_match(text: str) -> Match:
    """`fin`, `ack+!data`, `pure`, `any` -> Match."""
    need = deny = 0
    terms = text.strip().lower().split("+")
    for term in terms:
        negate = term.startswith("!")
        name = term[1:] if negate else term
        if name == "any" and not negate:
            continue
        if name == "pure" and not negate:
            need |= _PURE[0]
            deny |= _PURE[1]
            continue
        if name == "data":
            bit = DATA
        elif name in _FLAG_BITS:
            bit = _FLAG_BITS[name]
        else:
            raise ImpairSpecError(
                f"unknown segment match {term!r} in {text!r}; use "
                f"{', '.join(_ALL_TERMS)} joined with + and negated with !"
            )
        if negate:
            deny |= bit
        else:
            need |= bit
    if need & deny:
        raise ImpairSpecError(f"segment match {text!r} can never match")
    return Match(need, deny, text.strip().lower())


def _parse_direction(text: str, where: str) -> str:
    d = text.strip().lower()
    if d not in (IN, OUT):
        raise ImpairSpecError(
            f"{where}: direction must be 'in' (into ustack) or 'out' "
            f"(from ustack), got {text!r}"
        )
    return d


def parse_rule(text: str) -> Rule:
    """`fin:in:1`, `ack:out:1:after=fin/in`, `!fin:in:all:skip=2` -> Rule."""
    where = f"drop={text}"
    parts = text.split(":")
    if len(parts) < 2 or not parts[0].strip():
        raise ImpairSpecError(
            f"{where}: expected drop=MATCH:DIR[:COUNT][:skip=N][:after=MATCH/DIR], "
            "e.g. drop=fin:in:1"
        )
    match = parse_match(parts[0])
    direction = _parse_direction(parts[1], where)
    count: int | None = 1
    skip = 0
    after: tuple[Match, str] | None = None
    rest = parts[2:]
    if rest and "=" not in rest[0]:
        raw = rest.pop(0).strip().lower()
        count = None if raw == "all" else _parse_int(f"{where}: count", raw, 1)
    for extra in rest:
        key, sep, value = extra.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("skip", "after"):
            raise ImpairSpecError(
                f"{where}: unexpected {extra!r}; after MATCH:DIR:COUNT only "
                "skip=N and after=MATCH/DIR may follow"
            )
        if key == "skip":
            skip = _parse_int(f"{where}: skip", value, 0)
        else:
            m, slash, d = value.partition("/")
            if not slash:
                raise ImpairSpecError(
                    f"{where}: after= wants MATCH/DIR, e.g. after=fin/in"
                )
            after = (parse_match(m), _parse_direction(d, where))
    return Rule(match, direction, count, skip, after)


def stream_seeds(seed: int, data: str | None) -> tuple[str, str]:
    """The (inbound, outbound) random streams' seeds: keyed by direction,
    or with `data` (the direction carrying the data) by role, so that the
    data direction's stream is the same whichever way the data flows."""
    if data is None:
        return f"{seed}/{IN}", f"{seed}/{OUT}"
    if data == IN:
        return f"{seed}/data", f"{seed}/ack"
    return f"{seed}/ack", f"{seed}/data"


def parse_impair_spec(text: str, *, seed: int | None = None) -> ImpairConfig:
    """Parse an `--impair` spec (grammar in the module docstring).

    Without `seed=` in the spec, `seed` is used, or a random one: the
    config's `describe()` shows it so the run can be replayed.
    """
    values: dict[str, dict[str, object]] = {IN: {}, OUT: {}}
    rules: list[Rule] = []
    spec_seed: int | None = None
    data: str | None = None
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip():
            raise ImpairSpecError(
                f"expected KEY=VALUE, got {item!r} (e.g. loss=5%,delay=20ms)"
            )
        if key == "drop":
            rules.append(parse_rule(value))
            continue
        if key == "seed":
            spec_seed = _parse_int("seed", value, 0)
            continue
        if key == "data":
            data = _parse_direction(value, item)
            continue
        prefix, dot, name = key.rpartition(".")
        directions = [_parse_direction(prefix, item)] if dot else [IN, OUT]
        if name not in _KEYS:
            raise ImpairSpecError(
                f"unknown impairment {key!r} in {item!r}; known: "
                f"{', '.join(_KEYS)}, seed, data, drop (prefix in. or out. for one "
                "direction)"
            )
        parsed: object
        if name in _PROB_KEYS:
            parsed = _parse_prob(key, value)
        elif name in _TIME_KEYS:
            parsed = _parse_duration(key, value)
        elif name == "rate":
            parsed = _parse_rate(value)
        else:
            parsed = _parse_int(key, value, 0 if name == "ecn_threshold" else 1)
        for d in directions:
            values[d][name] = parsed
    if spec_seed is None:
        spec_seed = (
            seed if seed is not None else random.SystemRandom().randrange(1 << 31)
        )
    for d in (IN, OUT):
        if "ecn_threshold" in values[d] and "rate" not in values[d]:
            raise ImpairSpecError(
                "ecn_threshold marks packets waiting for the rate limiter: "
                f"give a rate too (e.g. rate=10mbit,ecn_threshold=20) for {d}"
            )
    in_seed, out_seed = stream_seeds(spec_seed, data)
    inbound = Impairment(seed=in_seed, **values[IN])  # type: ignore[arg-type]
    outbound = Impairment(seed=out_seed, **values[OUT])  # type: ignore[arg-type]
    return ImpairConfig(inbound, outbound, tuple(rules), spec_seed, data)


# ----------------------------------------------------------------------
# The per-direction pipeline


def tcp_flags(packet: bytes, at: int = 0) -> int | None:
    """TCP flags (plus `DATA` when there is payload) of the IPv4 packet that
    starts at `at` (after a virtio-net header: `vnet.LENGTH`), or None for
    anything that is not a well-formed unfragmented TCP segment.

    Header fields only: checksums are not verified here (the stack does)."""
    n = len(packet) - at
    if n < 20 or packet[at] >> 4 != 4 or packet[at + 9] != PROTO_TCP:
        return None
    ihl = (packet[at] & 0x0F) * 4
    total = min(int.from_bytes(packet[at + 2 : at + 4], "big"), n)
    if ihl < 20 or total < ihl + 20:
        return None
    if int.from_bytes(packet[at + 6 : at + 8], "big") & 0x3FFF:
        return None  # fragment
    doff = (packet[at + ihl + 12] >> 4) * 4
    flags: int = packet[at + ihl + 13]
    if total - ihl - doff > 0:
        flags |= DATA
    return flags


class _RuleState:
    __slots__ = ("rule", "armed", "skipped", "dropped")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.armed = rule.after is None
        self.skipped = 0
        self.dropped = 0

    @property
    def spent(self) -> bool:
        return self.rule.count is not None and self.dropped >= self.rule.count


class _Rules:
    """Targeted rules of both directions (an `after` may look across)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.states = [_RuleState(r) for r in rules]

    @staticmethod
    def involve(rule: Rule, direction: str) -> bool:
        """Does `rule` need to see the packets of `direction`?"""
        return rule.direction == direction or (
            rule.after is not None and rule.after[1] == direction
        )

    def dropped_by(self, direction: str, packet: bytes, at: int = 0) -> Rule | None:
        """The rule that drops this packet, or None (then arm `after` rules)."""
        flags = tcp_flags(packet, at)
        if flags is None:
            return None
        for st in self.states:
            rule = st.rule
            if (
                rule.direction != direction
                or not st.armed
                or st.spent
                or not rule.match.matches(flags)
            ):
                continue
            if st.skipped < rule.skip:
                st.skipped += 1
                continue
            st.dropped += 1
            return rule
        for st in self.states:
            after = st.rule.after
            if (
                not st.armed
                and after is not None
                and after[1] == direction
                and after[0].matches(flags)
            ):
                st.armed = True
        return None


class _Held:
    __slots__ = ("countdown", "deadline", "packet")

    def __init__(self, countdown: int, deadline: float, packet: bytes) -> None:
        self.countdown = countdown
        self.deadline = deadline
        self.packet = packet


class Pipe:
    """One direction: packets go in with `push`, come out with `pop_due`.

    With `vnet_complete` (True or False: the link's packets start with a
    virtio-net header) every GSO super segment is first cut into the packets
    a wire would carry (`vnet.split_gso`), so loss, rate and the rest act per
    wire packet; `vnet_complete` says whether the pieces get full checksums
    (into the stack) or partial ones for the kernel to complete.
    """

    def __init__(
        self,
        direction: str,
        impairment: Impairment | None,
        rules: _Rules,
        mtu: int,
        counters: Counter[str],
        on_rule: Callable[[str, Rule, bytes], None] | None = None,
        vnet_complete: bool | None = None,
    ) -> None:
        self.direction = direction
        self.vnet_complete = vnet_complete
        self.at = 0 if vnet_complete is None else vnet.LENGTH  # IPv4 starts here
        self.imp = impairment if impairment is not None else Impairment()
        self.rng = random.Random(self.imp.seed)
        self.rules = rules
        self.counters = counters
        self.on_rule = on_rule
        self._prefix = direction + "."
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._held: list[_Held] = []  # reordered packets waiting to follow
        self._due: deque[bytes] = deque()
        # Token bucket (burst: one MTU-sized packet).
        self._burst = float(max(mtu, 1500))
        self._tb_time = -math.inf
        self._tb_tokens = self._burst
        self._rate_departures: deque[float] = deque()
        self.passthrough = not self.imp.active and not any(
            rules.involve(st.rule, direction) for st in rules.states
        )

    # -- input side
    def push(self, packet: bytes, now: float) -> None:
        complete = self.vnet_complete
        if complete is not None and not self.passthrough:
            pieces = vnet.split_gso(packet, complete=complete)
            if len(pieces) > 1:
                self.counters[self._prefix + "gso_split"] += 1
            for piece in pieces:
                self._push_one(piece, now)
        else:
            self._push_one(packet, now)

    def _push_one(self, packet: bytes, now: float) -> None:
        c = self.counters
        p = self._prefix
        c[p + "packets"] += 1
        rule = self.rules.dropped_by(self.direction, packet, self.at)
        if rule is not None:
            c[p + "rule_drop"] += 1
            if self.on_rule is not None:
                self.on_rule(self.direction, rule, packet[self.at :])
            return
        imp, rng = self.imp, self.rng
        if imp.loss and rng.random() < imp.loss:
            c[p + "loss"] += 1
            return
        if imp.ecn and self._ect(packet) and rng.random() < imp.ecn:
            packet = self._mark_ce(packet)
        if imp.corrupt and rng.random() < imp.corrupt:
            packet = self._corrupt(packet)
            c[p + "corrupt"] += 1
        copies = 1
        if imp.dup and rng.random() < imp.dup:
            copies = 2
            c[p + "dup"] += 1
        for _ in range(copies):
            release = now
            if imp.rate:
                departure = self._rate_departure(len(packet) - self.at, now)
                if departure is None:
                    c[p + "rate_drop"] += 1
                    continue
                release = departure
                threshold = imp.ecn_threshold
                if (
                    threshold is not None
                    and len(self._rate_departures) > threshold + 1
                    and self._ect(packet)
                ):
                    packet = self._mark_ce(packet)  # more than K ahead of it
            if imp.delay or imp.jitter:
                d = imp.delay
                if imp.jitter:
                    d += rng.uniform(-imp.jitter, imp.jitter)
                release += max(d, 0.0)
            self._seq += 1
            heapq.heappush(self._heap, (release, self._seq, packet))

    def _ect(self, packet: bytes) -> bool:
        """An IPv4 packet whose ECN field says ECT(0), ECT(1) or CE."""
        at = self.at
        return len(packet) >= at + 20 and bool(packet[at + 1] & 3)

    def _mark_ce(self, packet: bytes) -> bytes:
        """RFC 3168 5: set CE (both ECN bits), redo the header checksum."""
        at = self.at
        if packet[at + 1] & 3 == 3:
            return packet
        ihl = (packet[at] & 0x0F) * 4
        buf = bytearray(packet)
        buf[at + 1] |= 3
        buf[at + 10 : at + 12] = b"\0\0"
        csum = checksum(memoryview(buf)[at : at + ihl])
        buf[at + 10 : at + 12] = csum.to_bytes(2, "big")
        self.counters[self._prefix + "ce_mark"] += 1
        return bytes(buf)

    def _corrupt(self, packet: bytes) -> bytes:
        at = self.at
        if at:  # the receiver must verify: no partial or vouched-for checksum
            packet = vnet.complete_checksum(packet)
        ihl = (packet[at] & 0x0F) * 4 if len(packet) > at else 0
        if len(packet) <= at + ihl or ihl < 20:
            return packet
        buf = bytearray(packet)
        i = self.rng.randrange(at + ihl, len(buf))
        buf[i] ^= self.rng.randrange(1, 256)
        return bytes(buf)

    def _rate_departure(self, size: int, now: float) -> float | None:
        rate = self.imp.rate
        assert rate
        departures = self._rate_departures
        while departures and departures[0] <= now:
            departures.popleft()
        if len(departures) >= self.imp.queue:
            return None  # tail drop
        start = max(now, self._tb_time)
        tokens = min(self._burst, self._tb_tokens + (start - self._tb_time) * rate)
        if tokens >= size:
            departure = start
            tokens -= size
        else:
            departure = start + (size - tokens) / rate
            tokens = 0.0
        self._tb_time, self._tb_tokens = departure, tokens
        if departure > now:
            departures.append(departure)
        return departure

    # -- output side
    def next_release(self) -> float | None:
        """When `pop_due` will next have something (None: nothing pending)."""
        best = self._heap[0][0] if self._heap else None
        for entry in self._held:
            if best is None or entry.deadline < best:
                best = entry.deadline
        return best

    def has_due(self, now: float) -> bool:
        if self._due:
            return True
        t = self.next_release()
        return t is not None and t <= now

    def _release_held(self, ready: Callable[[_Held], bool]) -> None:
        keep: list[_Held] = []
        for entry in self._held:
            if ready(entry):
                self._due.append(entry.packet)
            else:
                keep.append(entry)
        self._held = keep

    def pop_due(self, now: float, max_packets: int = 1 << 30) -> list[bytes]:
        """Packets whose time has come, reordering applied, at most max_packets."""
        due = self._due
        heap = self._heap
        imp, rng = self.imp, self.rng
        while heap and heap[0][0] <= now:
            _, _, packet = heapq.heappop(heap)
            if imp.reorder and rng.random() < imp.reorder:
                self._held.append(_Held(imp.gap, now + imp.hold, packet))
                self.counters[self._prefix + "reorder"] += 1
                continue
            due.append(packet)
            if self._held:  # held packets follow once `gap` later ones went by
                for entry in self._held:
                    entry.countdown -= 1
                self._release_held(lambda e: e.countdown <= 0)
        if self._held:
            self._release_held(lambda e: e.deadline <= now)
        n = min(len(due), max_packets)
        self.counters[self._prefix + "delivered"] += n
        return [due.popleft() for _ in range(n)]


# ----------------------------------------------------------------------
# The link wrapper


class ImpairedLink:
    """A `Link` that impairs the packets of `inner` in both directions.

    Delayed packets wait in per-direction heaps. Inbound ones are handed out
    by `read_batch` once due (`wait_readable` wakes up for them with a trio
    deadline); outbound ones are written to `inner` on the next link call
    once due: the stack's loop sits in `wait_readable` whenever it is idle,
    which wakes up at the next outbound release time, so no extra task is
    needed.
    """

    def __init__(
        self,
        inner: Link,
        inbound: Impairment | None = None,
        outbound: Impairment | None = None,
        rules: Sequence[Rule] = (),
        *,
        on_rule: Callable[[str, Rule, bytes], None] | None = None,
    ) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        # A TUN with offload: packets carry virtio-net headers (the stack
        # adds and strips them); the pipes cut super segments into wire
        # packets, complete for the stack, partial for the kernel.
        self.vnet_hdr = bool(getattr(inner, "vnet_hdr", False))
        self.counters: Counter[str] = Counter()
        self._rules = _Rules(rules)
        into_stack, into_kernel = (True, False) if self.vnet_hdr else (None, None)
        self.inbound = Pipe(
            IN, inbound, self._rules, inner.mtu, self.counters, on_rule, into_stack
        )
        self.outbound = Pipe(
            OUT, outbound, self._rules, inner.mtu, self.counters, on_rule, into_kernel
        )

    @classmethod
    def from_config(
        cls,
        inner: Link,
        config: ImpairConfig,
        *,
        on_rule: Callable[[str, Rule, bytes], None] | None = None,
    ) -> ImpairedLink:
        return cls(
            inner, config.inbound, config.outbound, config.rules, on_rule=on_rule
        )

    def add_rule(self, rule: Rule) -> None:
        """Add a targeted rule while running (e.g. "the peer vanishes now")."""
        self._rules.states.append(_RuleState(rule))
        for pipe in (self.inbound, self.outbound):
            if _Rules.involve(rule, pipe.direction):
                pipe.passthrough = False

    def _release_outbound(self, now: float) -> None:
        for packet in self.outbound.pop_due(now):
            self.inner.write(packet)

    async def wait_readable(self) -> None:
        inbound, outbound, inner = self.inbound, self.outbound, self.inner
        if inbound.passthrough and outbound.passthrough:
            await inner.wait_readable()
            return
        while True:
            now = trio.current_time()
            self._release_outbound(now)
            if inbound.has_due(now):
                await trio.lowlevel.checkpoint()
                return
            times = [
                t
                for t in (inbound.next_release(), outbound.next_release())
                if t is not None
            ]
            if not times:
                await inner.wait_readable()
                return
            with trio.move_on_at(min(times)) as scope:
                await inner.wait_readable()
            if not scope.cancelled_caught:
                return

    def read_batch(self, max_packets: int = 256) -> list[bytes]:
        inbound = self.inbound
        if inbound.passthrough and self.outbound.passthrough:
            return self.inner.read_batch(max_packets)
        now = trio.current_time()
        self._release_outbound(now)
        for packet in self.inner.read_batch(max_packets):
            inbound.push(packet, now)
        return inbound.pop_due(now, max_packets)

    def write(self, packet: bytes) -> None:
        outbound = self.outbound
        if outbound.passthrough:
            self.inner.write(packet)
            return
        now = trio.current_time()
        outbound.push(packet, now)
        self._release_outbound(now)

    def close(self) -> None:
        self.inner.close()

    def summary(self) -> str:
        """One line of counters, e.g. for `ustack up` at exit."""
        parts = [f"{k}={v}" for k, v in sorted(self.counters.items()) if v]
        return " ".join(parts) if parts else "nothing impaired"


def with_seed(config: ImpairConfig, seed: int) -> ImpairConfig:
    """The same config with another seed (e.g. to run one spec for many seeds)."""
    in_seed, out_seed = stream_seeds(seed, config.data)
    return replace(
        config,
        seed=seed,
        inbound=replace(config.inbound, seed=in_seed),
        outbound=replace(config.outbound, seed=out_seed),
    )

