"""Semantic segmentation on freqdata stores, trained on full or block-wise labels.

``freqdata train semantic`` (cli/train_semantic.py) is a thin wrapper of
:func:`train_semantic`::

    cfg = SemanticConfig(store="rgb-train.zarr", val_store="rgb-val.zarr",
                         masks="masks-train.zarr", val_masks="masks-val.zarr",
                         input="rgb", labels="blockwise", nu_max=16, out="runs/nu16")
    summary = train_semantic(cfg)

What one run does (docs/semantic.md has the design and the measured results):

* data: :func:`freqdata.trainers.semantic_data.build_semantic_data` — store samples paired
  with the mask store's category maps at the stored geometry; training on the full maps
  (``labels="full"``) or on block-wise labels (``"blockwise"``, ``nu_max``: ``2*nu_max+1``
  majority cells per side of the crop); validation always on the full maps; joint
  horizontal flips;
* model: :class:`freqdata.trainers.deeplab.DeepLabV3Plus` (compact ResNet-18 backbone, RGB
  or DCT stem, ``truncate=G`` feature truncation); ``conv="fdconv"`` swaps its convolutions
  for FDConv (:func:`freqdata.nn.to_fdconv`);
* loss: pixel cross-entropy averaged over labelled pixels, ``IGNORE_INDEX`` (255) left out
  (:func:`seg_loss`);
* schedule, optimizer, device, bf16 autocast on CUDA, channels_last: the classification
  trainer's (:mod:`freqdata.trainers.classify`);
* log: JSON lines to ``out/log.jsonl`` (and ``on_log``): ``start`` (configuration, data,
  parameters, forward FLOPs per sample for this model and for other truncation grids,
  the mIoU of the training labels against the full ones, hardware), one ``epoch`` line per
  epoch (train loss, samples/s, FLOPs; every ``val_every`` epochs and after the last: val
  loss, val mIoU, per-class IoU, pixel accuracy), ``end``
  (best mIoU, the final model's R_ce(nu) on the validation logits, and its mIoU when the
  decoder is truncated at evaluation time only);
* checkpoints: ``out/last.pt`` after every epoch (atomic); ``resume=True`` continues after
  the saved epoch exactly (data order depends only on the seed and the epoch; the flip
  generator and the RNG states are restored).

**R_ce** (:func:`relative_ce_rates`): for every validation image, the relative CE loss rate
:func:`freqdata.masks.relative_ce_loss_rate` of the model's logits against the full labels
at each ``nu`` (cycles per crop); pooled over images as ``sum_i R_i CE_i / sum_i CE_i``
(= the band's share of the total CE of the split), and also the plain mean over images.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from freqdata.errors import UsageError
from freqdata.masks.weak import IGNORE_INDEX, relative_ce_loss_rate

from .deeplab import DeepLabV3Plus, forward_flops
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
from .semantic_data import SemanticAugment, SemanticData, build_semantic_data, semantic_loader

__all__ = [
    "SemanticConfig",
    "confusion_matrix",
    "iou_scores",
    "relative_ce_rates",
    "seg_loss",
    "train_semantic",
]

SMOKE_STEPS = 2  # training and validation batches per epoch with smoke=True
TRUNCATIONS = (65, 33, 17, 9)  # decoder grids reported beside the run's own (2*nu+1, nu 32..4)
RCE_NUS = (4, 8, 16, 32, 64)


@dataclass
class SemanticConfig:
    """Everything that defines a semantic-segmentation run (the CLI's options)."""

    store: str
    val_store: str | None = None
    masks: str | None = None  # None: the image store's "masks" group
    val_masks: str | None = None
    input: str = "rgb"
    classes: str = "person"
    labels: str = "full"
    nu_max: int | None = None
    truncate: int | None = None
    conv: str = "conv"
    backbone: str = "resnet18"
    width: int = 32
    output_stride: int = 16
    crop: int | None = None  # training crop (pixels, multiple of 8); None: the stored size
    epochs: int = 20
    val_every: int = 1  # validate every N epochs (and after the last)
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    rce_nus: tuple[int, ...] = RCE_NUS
    out: str = "runs/semantic"
    resume: bool = False
    overwrite: bool = False  # replace a run already in out (else refused unless resume)
    device: str = "auto"
    amp: bool | None = None  # None: on CUDA
    channels_last: bool | None = None  # None: on
    torch_threads: int | None = None
    smoke: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rce_nus"] = list(self.rce_nus)
        return d


# what must match for a checkpoint to be resumed
_RESUME_KEYS = ("store", "masks", "input", "classes", "labels", "nu_max", "truncate", "conv",
                "backbone", "width", "output_stride", "crop", "batch_size", "optimizer", "seed",
                "epochs", "warmup_epochs", "smoke")  # fmt: skip


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy of ``logits`` ``(B, K, H, W)`` against ``target`` ``(B, H, W)``
    int64, averaged over the pixels whose label is not ``IGNORE_INDEX``; 0 (with a zero
    gradient) when every pixel is ignored."""
    valid = target != IGNORE_INDEX
    total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / valid.sum().clamp(min=1)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` int64 counts, rows = target class, columns = predicted class, over the
    pixels whose target is not ``IGNORE_INDEX`` (any shapes, equal)."""
    t, p = target.reshape(-1), pred.reshape(-1)
    keep = t != IGNORE_INDEX
    idx = t[keep].long() * num_classes + p[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def iou_scores(conf: np.ndarray | torch.Tensor) -> tuple[float, list[float | None]]:
    """``(mIoU, per-class IoU)`` from a confusion matrix: ``IoU_c = TP / (TP + FP + FN)``;
    a class absent from both targets and predictions (union 0) has IoU None and is left out
    of the mean (the dataset-level mIoU of VOC / Cityscapes; the same classes as
    :func:`freqdata.masks.miou` on the concatenated maps)."""
    c = np.asarray(conf, dtype=np.float64)
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    ious = [float(tp[k] / union[k]) if union[k] > 0 else None for k in range(len(tp))]
    present = [v for v in ious if v is not None]
    return (float(np.mean(present)) if present else 1.0), ious


def relative_ce_rates(
    logits: Sequence[np.ndarray], labels: Sequence[np.ndarray], nus: Sequence[int]
) -> dict[str, dict[str, float]]:
    """R_ce of a split: per image ``relative_ce_loss_rate(logits_i (K, H, W), labels_i (H,
    W), nus)`` and its summed CE ``CE_i``; returns ``{"pooled": {nu: sum R_i CE_i / sum
    CE_i}, "mean": {nu: mean_i R_i}}`` (keys are ``str(nu)``). Images without labelled
    pixels are skipped (no image left: empty dicts)."""
    rates, ces = [], []
    for lg, lab in zip(logits, labels, strict=True):
        lab = np.asarray(lab)
        if not (lab != IGNORE_INDEX).any():
            continue
        t = torch.from_numpy(lab.astype(np.int64))[None]
        ces.append(float(F.cross_entropy(torch.from_numpy(np.asarray(lg, np.float64))[None], t,
                                         ignore_index=IGNORE_INDEX, reduction="sum")))  # fmt: skip
        rates.append(np.atleast_1d(relative_ce_loss_rate(lg, lab, list(nus))))
    if not rates:
        return {"pooled": {}, "mean": {}}
    r, w = np.array(rates), np.array(ces)
    pooled = (r * w[:, None]).sum(0) / w.sum()
    return {"pooled": {str(n): float(v) for n, v in zip(nus, pooled, strict=True)},
            "mean": {str(n): float(v) for n, v in zip(nus, r.mean(0), strict=True)}}  # fmt: skip


def _evaluate(
    model: nn.Module,
    data: SemanticData,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    limit: int | None,
    batch_size: int,
    keep_logits: bool = False,
) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """Validation on the full labels: loss, mIoU, per-class IoU, pixel accuracy; with
    ``keep_logits`` also the float32 logits and labels of each image (for R_ce)."""
    assert data.val is not None
    model.eval()
    aug = SemanticAugment(data.train.store, device, train=False)
    loader = semantic_loader(data.val, batch_size=batch_size, shuffle=False, full=True)
    k = data.num_classes
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    loss = pixels = 0.0
    kept_logits: list[np.ndarray] = []
    kept_labels: list[np.ndarray] = []
    t0 = time.perf_counter()
    n = 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if limit is not None and i >= limit:
                break
            x, y = aug(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            loss += float(F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum"))
            pixels += float((y != IGNORE_INDEX).sum())
            conf += confusion_matrix(logits.argmax(1), y, k)
            n += len(y)
            if keep_logits:
                kept_logits += list(logits.cpu().numpy())
                kept_labels += list(y.cpu().numpy())
    dt = time.perf_counter() - t0
    miou, ious = iou_scores(conf.cpu())
    c = conf.cpu().numpy()
    rec = {"val_loss": loss / max(pixels, 1.0), "val_miou": miou,
           "val_iou": dict(zip(data.class_names, ious, strict=True)),
           "val_pixel_acc": float(np.trace(c) / max(c.sum(), 1)),
           "val_samples_per_s": n / max(dt, 1e-9)}  # fmt: skip
    return rec, kept_logits, kept_labels


def _label_quality(data: SemanticData) -> float:
    """mIoU of the training labels against the full ones on the training split."""
    t = torch.from_numpy(data.train.full)
    return iou_scores(confusion_matrix(torch.from_numpy(data.train.train), t, data.num_classes))[0]


def _check(cfg: SemanticConfig) -> None:
    if cfg.labels not in ("full", "blockwise"):
        raise UsageError(f"labels must be full or blockwise, got {cfg.labels!r}")
    if cfg.labels == "blockwise" and cfg.nu_max is None:
        raise UsageError("--labels blockwise needs --nu-max")
    if cfg.labels == "full" and cfg.nu_max is not None:
        raise UsageError("--nu-max applies to --labels blockwise")
    if cfg.conv not in ("conv", "fdconv"):
        raise UsageError(f"conv must be conv or fdconv, got {cfg.conv!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.val_every < 1:
        raise UsageError("epochs, batch size and val-every must be positive")


def train_semantic(
    cfg: SemanticConfig,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one semantic-segmentation run; returns the ``end`` log record.

    Writes ``cfg.out``/``log.jsonl`` and ``last.pt``; ``on_log(record)`` sees every record,
    ``on_step`` the progress after each training step. Bad options raise
    :class:`~freqdata.errors.UsageError` before anything is trained; an ``out`` holding a run
    needs ``resume`` or ``overwrite`` (:func:`~freqdata.trainers.run.open_run`).
    """
    _check(cfg)
    out = Path(cfg.out)
    ckpt_path, log_path = open_run(out, resume=cfg.resume, overwrite=cfg.overwrite)
    device = pick_device(cfg.device)
    amp = device.type == "cuda" if cfg.amp is None else bool(cfg.amp)
    channels_last = True if cfg.channels_last is None else bool(cfg.channels_last)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    data = build_semantic_data(
        cfg.input, cfg.store, cfg.val_store, train_masks=cfg.masks, val_masks=cfg.val_masks,
        classes=cfg.classes, nu_max=cfg.nu_max if cfg.labels == "blockwise" else None,
    )  # fmt: skip
    ckpt: dict[str, Any] | None = None
    if cfg.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = ckpt["config"]
        diff = [k for k in _RESUME_KEYS if saved.get(k) != getattr(cfg, k)]
        if diff:
            raise UsageError(f"cannot resume {ckpt_path}: different {', '.join(diff)}")

    torch.manual_seed(cfg.seed)
    model: nn.Module = DeepLabV3Plus(
        data.num_classes, input=cfg.input,
        in_channels=data.in_channels if cfg.input == "dct" else None, backbone=cfg.backbone,
        width=cfg.width, output_stride=cfg.output_stride, truncate=cfg.truncate,
    )  # fmt: skip
    if cfg.conv == "fdconv":
        from freqdata.nn import to_fdconv

        model = to_fdconv(model)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         momentum=cfg.momentum)
    loader = semantic_loader(data.train, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                            drop_last=len(data.train) >= cfg.batch_size)  # fmt: skip
    augment = SemanticAugment(data.train.store, device, train=True, seed=cfg.seed, crop=cfg.crop)
    steps_per_epoch = min(len(loader), SMOKE_STEPS) if cfg.smoke else len(loader)
    total = max(cfg.epochs * steps_per_epoch, 1)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
    start_epoch, best = 0, 0.0
    if ckpt is not None:
        restore_training_state(ckpt, model, opt, sched, device, [augment.generator])
        start_epoch, best = int(ckpt["epoch"]), float(ckpt["best_val_miou"])

    log = RunLog(log_path, on_log, on_step)

    probe = torch.zeros(1, data.in_channels, *_input_size(data), device=device)
    flops = forward_flops(model, probe)
    by_grid: dict[str, int] = {}
    if cfg.conv == "conv" and isinstance(model, DeepLabV3Plus):  # (slow to count for FDConv)
        for g in (None, *TRUNCATIONS):
            model.truncate = g
            by_grid["none" if g is None else str(g)] = forward_flops(model, probe)
        model.truncate = cfg.truncate
    log({
        "event": "resume" if ckpt is not None else "start",
        "epoch": start_epoch,
        "config": cfg.to_dict(),
        "data": data.info,
        "train_label_miou": _label_quality(data),
        "model_params": sum(p.numel() for p in model.parameters()),
        "in_shape": [data.in_channels, *_input_size(data)],
        "flops_per_sample": flops,
        "flops_by_truncate": by_grid,
        "device": str(device),
        "amp": amp,
        "channels_last": channels_last,
        "hardware": hardware(),
    })  # fmt: skip
    limit = SMOKE_STEPS if cfg.smoke else None
    last: dict[str, Any] = last_epoch(log_path) if ckpt is not None else {}
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        seen = loss_sum = 0.0
        for i, batch in enumerate(loader):
            if limit is not None and i >= limit:
                break
            x, y = augment(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            loss = seg_loss(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
            log.step(epoch + 1, cfg.epochs, i + 1, steps_per_epoch, int(seen), loss_sum / seen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        rec: dict[str, Any] = {
            "event": "epoch", "epoch": epoch + 1, "epochs": cfg.epochs,
            "train_loss": loss_sum / max(seen, 1), "samples_per_s": seen / max(train_s, 1e-9),
            "train_samples": int(seen), "train_seconds": train_s,
            "lr": opt.param_groups[0]["lr"], "flops_per_sample": flops,
        }  # fmt: skip
        if data.val is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            ev, _, _ = _evaluate(model, data, device, amp, channels_last, limit, cfg.batch_size)
            rec.update(ev)
            best = max(best, rec["val_miou"])
        rec["seconds"] = time.perf_counter() - t0
        save_checkpoint(ckpt_path, {
            "epoch": epoch + 1, "config": cfg.to_dict(),
            **training_state(model, opt, sched, device, [augment.generator]),
            "best_val_miou": best, "class_names": data.class_names,
        })  # fmt: skip
        log(rec)
        last = rec
    end: dict[str, Any] = {"event": "end", "epochs": cfg.epochs, "best_val_miou": best,
                           "final": {k: v for k, v in last.items() if k != "event"}}  # fmt: skip
    if data.val is not None:
        end.update(_final_analysis(model, data, device, amp, channels_last, limit, cfg))
    log(end)
    return end


def _input_size(data: SemanticData) -> tuple[int, int]:
    h, w = data.size
    return (h // 8, w // 8) if data.input == "dct" else (h, w)


def _final_analysis(
    model: nn.Module,
    data: SemanticData,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    limit: int | None,
    cfg: SemanticConfig,
) -> dict[str, Any]:
    """R_ce of the final model's validation logits, and its mIoU with the decoder
    truncated at evaluation time only (no retraining) at each grid of ``TRUNCATIONS``."""
    ev, logits, labels = _evaluate(model, data, device, amp, channels_last, limit,
                                   cfg.batch_size, keep_logits=True)  # fmt: skip
    res: dict[str, Any] = {"rce": relative_ce_rates(logits, labels, cfg.rce_nus)}
    if isinstance(model, DeepLabV3Plus) and cfg.truncate is None:
        by_grid = {}
        for g in TRUNCATIONS:
            model.truncate = g
            tr, _, _ = _evaluate(model, data, device, amp, channels_last, limit, cfg.batch_size)
            by_grid[str(g)] = tr["val_miou"]
        model.truncate = None
        res["val_miou_eval_truncate"] = by_grid
    res["final_val_miou"] = ev["val_miou"]
    return res
