"""The trainers' shared run bookkeeping (freqdata.trainers.run) against closed forms."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from freqdata.trainers.run import RunLog, make_optimizer, save_checkpoint, warmup_cosine


def test_warmup_cosine_closed_form():
    f = warmup_cosine(total=10, warmup=4)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    for s in range(4, 12):
        t = min((s - 4) / 6, 1.0)
        assert f(s) == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))
    assert f(10) == pytest.approx(0.0) and warmup_cosine(5, 0)(0) == 1.0  # warm-up of >= 1 step


def test_optimizer_decays_weights_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    opt = make_optimizer("sgd", model, lr=0.1, weight_decay=5e-4)
    decay, no_decay = opt.param_groups
    assert {p.ndim for p in decay["params"]} == {2, 4} and decay["weight_decay"] == 5e-4
    assert {p.ndim for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0.0
    assert opt.defaults["nesterov"] and isinstance(
        make_optimizer("adamw", model, lr=1e-3, weight_decay=0.0), torch.optim.AdamW)
    with pytest.raises(ValueError, match="sgd, adamw"):
        make_optimizer("lamb", model, lr=1.0, weight_decay=0.0)


def test_log_and_checkpoint(tmp_path):
    seen = []
    log = RunLog(tmp_path / "log.jsonl", seen.append)
    log({"event": "start"})
    log({"event": "epoch", "loss": 0.5})
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == seen == [{"event": "start"}, {"event": "epoch", "loss": 0.5}]
    save_checkpoint(tmp_path / "last.pt", {"epoch": 3})
    assert torch.load(tmp_path / "last.pt")["epoch"] == 3
    assert not (tmp_path / "last.tmp").exists()
