"""Every Python example in README's "Python API" and "Ways in" sections runs,
as printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from netns import Netns

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def examples(heading: str) -> list[str]:
    text = README.read_text()
    section = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def ways_in_examples() -> list[str]:
    return examples("Ways in")


def test_readme_has_the_api_examples() -> None:
    assert len(examples("Python API")) >= 3


@pytest.mark.parametrize("index", range(len(examples("Python API"))))
def test_readme_api_example_runs(netns: Netns, tmp_path: Path, index: int) -> None:
    script = tmp_path / "example.py"
    script.write_text(examples("Python API")[index])
    out = netns.run(sys.executable, script, timeout=90, cwd=tmp_path)
    assert out.stdout.strip(), out.stderr.decode()[-2000:]


def test_readme_has_the_examples() -> None:
    examples = ways_in_examples()
    assert len(examples) >= 5, len(examples)


@pytest.mark.parametrize("index", range(len(ways_in_examples())))
def test_readme_example_runs(netns: Netns, tmp_path: Path, index: int) -> None:
    script = tmp_path / "example.py"
    script.write_text(ways_in_examples()[index])
    (tmp_path / "index.html").write_text("<p>served by the kernel side</p>\n")
    out = netns.run(sys.executable, script, timeout=90, cwd=tmp_path)
    assert out.stdout.strip(), out.stderr.decode()[-2000:]
