"""Docs are code: every ```python block of README.md and docs/*.md runs, so none can rot.

Each block is written to ``snippet.py`` and run on its own (``python snippet.py``, a fresh
process) the way a reader would run it from a checkout: the working directory is a temporary
folder holding a link ``examples`` to the repository's examples, and ``FREQDATA_DATA`` names
the real data (``../shared/data`` by default), so a block reads its data with
``DATA = os.environ.get("FREQDATA_DATA", "../shared/data")`` or from ``examples/``.

A block that needs what the test machines do not have (a GPU, a cluster, object storage)
is preceded by a marker with the reason, and is skipped with it::

    <!-- skip: needs CUDA -->
    ```python
    ...
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK_TIMEOUT_S = 600
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*skip:\s*(.+?)\s*-->\s*$")


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of every ```python block of ``page``."""
    text = page.read_text()
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip().splitlines()
        skip = _SKIP.search(before[-1]) if before else None
        found.append((line, m.group(1), skip.group(1) if skip else None))
    return found


BLOCKS = [
    pytest.param(page, line, code, skip, id=f"{page.relative_to(REPO)}:{line}")
    for page in PAGES
    for line, code, skip in python_blocks(page)
]


def test_the_pages_have_blocks():
    assert len(BLOCKS) >= 5  # the collector finds them (a broken regex would skip them all)


@pytest.mark.parametrize(("page", "line", "code", "skip"), BLOCKS)
def test_python_block_runs(page, line, code, skip, tmp_path, data_dir):
    if skip:
        pytest.skip(skip)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / "snippet.py").write_text(code)
    env = {**os.environ, "FREQDATA_DATA": str(DATA.resolve()), "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    r = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)  # fmt: skip
    where = f"{page.relative_to(REPO)}:{line}"
    assert r.returncode == 0, f"{where} failed:\n{code}\n--- stderr:\n{r.stderr[-4000:]}"
