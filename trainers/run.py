"""What every reference trainer's run shares: device, optimizer, schedule, log, checkpoint.

* :func:`pick_device` — ``"auto"`` (CUDA when available) / ``"cpu"`` / ``"cuda[:N]"``;
* :func:`make_optimizer` — SGD (momentum, Nesterov) or AdamW, weight decay on weights only
  (parameters with ``ndim > 1``), none on biases and norm parameters;
* :func:`warmup_cosine` — the per-step learning-rate factor: linear warm-up, then cosine;
* :func:`open_run` — the run folder: refuses to replace a run unless asked to resume or
  overwrite it; :func:`last_epoch` — the last ``epoch`` record of a log (a finished run's
  final metrics when it is resumed);
* :class:`RunLog` — JSON lines appended to ``OUT/log.jsonl`` and passed to a callback, and
  per-step progress (:meth:`RunLog.step`) passed to another;
* :func:`save_checkpoint` — atomic ``torch.save`` (write to a temporary file, then rename);
  :func:`training_state` / :func:`restore_training_state` — what an exact resume needs
  (model, optimizer, scheduler, the run's generators, the global torch / CUDA RNG states);
* :func:`hardware` — where the run happened (recorded in every log's first line).

Used by :mod:`~freqdata.trainers.classify`, :mod:`~freqdata.trainers.masks` and
:mod:`~freqdata.trainers.semantic`.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freqdata.errors import UsageError

__all__ = ["RunLog", "hardware", "last_epoch", "make_optimizer", "open_run", "pick_device",
           "restore_training_state", "save_checkpoint", "training_state",
           "warmup_cosine"]  # fmt: skip

OPTIMIZERS = ("sgd", "adamw")


def pick_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def hardware() -> dict[str, Any]:
    """Where this runs: CPU model, cores, torch threads, GPU name (for the logs)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def make_optimizer(
    name: str, model: nn.Module, *, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``"sgd"`` (Nesterov momentum) or ``"adamw"`` over ``model``'s trainable parameters;
    weight decay on weights (``ndim > 1``) only. :class:`UsageError` for another name."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor of step ``s`` (for ``LambdaLR``): ``(s + 1) / warmup`` during
    the warm-up, then ``0.5 (1 + cos(pi t))`` with ``t`` going from 0 to 1 at ``total``."""
    warmup = max(warmup, 1)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return f


def open_run(out: Path, *, resume: bool, overwrite: bool) -> tuple[Path, Path]:
    """Create the run folder ``out``; returns its ``(checkpoint, log)`` paths
    (``last.pt``, ``log.jsonl``).

    A folder that already holds a run (either file) is refused with :class:`UsageError`
    unless ``resume`` (continue it) or ``overwrite`` (its checkpoint and log are deleted
    first), so a finished run is never replaced by accident.
    """
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    ckpt, log = out / "last.pt", out / "log.jsonl"
    held = [p.name for p in (ckpt, log) if p.exists()]
    if held and not resume:
        if not overwrite:
            raise UsageError(f"{out} holds a run ({', '.join(held)}): use --resume to continue "
                             "it or --overwrite to replace it")  # fmt: skip
        for p in (ckpt, log):
            p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return ckpt, log


def last_epoch(log: Path) -> dict[str, Any]:
    """The last ``{"event": "epoch", ...}`` record of the JSON-lines ``log`` ({} if none)."""
    last: dict[str, Any] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("event") == "epoch":
                last = rec
    return last


class RunLog:
    """``log(record)``: one JSON line appended to ``path``, then ``on_log(record)`` if given.

    ``log.step(...)`` reports progress within an epoch to ``on_step`` (not to the file)."""

    def __init__(
        self,
        path: Path,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = path
        self.on_log = on_log
        self.on_step = on_step

    def __call__(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.on_log is not None:
            self.on_log(rec)

    def step(self, epoch: int, epochs: int, step: int, steps: int, samples: int,
             loss: float) -> None:
        """After training step ``step`` (1-based) of ``steps`` in epoch ``epoch`` (1-based)
        of ``epochs``: ``on_step({"epoch", "epochs", "step", "steps", "samples", "loss"})``
        with the epoch's samples so far and the running mean loss."""
        if self.on_step is not None:
            self.on_step({"epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                          "samples": samples, "loss": loss})  # fmt: skip


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically: a crash leaves the previous file."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def training_state(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    generators: Sequence[torch.Generator] = (),
) -> dict[str, Any]:
    """Everything an exact resume restores (add the epoch, config and metrics beside it)."""
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generators": [g.get_state() for g in generators],
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
    }


def restore_training_state(
    ckpt: dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    generators: Sequence[torch.Generator] = (),
) -> None:
    """Put a :func:`training_state` back (``generators`` in the same order as saved)."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    for g, state in zip(generators, ckpt["generators"], strict=True):
        g.set_state(state)
    torch.set_rng_state(ckpt["torch_rng"])
    if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"])
