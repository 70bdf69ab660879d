"""``freqdata train semantic``: semantic segmentation on full or block-wise labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freqdata.cli.common import (
    Amp,
    AsJson,
    ChannelsLast,
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


def semantic_cmd(
    store: Annotated[Path, typer.Option(help="Training image store (DCT or RGB).")],
    val_store: Annotated[Path | None, typer.Option(help="Validation image store.")] = None,
    masks: Annotated[
        Path | None, typer.Option(help="Mask store of the training images (default STORE/masks).")
    ] = None,
    val_masks: Annotated[
        Path | None,
        typer.Option(help="Mask store of the validation images (default VAL_STORE/masks)."),
    ] = None,
    input: Annotated[str, typer.Option("--input", help="dct | rgb.")] = "rgb",
    classes: Annotated[
        str,
        typer.Option(help="person (vs background) | objects (any category vs background) | "
                     "all | comma list of COCO names."),
    ] = "person",
    labels: Annotated[str, typer.Option(help="full | blockwise (training labels).")] = "full",
    nu_max: Annotated[
        int | None,
        typer.Option(help="Band limit of the block-wise labels (cycles per stored image)."),
    ] = None,
    truncate: Annotated[
        int | None, typer.Option(help="Feature truncation: run the decoder on a G x G grid.")
    ] = None,
    conv: Annotated[str, typer.Option(help="conv | fdconv (swap convs for FDConv).")] = "conv",
    width: Annotated[int, typer.Option(help="ResNet-18 stage-1 width.")] = 32,
    output_stride: Annotated[int, typer.Option(help="Backbone output stride: 8 | 16 | 32.")] = 16,
    crop: Annotated[
        int | None,
        typer.Option(help="Random training crop, pixels (multiple of 8; default: whole image)."),
    ] = None,
    epochs: Epochs = 20,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs (and the last).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 8,
    optimizer: Annotated[str, typer.Option(help="adamw | sgd (Nesterov).")] = "adamw",
    lr: LearningRate = 1e-3,
    weight_decay: WeightDecay = 1e-4,
    warmup_epochs: WarmupEpochs = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: init, data order, flips.")] = 0,
    out: Annotated[Path, typer.Option(help="Run folder (log, checkpoint).")] = Path(
        "runs/semantic"
    ),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    amp: Amp = None,
    channels_last: ChannelsLast = True,
    torch_threads: TorchThreads = None,
    smoke: Smoke = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Train a compact DeepLabv3+ (ResNet-18 backbone, RGB or DCT input) on full or block-wise
    labels, validated on full labels (mIoU). Image store: --input dct takes the DCT cubes of
    'freqdata encode images --geometry S:C', --input rgb an RGB store ('freqdata train
    rgb-store'). Labels: the category maps of a mask store ('freqdata encode masks ANN OUT
    --weak 8'; default STORE/masks); --labels blockwise --nu-max N trains on 2N+1 majority
    cells per side of the stored image. One JSON line per epoch goes to OUT/log.jsonl (and
    stdout with --json); the end line has R_ce(nu) of the final model's validation logits.
    OUT/last.pt is the checkpoint (--resume continues, --overwrite replaces). --smoke: 2 steps
    and 2 validation batches per epoch.
    Exit 2: bad options (nothing trained). See docs/semantic.md.
    """
    from freqdata.trainers.semantic import SemanticConfig, train_semantic

    if input not in ("dct", "rgb"):
        fail(f"--input must be dct or rgb, got {input!r}")
    cfg = SemanticConfig(
        store=str(store), val_store=str(val_store) if val_store else None,
        masks=str(masks) if masks else None, val_masks=str(val_masks) if val_masks else None,
        input=input, classes=classes, labels=labels, nu_max=nu_max, truncate=truncate,
        conv=conv, width=width, output_stride=output_stride, crop=crop, epochs=epochs,
        val_every=val_every,
        batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        warmup_epochs=warmup_epochs, seed=seed, out=str(out), resume=resume,
        overwrite=overwrite, device=device,
        amp=amp, channels_last=channels_last, torch_threads=torch_threads, smoke=smoke,
    )  # fmt: skip

    run_trainer(train_semantic, cfg, quiet=quiet, as_json=as_json)

