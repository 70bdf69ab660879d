"""Shared fixtures: the real data in ../shared/data (override with FREQDATA_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("FREQDATA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ZOO = DATA / "jpeg-zoo"
COCO_VAL = DATA / "images-seg" / "coco-mini" / "val2017"
ANTS_BEES = DATA / "images-cls" / "hymenoptera_data"


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
