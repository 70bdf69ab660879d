"""Shared fixtures: the real data in ../shared/data (override with FREQDATA_DATA), and a
check after every test that it left no process behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("FREQDATA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ZOO = DATA / "jpeg-zoo"
COCO_VAL = DATA / "images-seg" / "coco-mini" / "val2017"
ANTS_BEES = DATA / "images-cls" / "hymenoptera_data"
IMAGENET = DATA / "imagenet-sample" / "images"  # real 4:4:4 / 4:2:0 / 4:2:2 / gray mix


def ants_bees(split: str, per_class: int):
    """The first ``per_class`` ants and bees images of ``split`` (sorted names) as
    :class:`freqdata.sources.Sources`, labels 0 = ants, 1 = bees."""
    from freqdata.sources import Sources

    paths, labels = [], []
    for k, cls in enumerate(("ants", "bees")):
        found = sorted((ANTS_BEES / split / cls).glob("*.jpg"))[:per_class]
        paths += [str(p) for p in found]
        labels += [k] * len(found)
    return Sources(paths, labels, ["ants", "bees"])


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (set FREQDATA_DATA)")
    return DATA


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and robust on a busy shared machine
    (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class StopRun(Exception):
    """Raised by :func:`stop_after_first_epoch` to interrupt a trainer (resume tests)."""


def stop_after_first_epoch(rec: dict) -> None:
    """A trainer's ``on_log``: interrupt the run at its first epoch record."""
    if rec["event"] == "epoch":
        raise StopRun


# ------------------------------------------------------------------------ leftover processes
# Every process the tests start inherits this variable, even one whose parent was killed
# (reparented to init, in another session): that is how a leftover is recognized.
_MARK = "FREQDATA_TEST_RUN"
os.environ[_MARK] = str(os.getpid())
# Long-lived helpers that multiprocessing starts for the pytest process itself, once.
_OWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
LEFTOVER_GRACE_S = 10.0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid`` from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _ours() -> set[int]:
    """Live processes (not zombies) started by this test run, the pytest process excepted,
    and its own multiprocessing helpers."""
    me, mark = os.getpid(), f"{_MARK}={os.getpid()}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            if mark not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        st = _stat(pid)
        if st is None or st[0] == "Z":
            continue
        if st[1] == me and any(h in cmd for h in _OWN_HELPERS):
            continue
        found.add(pid)
    return found


def _leftovers(before: set[int]) -> set[int]:
    """Processes of this run started since ``before`` that no process alive before the test
    owns: a process is left over unless one of its ancestors below pytest was already alive
    (e.g. a module-scoped Dask cluster whose nanny restarts a worker a test killed)."""
    me = os.getpid()
    left = set()
    for pid in _ours() - before:
        p, owned = pid, False
        for _ in range(64):  # walk up to pytest, init or a process from before the test
            st = _stat(p)
            if st is None or st[1] in (0, 1, me):
                break
            p = st[1]
            if p in before:
                owned = True
                break
        if not owned:
            left.add(pid)
    return left


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmd = "?"
    return f"{pid} ({cmd[:120]})"


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Fail a test that leaves a process it started alive (after a grace period), and end
    those processes so the next test starts clean. Linux only (reads /proc)."""
    if not Path("/proc/self/environ").exists():
        yield
        return
    before = _ours()
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = _leftovers(before)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _leftovers(before)
    if left:
        described = [_describe(pid) for pid in sorted(left)]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail("the test left processes alive: " + "; ".join(described), pytrace=False)
