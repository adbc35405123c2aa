"""Every counter the stack increments is a standard one, so `ustack nstat`
lists it at 0 too (as `nstat -az` does) and a typo in a name shows up here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ustack.observe.introspect import STANDARD_COUNTERS

SOURCE = Path(__file__).resolve().parents[2] / "ustack"
# The name shapes of the MIBs and Linux's TcpExt/IpExt, as nstat prints them.
COUNTER_SHAPE = re.compile(
    r"^(TCP|Tcp|Icmp|Udp|PAWS|Syncookies|TW|In|Out|Reasm|Frag|Listen|Active|"
    r"Passive|Estab|Attempt|Retrans|Orphan|Prune|Ofo|Internal)[A-Za-z0-9]*$"
)


def _class_names(tree: ast.AST) -> set[str]:
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}


def counter_like_strings() -> set[str]:
    """String constants in ustack/ shaped like counter names, minus the names
    of classes (e.g. "TcpStream" in an __all__ or a repr)."""
    found: set[str] = set()
    classes: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        classes |= _class_names(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and COUNTER_SHAPE.match(node.value)
            ):
                found.add(node.value)
    return found - classes - {"Info"}


def test_the_scan_finds_counters_from_every_layer() -> None:
    found = counter_like_strings()
    # Names incremented through a variable (rate-limit results, undo kinds,
    # ECN codepoints, ICMP type tables) are string constants too.
    for name in (
        "PAWSDisorderedAck",
        "IcmpOutRateLimitHost",
        "TCPFullUndo",
        "InECT1Pkts",
        "IcmpInTimeExcds",
        "UdpNoPorts",
        "TWReused",
    ):
        assert name in found
    assert len(found) > 80


def test_every_incremented_counter_is_standard() -> None:
    missing = sorted(counter_like_strings() - set(STANDARD_COUNTERS))
    assert missing == [], f"add to STANDARD_COUNTERS: {missing}"


def test_standard_counters_are_unique() -> None:
    assert len(STANDARD_COUNTERS) == len(set(STANDARD_COUNTERS))
