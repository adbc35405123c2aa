"""`.ci/setup.sh` puts a launcher on root's PATH so that `sudo ustack up`
works from any directory (sudo's secure_path drops the venv)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import ustack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_setup(launcher: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".ci" / "setup.sh")],
        env={**os.environ, "USTACK_LAUNCHER": str(launcher)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_setup_installs_a_launcher_that_works_anywhere(tmp_path: Path) -> None:
    launcher = tmp_path / "bin" / "ustack"
    setup = run_setup(launcher)
    assert setup.returncode == 0, setup.stderr
    assert os.access(launcher, os.X_OK)
    assert str(ROOT / ".venv" / "bin" / "ustack") in launcher.read_text()
    # A minimal environment, another directory: what sudo gives the command.
    out = subprocess.run(
        [str(launcher), "--version"],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == f"ustack {ustack.__version__}"
    again = run_setup(launcher)  # idempotent: nothing to do the second time
    assert again.returncode == 0 and "installed" not in again.stdout


def test_setup_leaves_a_foreign_ustack_alone(tmp_path: Path) -> None:
    launcher = tmp_path / "ustack"
    launcher.write_text("#!/bin/sh\necho somebody else's\n")
    setup = run_setup(launcher)
    assert setup.returncode == 0
    assert "is not ours; left alone" in setup.stderr
    assert launcher.read_text() == "#!/bin/sh\necho somebody else's\n"
