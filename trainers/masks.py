"""Instance-mask heads (grid | DCT-Mask | PatchDCT) on store-fed features, side by side.

``freqdata train masks`` (cli/train_masks.py) is a thin wrapper of :func:`train_masks`::

    cfg = MasksConfig(store="dct-train.zarr", annotations="instances_train2017.json",
                      val_store="dct-val.zarr", val_annotations="instances_val2017.json",
                      head="dctmask", epochs=16, out="runs/dctmask")
    summary = train_masks(cfg)

What one run does (docs/mask-heads.md has the design and the measured results):

* data: :class:`freqdata.trainers.mask_data.MaskData` — a DCT (or RGB) image store at a
  square canvas and the COCO annotations mapped into it; ground-truth boxes jittered like
  proposals (:func:`~freqdata.trainers.mask_data.jitter_boxes`, IoU >= 0.5, seeded by seed,
  epoch and step) and the targets built on the fly from the canvas masks by the batched
  mask encoder (each head's ``targets``);
* model: :class:`MaskModel` = compact ResNet (DCT or RGB stem) + FPN
  (:class:`~freqdata.trainers.fpn.MaskBackbone`) → RoIAlign 14x14 from the assigned level
  (:class:`~freqdata.trainers.roi_align.MultiScaleRoIAlign`, canonical size
  ``224 · canvas / 800``) → the head (:mod:`freqdata.trainers.mask_heads`); PatchDCT also
  gets a ``fine_size`` RoIAlign from the finest level;
* schedule: AdamW (or SGD with Nesterov momentum), weight decay on conv/linear weights only,
  linear warm-up then cosine per step (the classification trainer's helpers);
* evaluation (:mod:`freqdata.trainers.mask_eval`): masks for the ground-truth boxes of the
  validation images, pasted into the canvas: oracle-box COCO mask AP / AP50 / AP75, mean
  mask IoU, mean boundary IoU;
* log: JSON lines in ``out/log.jsonl`` (and ``on_log``): ``start``, one ``epoch`` line
  (losses, AP, AP50, AP75, mask_iou, boundary_iou, images/s and instances/s, seconds),
  ``end``;
* checkpoints: ``out/last.pt`` after every epoch, written atomically; ``resume=True``
  continues after the saved epoch. The data order and the jitter depend only on seed,
  epoch and step, so a resumed run computes what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from freqdata.errors import UsageError

from .fpn import MaskBackbone
from .mask_data import MaskBatch, MaskData, jitter_boxes
from .mask_eval import MaskEvaluator, paste
from .mask_heads import HEADS, PatchDCTHead, create_head
from .roi_align import MultiScaleRoIAlign, roi_align
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

__all__ = ["MaskModel", "MasksConfig", "train_masks"]

SMOKE_STEPS = 2  # training batches per epoch with smoke=True
SMOKE_VAL_IMAGES = 2
ROI_SIZE = 14
ROI_SAMPLING = 2


@dataclass
class MasksConfig:
    """Everything that defines a mask-head run (the CLI's options)."""

    store: str
    annotations: str
    val_store: str | None = None
    val_annotations: str | None = None
    head: str = "dctmask"
    input: str = "dct"
    model: str = "resnet18"
    width: int | None = None
    fpn_channels: int = 128
    head_dim: int = 256
    fine_size: int = 42  # PatchDCT's fine RoI grid (a multiple of 14)
    patch_hidden: int = 256  # PatchDCT's refinement width (the paper: 1024)
    loss_weight: float | None = None  # DCT-Mask / PatchDCT loss weight (None: the paper's)
    max_instances: int | None = 32  # per training image
    jitter_shift: float = 0.1
    jitter_scale: float = 0.2
    jitter_min_iou: float = 0.5
    epochs: int = 16
    batch_size: int = 4  # images
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    eval_every: int = 1
    out: str = "runs/masks"
    resume: bool = False
    overwrite: bool = False  # replace a run already in out (else refused unless resume)
    device: str = "auto"
    amp: bool | None = None  # None: on CUDA
    torch_threads: int | None = None
    smoke: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RESUME_KEYS = ("store", "annotations", "head", "input", "model", "width", "fpn_channels",
                "head_dim", "fine_size", "patch_hidden", "loss_weight", "max_instances",
                "batch_size",
                "optimizer", "seed", "epochs", "warmup_epochs", "smoke", "jitter_shift",
                "jitter_scale", "jitter_min_iou")  # fmt: skip


class MaskModel(nn.Module):
    """Backbone + FPN → RoIAlign → mask head. ``forward(images (B, C, h, w), boxes (M, 4)
    xyxy canvas pixels, batch_index (M,), classes (M,) or None)`` → the head's outputs."""

    def __init__(
        self, head: str, input: str, in_channels: int | None, canvas: int, *,
        model: str = "resnet18", width: int | None = None, fpn_channels: int = 128,
        head_dim: int = 256, fine_size: int = 42, patch_hidden: int = 256,
        loss_weight: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.backbone = MaskBackbone(input, in_channels if input == "dct" else None,
                                     model=model, width=width, channels=fpn_channels)  # fmt: skip
        self.pooler = MultiScaleRoIAlign(self.backbone.strides, ROI_SIZE, ROI_SAMPLING,
                                         canonical_size=224.0 * canvas / 800.0)  # fmt: skip
        self.head = create_head(head, fpn_channels, dim=head_dim, fine_size=fine_size,
                                hidden=patch_hidden, loss_weight=loss_weight)  # fmt: skip
        self.fine_size = fine_size

    def forward(
        self, images: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
        classes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        feats = self.backbone(images)
        rois = self.pooler(feats, boxes, batch_index)
        fine = None
        if isinstance(self.head, PatchDCTHead):
            fine = roi_align(feats[0], boxes, batch_index, self.fine_size,
                             1.0 / self.backbone.strides[0], ROI_SAMPLING)  # fmt: skip
        return self.head(rois, fine, classes)


def _jitter_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + step)


def _evaluate(
    model: MaskModel, data: MaskData, device: torch.device, amp: bool, batch_size: int,
    limit: int | None,
) -> dict[str, float]:  # fmt: skip
    model.eval()
    ev = MaskEvaluator(data.coco)
    n = len(data) if limit is None else min(limit, len(data))
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, n, batch_size):
            b = data.batch(list(range(s, min(s + batch_size, n))))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(b.images.to(device), b.boxes.to(device), b.batch_index.to(device))
            soft = model.head.decode(out).float().cpu().numpy()
            pasted = paste(soft, b.boxes.numpy(), (data.size, data.size))
            truth = b.masks.numpy()
            for i, iid in enumerate(b.image_ids.tolist()):
                rows = (b.batch_index == i).numpy()
                ev.add(iid, pasted[rows], truth[rows], b.ann_ids.numpy()[rows],
                       b.categories.numpy()[rows])  # fmt: skip
    dt = time.perf_counter() - t0
    res = ev.summary()
    res["val_images_per_s"] = res["images"] / max(dt, 1e-9)
    return res


def train_masks(
    cfg: MasksConfig,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one mask-head run; returns the ``end`` log record. Writes
    ``cfg.out``/``log.jsonl`` and ``last.pt``; ``on_log(record)`` sees every record,
    ``on_step`` the progress after each training step. An ``out`` holding a run needs
    ``resume`` or ``overwrite`` (:func:`~freqdata.trainers.run.open_run`)."""
    if cfg.head not in HEADS:
        raise UsageError(f"head must be one of {', '.join(HEADS)}, got {cfg.head!r}")
    if cfg.input not in ("dct", "rgb"):
        raise UsageError(f"input must be dct or rgb, got {cfg.input!r}")
    if cfg.batch_size < 1 or cfg.epochs < 1 or cfg.eval_every < 1:
        raise UsageError("batch_size, epochs and eval_every must be >= 1")
    if (cfg.val_store is None) != (cfg.val_annotations is None):
        raise UsageError("give both val_store and val_annotations, or neither")
    for p in (cfg.store, cfg.annotations, cfg.val_store, cfg.val_annotations):
        if p is not None and not Path(p).exists():
            raise UsageError(f"{p} does not exist")
    out = Path(cfg.out)
    ckpt_path, log_path = open_run(out, resume=cfg.resume, overwrite=cfg.overwrite)
    device = pick_device(cfg.device)
    amp = device.type == "cuda" if cfg.amp is None else bool(cfg.amp)

    ckpt: dict[str, Any] | None = None
    if cfg.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        diff = [k for k in _RESUME_KEYS if ckpt["config"].get(k) != getattr(cfg, k)]
        if diff:
            raise UsageError(f"cannot resume {ckpt_path}: different {', '.join(diff)}")

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    train = MaskData(cfg.store, cfg.annotations, max_instances=cfg.max_instances)
    if train.input != cfg.input:
        raise UsageError(f"--input {cfg.input} but {cfg.store} is a {train.input} store")
    val = None
    if cfg.val_store is not None:
        val = MaskData(cfg.val_store, cfg.val_annotations, stats_store=cfg.store)
    if val is not None and (val.input != train.input or val.size != train.size):
        raise UsageError("the validation store must be of the same kind and canvas as the "
                         "training store")  # fmt: skip
    model = MaskModel(
        cfg.head, cfg.input, train.in_channels, train.size, model=cfg.model, width=cfg.width,
        fpn_channels=cfg.fpn_channels, head_dim=cfg.head_dim, fine_size=cfg.fine_size,
        patch_hidden=cfg.patch_hidden, loss_weight=cfg.loss_weight,
    ).to(device)  # fmt: skip
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         momentum=cfg.momentum)
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise UsageError(f"{len(train)} training images for batch size {cfg.batch_size}")
    if cfg.smoke:
        steps_per_epoch = min(steps_per_epoch, SMOKE_STEPS)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, min(round(cfg.warmup_epochs * steps_per_epoch), total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
    start_epoch, best = 0, 0.0
    if ckpt is not None:
        restore_training_state(ckpt, model, opt, sched, device)
        start_epoch, best = int(ckpt["epoch"]), float(ckpt.get("best_AP", 0.0))

    log = RunLog(log_path, on_log, on_step)

    log({
        "event": "resume" if ckpt is not None else "start",
        "epoch": start_epoch,
        "config": cfg.to_dict(),
        "data": {"canvas": train.size, "train_images": len(train),
                 "train_instances": train.instances,
                 "val_images": len(val) if val else 0,
                 "val_instances": val.instances if val else 0,
                 "train_dropped": len(train.coco["dropped"]),
                 "in_channels": train.in_channels},
        "model_params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in model.head.parameters()),
        "strides": model.backbone.strides,
        "device": str(device),
        "amp": amp,
        "hardware": hardware(),
    })  # fmt: skip
    last: dict[str, Any] = last_epoch(log_path) if ckpt is not None else {}
    size = (train.size, train.size)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        images = instances = 0
        for step in range(steps_per_epoch):
            b: MaskBatch = train.batch(perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                                       .tolist())  # fmt: skip
            boxes = jitter_boxes(b.boxes, _jitter_generator(cfg.seed, epoch, step),
                                 shift=cfg.jitter_shift, scale=cfg.jitter_scale,
                                 min_iou=cfg.jitter_min_iou, size=size).to(device)  # fmt: skip
            tgt = model.head.targets(b.masks.to(device), boxes)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = model(b.images.to(device), boxes, b.batch_index.to(device))
            losses = model.head.loss(outputs, tgt)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            sched.step()
            m = b.boxes.shape[0]
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * m
            images += len(b.image_ids)
            instances += m
            log.step(epoch + 1, cfg.epochs, step + 1, steps_per_epoch, images,
                     sums["loss"] / max(instances, 1))  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        rec: dict[str, Any] = {"event": "epoch", "epoch": epoch + 1, "epochs": cfg.epochs}
        rec.update({f"train_{k}": v / max(instances, 1) for k, v in sums.items()})
        rec.update({"samples_per_s": images / max(train_s, 1e-9),
                    "instances_per_s": instances / max(train_s, 1e-9),
                    "train_images": images, "train_instances": instances,
                    "train_seconds": train_s, "lr": opt.param_groups[0]["lr"]})  # fmt: skip
        if val is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            res = _evaluate(model, val, device, amp, cfg.batch_size,
                            SMOKE_VAL_IMAGES if cfg.smoke else None)  # fmt: skip
            rec.update({("val_" + k if k in ("images", "instances") else k): v
                        for k, v in res.items()})  # fmt: skip
            best = max(best, rec["AP"])
        rec["seconds"] = time.perf_counter() - t0
        save_checkpoint(ckpt_path, {
            "epoch": epoch + 1,
            "config": cfg.to_dict(),
            **training_state(model, opt, sched, device),
            "best_AP": best,
        })  # fmt: skip
        log(rec)
        last = rec
    end = {"event": "end", "epochs": cfg.epochs, "best_AP": best,
           "final": {k: v for k, v in last.items() if k != "event"}}  # fmt: skip
    log(end)
    return end
