"""Shared fixtures.

Root-only fixtures (`netns`, `ustack_up`) fail, never skip, without root: a
skipped integration suite would look like a passing one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from netns import Netns, UstackProcess, create_netns, start_ustack  # noqa: E402

from ustack.tcp.cc.bbr import seed_phase_rng  # noqa: E402

# Defaults every test stack gets; tests append their own flags.
# msl=0.5 keeps ustack's TIME_WAIT (2*MSL) at one second.
TEST_STACK_ARGS = ("--set", "msl=0.5")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests need root (network namespaces, TUN): "
            "run as root/sudo, e.g. sudo ./tools/test.sh",
            pytrace=False,
        )
    for tool in ("ip", "ss"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run .ci/setup.sh", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    integration_dir = ROOT / "tests" / "integration"
    for item in items:
        if integration_dir in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _integration_needs_root(request: pytest.FixtureRequest) -> None:
    """Tests marked `integration` (all of tests/integration/) fail without root."""
    if request.node.get_closest_marker("integration") is not None:
        require_root()


@pytest.fixture(autouse=True)
def _repeatable_bbr_phase() -> None:
    """BBR starts PROBE_BW at a random phase (as Linux); every test sees the
    same sequence of phases, so a virtual-time result is reproducible."""
    seed_phase_rng(0)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh network namespace (`ustack-t-<hex>`, lo up); always deleted."""
    require_root()
    ns = create_netns("ustack-t-")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def ustack_up(netns: Netns, tmp_path: Path) -> Iterator[Callable[..., UstackProcess]]:
    """Factory: `ustack_up(*flags)` starts `ustack up` in the test's namespace.

    Flags: --ifname ustack0 --host-ip 10.203.0.1/24 --ip 10.203.0.2
    --set msl=0.5, then the given ones. Returns once `ready` was printed. At
    teardown the stack gets SIGTERM and must exit 0; its output is shown on
    failure.
    """
    started: list[UstackProcess] = []

    def start(*flags: str, ready_timeout: float = 20.0) -> UstackProcess:
        stack = start_ustack(
            netns,
            *TEST_STACK_ARGS,
            *flags,
            log_dir=str(tmp_path),
            ready_timeout=ready_timeout,
        )
        started.append(stack)
        return stack

    yield start
    failures = []
    for stack in started:
        code = stack.stop()
        if code != 0:
            failures.append(f"ustack up exited with {code}, not 0\n{stack.describe()}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
