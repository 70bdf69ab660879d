"""Image classification on freqdata stores: DCT cubes or RGB, side by side.

``freqdata train classify`` (cli/train.py) is a thin wrapper of :func:`train_classify`::

    cfg = ClassifyConfig(store="train.zarr", val_store="val.zarr", model="resnet18",
                         input="dct", crop=448, epochs=20, out="runs/dct")
    summary = train_classify(cfg)

What one run does (docs/trainers.md has the measured results):

* data: :func:`freqdata.trainers.data.build_pipeline` (same order, crops, flips and
  normalization policy for DCT and RGB stores);
* model: :func:`freqdata.trainers.create_model` (``input`` picks the stem, ``gate`` adds
  the dynamic channel gate, loss ``CE + gate_lambda · Σ_c mean_b g``; ``conv="fdconv"``
  swaps the eligible convolutions for :class:`freqdata.nn.FDConv`, docs/fdconv.md);
* schedule: SGD (momentum 0.9, Nesterov) or AdamW, weight decay on conv/linear weights
  only, linear warm-up then cosine decay per step, label smoothing;
* device: ``"auto"`` = CUDA when available; on CUDA bf16 autocast (mixed precision) and
  channels_last; channels_last is also used on CPU (measured faster there);
* log: one JSON object per line to ``out/log.jsonl`` (and ``on_log``): a ``start`` line
  (configuration, parameters, hardware), one ``epoch`` line per epoch (train loss/top-1,
  val loss/top-1/top-5, samples/s, bytes per sample moved to the device, learning rate,
  gate rates), an ``end`` line;
* checkpoints: ``out/last.pt`` after every epoch (model, optimizer, scheduler, RNG states,
  augmentation generators); ``resume=True`` continues after the saved epoch — the data
  order depends only on the seed and the epoch, so a resumed run reads what an
  uninterrupted one would;
* gate runs: the selection rates over the validation set (evaluation mode), the heat map
  ``out/heatmap.png``, ``out/selection.json`` and the static selection ``out/preset.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from freqdata.errors import UsageError
from freqdata.nn import parameter_overhead, to_fdconv

from . import get_gate
from .data import Pipeline, build_pipeline, iterate
from .registry import create_model
from .run import (
    RunLog,
    hardware,
    last_epoch,
    make_optimizer,
    open_run,
    pick_device,
    restore_training_state,
    save_checkpoint,
    training_state,
    warmup_cosine,
)
from .selection import SelectionRates, draw_heatmap, save_preset, static_selection

__all__ = ["ClassifyConfig", "train_classify"]

SMOKE_STEPS = 2  # training and validation batches per epoch with smoke=True


@dataclass
class ClassifyConfig:
    """Everything that defines a classification run (the CLI's options)."""

    store: str
    val_store: str | None = None
    model: str = "resnet18"
    input: str = "dct"
    gate: bool = False
    gate_lambda: float = 0.01
    gate_threshold: float = 0.5
    width: int | None = None  # ResNet stage-1 width (resnet18 default 32, resnet50 64)
    conv: str = "conv"  # conv | fdconv (freqdata.nn.to_fdconv on the built model)
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 2.0
    seed: int = 0
    crop: int | None = None
    transport: str = "int16"
    augment: str = "none"  # none | standard | randaugment (trainers.data.build_pipeline)
    box_step: int = 1  # the --augment boxes' pixel lattice
    preset: str = "dctnet-24"  # an image folder --store: encoded on the fly with these
    geometry: str = "resnet"
    keep_preset: str | None = None  # --augment: the model reads these channels of the store
    out: str = "runs/classify"
    resume: bool = False
    overwrite: bool = False  # replace a run already in out (else refused unless resume)
    device: str = "auto"
    amp: bool | None = None  # None: on CUDA
    channels_last: bool | None = None  # None: on
    threads: int = 1
    torch_threads: int | None = None  # None: torch's default (all cores)
    smoke: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# what must match for a checkpoint to be resumed
_RESUME_KEYS = ("store", "model", "input", "gate", "conv", "width", "batch_size", "optimizer",
                "seed", "crop", "transport", "epochs", "warmup_epochs", "smoke", "augment",
                "box_step", "preset", "geometry", "keep_preset")  # fmt: skip
CONVS = ("conv", "fdconv")


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels[:, None]).any(1).sum())


def _generators(pipe: Pipeline) -> list[torch.Generator]:
    """Every random generator of the device transforms (flips, boxes, policies, mixing), in a
    fixed order, so a checkpoint restores them all."""
    names = ("generator", "box_generator", "mix_generator")
    gens = [getattr(a, n) for a in (pipe.augment_train, pipe.augment_val) for n in names
            if hasattr(a, n)]  # fmt: skip
    for a in (pipe.augment_train, pipe.augment_val):
        for sub in ("rrc", "policy"):
            if getattr(a, sub, None) is not None:
                gens.append(getattr(a, sub).generator)
    return gens


def _evaluate(
    model: nn.Module,
    pipe: Pipeline,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    limit: int | None,
    rates: SelectionRates | None,
) -> dict[str, float]:
    model.eval()
    gate = get_gate(model)
    n = loss = top1 = top5 = 0.0
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in iterate(pipe.val, limit):
            x, y = pipe.augment_val(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            top1 += _topk(logits, y, 1)
            top5 += _topk(logits, y, 5)
            n += len(y)
            if gate is not None and rates is not None and gate.gates is not None:
                rates.update(gate.gates)
    dt = time.perf_counter() - t0
    n = max(n, 1)
    return {"val_loss": loss / n, "val_top1": top1 / n, "val_top5": top5 / n,
            "val_samples_per_s": n / max(dt, 1e-9)}  # fmt: skip


def train_classify(
    cfg: ClassifyConfig,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one classification run; returns the ``end`` log record.

    Writes ``cfg.out``/``log.jsonl``, ``last.pt`` and, for gate runs, ``heatmap.png``,
    ``selection.json`` and ``preset.json``. ``on_log(record)`` sees every log record,
    ``on_step`` the progress after each training step (:meth:`RunLog.step`). An ``out``
    holding a run needs ``resume`` or ``overwrite`` (:func:`open_run`).
    """
    out = Path(cfg.out)
    device = pick_device(cfg.device)
    amp = device.type == "cuda" if cfg.amp is None else bool(cfg.amp)
    channels_last = True if cfg.channels_last is None else bool(cfg.channels_last)
    if cfg.gate and cfg.input != "dct":
        raise UsageError("--gate needs --input dct")
    if cfg.conv not in CONVS:
        raise UsageError(f"conv must be one of {', '.join(CONVS)}, got {cfg.conv!r}")
    ckpt_path, log_path = open_run(out, resume=cfg.resume, overwrite=cfg.overwrite)

    ckpt: dict[str, Any] | None = None
    if cfg.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = ckpt["config"]
        # keys a checkpoint predates read as their defaults
        diff = [k for k in _RESUME_KEYS
                if saved.get(k, getattr(ClassifyConfig, k, None)) != getattr(cfg, k)]  # fmt: skip
        if diff:
            raise UsageError(f"cannot resume {ckpt_path}: different {', '.join(diff)}")

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)  # process-wide
    torch.manual_seed(cfg.seed)
    pipe = build_pipeline(
        cfg.input, cfg.store, cfg.val_store, batch_size=cfg.batch_size, seed=cfg.seed,
        crop=cfg.crop, transport=cfg.transport, device=device, threads=cfg.threads,
        augment=cfg.augment, box_step=cfg.box_step, preset=cfg.preset, geometry=cfg.geometry,
        keep_preset=cfg.keep_preset,
    )  # fmt: skip
    kw: dict[str, Any] = {}
    if cfg.width is not None:
        kw["width"] = cfg.width
    model = create_model(
        cfg.model, input=cfg.input, in_channels=pipe.in_channels if cfg.input == "dct" else None,
        num_classes=pipe.num_classes, gate=cfg.gate, **kw,
    )  # fmt: skip
    if cfg.conv == "fdconv":
        to_fdconv(model)  # the paper's rule: block convs with > 16 channels, 1x1 and 3x3
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gate = get_gate(model)
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         momentum=cfg.momentum)
    steps_per_epoch = len(pipe.train)
    if cfg.smoke:
        steps_per_epoch = min(steps_per_epoch, SMOKE_STEPS)
    total = max(cfg.epochs * steps_per_epoch, 1)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
    start_epoch, best = 0, 0.0
    if ckpt is not None:
        restore_training_state(ckpt, model, opt, sched, device, _generators(pipe))
        start_epoch, best = int(ckpt["epoch"]), float(ckpt.get("best_val_top1", 0.0))

    log = RunLog(log_path, on_log, on_step)

    n_params = sum(p.numel() for p in model.parameters())
    log({
        "event": "resume" if ckpt is not None else "start",
        "epoch": start_epoch,
        "config": cfg.to_dict(),
        "data": pipe.info,
        "model_params": n_params,
        **({"fdconv": parameter_overhead(model)} if cfg.conv == "fdconv" else {}),
        "in_shape": [pipe.in_channels, *pipe.spatial],
        "bytes_per_sample": pipe.bytes_per_sample,
        "device": str(device),
        "amp": amp,
        "channels_last": channels_last,
        "hardware": hardware(),
    })  # fmt: skip
    limit = SMOKE_STEPS if cfg.smoke else None
    last: dict[str, Any] = last_epoch(log_path) if ckpt is not None else {}
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        pipe.train.set_epoch(epoch)
        t0 = time.perf_counter()
        seen = loss_sum = correct = reg_sum = kept = 0.0
        for step, batch in enumerate(iterate(pipe.train, limit), 1):
            x, y = pipe.augment_train(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            total_loss = loss
            if gate is not None:
                reg = gate.regularizer()
                total_loss = loss + cfg.gate_lambda * reg
                reg_sum += float(reg.detach()) * len(y)
                kept += float(gate.gates.detach().sum())  # type: ignore[union-attr]
            opt.zero_grad(set_to_none=True)
            total_loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += _topk(logits.detach(), y, 1)
            seen += len(y)
            log.step(epoch + 1, cfg.epochs, step, steps_per_epoch, int(seen), loss_sum / seen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        rec: dict[str, Any] = {
            "event": "epoch",
            "epoch": epoch + 1,
            "epochs": cfg.epochs,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": correct / max(seen, 1),
            "samples_per_s": seen / max(train_s, 1e-9),
            "bytes_per_sample": pipe.bytes_per_sample,
            "bytes_moved": int(seen * pipe.bytes_per_sample),
            "train_samples": int(seen),
            "train_seconds": train_s,
            "lr": opt.param_groups[0]["lr"],
        }
        if gate is not None:
            rec["gate_channels_kept"] = kept / max(seen, 1)
            rec["gate_reg"] = reg_sum / max(seen, 1)
        rates = SelectionRates(pipe.in_channels) if gate is not None else None
        if pipe.val is not None:
            rec.update(_evaluate(model, pipe, device, amp, channels_last, limit, rates))
            best = max(best, rec["val_top1"])
            if rates is not None:
                rec["val_gate_channels_kept"] = float(rates.rates.sum())
        rec["seconds"] = time.perf_counter() - t0
        save_checkpoint(ckpt_path, {
            "epoch": epoch + 1,
            "config": cfg.to_dict(),
            **training_state(model, opt, sched, device, _generators(pipe)),
            "best_val_top1": best,
            "class_names": pipe.class_names,
            "channel_names": pipe.channel_names,
        })  # fmt: skip
        log(rec)
        last = rec
        if gate is not None and rates is not None and pipe.val is not None:
            _write_selection(out, rates, pipe, cfg, epoch + 1)

    end = {"event": "end", "epochs": cfg.epochs, "best_val_top1": best,
           "final": {k: v for k, v in last.items() if k != "event"}}  # fmt: skip
    if gate is not None and (out / "preset.json").exists():
        end["heatmap"] = str(out / "heatmap.png")
        end["preset"] = str(out / "preset.json")
    log(end)
    return end


def _write_selection(
    out: Path, rates: SelectionRates, pipe: Pipeline, cfg: ClassifyConfig, epoch: int
) -> None:
    r = rates.rates
    names = pipe.channel_names
    sel = static_selection(r, names, cfg.gate_threshold)
    draw_heatmap(r, names, out / "heatmap.png",
                 title=f"{cfg.model} {cfg.input} gate, lambda={cfg.gate_lambda}, epoch {epoch}: "
                       f"channel selection rate over {rates.images} validation images")  # fmt: skip
    save_preset(sel, out / "preset.json")
    (out / "selection.json").write_text(json.dumps({
        "epoch": epoch,
        "images": rates.images,
        "threshold": cfg.gate_threshold,
        "channel_names": names,
        "rates": [round(float(v), 6) for v in r],
        "mean_channels_kept": float(r.sum()),
        "preset": sel,
    }, indent=1) + "\n")  # fmt: skip
