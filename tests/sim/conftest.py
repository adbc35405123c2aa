"""Two ustack stacks back to back over the in-memory link, in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ustack import Settings, Stack
from ustack.link.memory import MemoryLink, memory_link_pair

A_IP = "10.0.0.1"
B_IP = "10.0.0.2"


@dataclass
class Net:
    a: Stack
    b: Stack
    link_a: MemoryLink
    link_b: MemoryLink


def sim_settings(**changes: object) -> Settings:
    return Settings(msl=0.5, shutdown_grace=0.5).replace(**changes)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    """Needs the test itself to take `autojump_clock` (pytest-trio only sees a
    clock among the test function's own arguments)."""
    link_a, link_b = memory_link_pair()
    async with (
        Stack(link_a, A_IP, sim_settings(), network="10.0.0.0/24") as a,
        Stack(link_b, B_IP, sim_settings(), network="10.0.0.0/24") as b,
    ):
        yield Net(a, b, link_a, link_b)
