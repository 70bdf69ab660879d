"""scripts/setup.sh's guards, run from the script itself: a pip ``--report`` that plans any
``nvidia-*`` or ``triton`` package is refused (no CUDA wheels on a CPU machine), and the
system check finds nothing missing on a machine that builds the extension."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _start(name: str) -> str:
    """The first line of the shell function ``name`` in setup.sh."""
    for line in SETUP.read_text().splitlines():
        if line.startswith(f"{name}() {{"):
            return line
    raise AssertionError(f"{name} not in setup.sh")


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run setup.sh's shell function ``name`` alone (its text up to the closing brace)."""
    lines = SETUP.read_text().splitlines()
    start = lines.index(_start(name))
    body = "\n".join(lines[start : lines.index("}", start) + 1])
    script = f"{body}\n{name} \"$@\""
    return subprocess.run(["bash", "-c", script, "setup", *args], cwd=REPO, text=True,
                          capture_output=True, env={"PATH": "/usr/bin:/bin",
                                                    "PYTHON": sys.executable})  # fmt: skip


@pytest.mark.parametrize(
    ("names", "ok"),
    [
        (["torch", "filelock", "sympy"], True),
        (["torch", "nvidia-cublas-cu12", "nvidia-cudnn-cu12"], False),
        (["torch", "triton"], False),
    ],
)
def test_cuda_packages_are_refused(tmp_path, names, ok):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the project's .venv (scripts/setup.sh)")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"install": [{"metadata": {"name": n, "version": "1"}}
                                              for n in names]}))  # fmt: skip
    r = _run("cuda_free", str(report))
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        assert "CUDA packages" in r.stderr and names[1] in r.stderr


def test_system_check_finds_nothing_missing_here():
    """This machine builds the C extension, so nothing is reported missing."""
    r = _run("missing_packages")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
