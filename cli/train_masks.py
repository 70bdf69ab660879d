"""``freqdata train masks``: instance-mask heads (grid | dctmask | patchdct) on stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freqdata.cli.common import (
    Amp,
    AsJson,
    Device,
    Epochs,
    LearningRate,
    Overwrite,
    Quiet,
    Resume,
    Smoke,
    TorchThreads,
    WarmupEpochs,
    WeightDecay,
    fail,
    run_trainer,
)


def masks_cmd(
    store: Annotated[Path, typer.Option(help="Training image store (DCT or RGB, S:S canvas).")],
    annotations: Annotated[Path, typer.Option(help="COCO instances JSON of the training images.")],
    val_store: Annotated[Path | None, typer.Option(help="Validation image store.")] = None,
    val_annotations: Annotated[
        Path | None, typer.Option(help="COCO instances JSON of the validation images.")
    ] = None,
    head: Annotated[str, typer.Option(help="grid | dctmask | patchdct.")] = "dctmask",
    input: Annotated[str, typer.Option("--input", help="dct | rgb (the store's kind).")] = "dct",
    model: Annotated[str, typer.Option(help="Backbone (a registered ResNet).")] = "resnet18",
    width: Annotated[int | None, typer.Option(help="ResNet stage-1 width.")] = None,
    fpn_channels: Annotated[int, typer.Option(help="FPN channels.")] = 128,
    head_dim: Annotated[int, typer.Option(help="Conv width of the mask heads.")] = 256,
    fine_size: Annotated[
        int, typer.Option(help="PatchDCT fine RoIAlign grid (multiple of 14).")
    ] = 42,
    patch_hidden: Annotated[int, typer.Option(help="PatchDCT refinement width.")] = 256,
    loss_weight: Annotated[
        float | None,
        typer.Option(
            help="Loss weight of the dctmask / patchdct head (default: the paper's, 0.007 "
            "for DCT-Mask's summed L1, 1.0 for PatchDCT's mean losses)."
        ),
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option(help="Instances per training image (first by id).")
    ] = 32,
    epochs: Epochs = 16,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 4,
    optimizer: Annotated[str, typer.Option(help="adamw | sgd.")] = "adamw",
    lr: LearningRate = 1e-3,
    weight_decay: WeightDecay = 1e-4,
    warmup_epochs: WarmupEpochs = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: init, order, box jitter.")] = 0,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N epochs (and the last).")] = 1,
    out: Annotated[Path, typer.Option(help="Run folder (log, checkpoint).")] = Path("runs/masks"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    amp: Amp = None,
    torch_threads: TorchThreads = None,
    smoke: Smoke = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Train an instance-mask head (grid = Mask R-CNN 28x28, dctmask = DCT-Mask 300-d vector,
    patchdct = DCT-Mask + PatchDCT refinement) on a compact ResNet + FPN over a DCT store
    (--input dct) or an RGB store (--input rgb) encoded at a square canvas (--geometry S:S),
    with RoIAlign features of ground-truth boxes jittered like proposals. Evaluates
    oracle-box COCO mask AP / AP50 / AP75, mean mask IoU and boundary IoU on the validation
    set; one JSON line per epoch to OUT/log.jsonl (and stdout with --json); checkpoints
    OUT/last.pt (--resume; --overwrite replaces a run). --smoke: 2 steps and 2 validation
    images per epoch. See docs/mask-heads.md.
    """
    from freqdata.trainers.masks import MasksConfig, train_masks

    if input not in ("dct", "rgb"):
        fail(f"--input must be dct or rgb, got {input!r}")
    cfg = MasksConfig(
        store=str(store), annotations=str(annotations),
        val_store=str(val_store) if val_store else None,
        val_annotations=str(val_annotations) if val_annotations else None,
        head=head, input=input, model=model, width=width, fpn_channels=fpn_channels,
        head_dim=head_dim, fine_size=fine_size, patch_hidden=patch_hidden,
        loss_weight=loss_weight,
        max_instances=max_instances, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        seed=seed, eval_every=eval_every, out=str(out), resume=resume,
        overwrite=overwrite, device=device, amp=amp,
        torch_threads=torch_threads, smoke=smoke,
    )  # fmt: skip

    run_trainer(train_masks, cfg, quiet=quiet, as_json=as_json)

