"""``freqdata train ...``: reference trainers on stores (docs/trainers.md).

Output: on a terminal a progress bar per epoch, a line per epoch and an end summary; with
``--json`` or when stdout is not a terminal the JSON log records, one per line (they always
go to OUT/log.jsonl). Exit status: 0 = the run finished; 1 = a store cannot be used; 2 = bad
usage or options, or OUT holds a run and neither --resume nor --overwrite was given (nothing
trained); 130 = interrupted (--resume continues after the last finished epoch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from freqdata.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
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
    reported,
    run_trainer,
)

train_app = typer.Typer(
    help="Reference trainers (classification, masks, segmentation).", no_args_is_help=True
)


_CLASSIFY_HELP = (
    "Train a classifier on a DCT store (--input dct) or an RGB store (--input rgb, written by "
    "'freqdata train rgb-store') and log one JSON line per epoch (loss, top-1/top-5, "
    "samples/s, bytes per sample moved to the device) to OUT/log.jsonl (and stdout with --json). "
    "Checkpoints go to OUT/last.pt (--resume continues after the last finished epoch; an OUT "
    "holding a run is refused without --resume or --overwrite). "
    "With --gate (DCT): the dynamic channel gate, its heat map OUT/heatmap.png and the static "
    "selection OUT/preset.json. --smoke: 2 steps and 2 validation batches per epoch."
)


@train_app.command("classify", help=_CLASSIFY_HELP)
def classify_cmd(
    store: Annotated[
        Path, typer.Option(help="Training store (DCT or RGB), or an image folder (--preset).")
    ],
    val_store: Annotated[Path | None, typer.Option(help="Validation store (same kind).")] = None,
    model: Annotated[
        str, typer.Option(help="resnet18 (compact, width 32) | resnet50 | mobilenetv2.")
    ] = "resnet18",
    input: Annotated[str, typer.Option("--input", help="dct | rgb.")] = "dct",
    gate: Annotated[bool, typer.Option(help="Dynamic channel gate on the DCT input.")] = False,
    gate_lambda: Annotated[
        float, typer.Option(help="λ of the gate regularizer λ·Σ_c mean_b g[b,c].")
    ] = 0.01,
    gate_threshold: Annotated[
        float, typer.Option(help="Selection rate a channel needs to enter the static preset.")
    ] = 0.5,
    width: Annotated[
        int | None, typer.Option(help="ResNet stage-1 width (default: resnet18 32, resnet50 64).")
    ] = None,
    conv: Annotated[
        str,
        typer.Option(
            help="conv (plain) | fdconv (Frequency Dynamic Convolution in the blocks' "
            "1x1/3x3 convs with > 16 channels; docs/fdconv.md)."
        ),
    ] = "conv",
    epochs: Epochs = 20,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov momentum) | adamw.")] = "sgd",
    lr: LearningRate = 0.05,
    weight_decay: WeightDecay = 5e-4,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = 0.1,
    warmup_epochs: WarmupEpochs = 2.0,
    seed: Annotated[int, typer.Option(help="Seed: init, data order, crops, flips.")] = 0,
    crop: Annotated[
        int | None,
        typer.Option(
            help="Crop side in pixels of the stored images "
            "(random in training, centre in validation; "
            "DCT: a multiple of 8)."
        ),
    ] = None,
    transport: Annotated[str, typer.Option(help="DCT to the device as int16 | int8.")] = "int16",
    augment: Annotated[
        str,
        typer.Option(
            help="none (host crops of --crop + flip) | standard (RandomResizedCrop to --crop + "
            "flip on the device; DCT: in the DCT domain, RGB: on the pixels, same boxes and "
            "kernel) | randaugment (standard + RandAugment; DCT only). Needs a store with a "
            "fixed grid, e.g. --geometry 512:512."
        ),
    ] = "none",
    box_step: Annotated[
        int,
        typer.Option(
            help="--augment boxes on a lattice of this many stored pixels: 2 on a DCT arm at "
            "twice the RGB arm's resolution gives both arms the same boxes."
        ),
    ] = 1,
    preset: Annotated[
        str,
        typer.Option(
            help="A --store that is an image folder (class sub-folders) is encoded on the fly "
            "in --threads worker processes with this preset (--augment standard: "
            "RandomResizedCrop + flip on the pixels, then the DCT)."
        ),
    ] = "dctnet-24",
    geometry: Annotated[
        str, typer.Option(help="The on-the-fly encoding's crop geometry (resnet, S:C).")
    ] = "resnet",
    keep_preset: Annotated[
        str | None,
        typer.Option(
            help="With --augment on a DCT store holding more channels: the model reads this "
            "preset's (e.g. a dctnet-48 store, --keep-preset dctnet-24)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Run folder (log, checkpoint, heat map).")] = Path(
        "runs/classify"
    ),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    amp: Amp = None,
    channels_last: ChannelsLast = True,
    threads: Annotated[int, typer.Option(help="Loader threads (0 = synchronous).")] = 1,
    torch_threads: TorchThreads = None,
    smoke: Smoke = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """``freqdata train classify``: see ``_CLASSIFY_HELP`` and :mod:`freqdata.trainers.classify`."""
    from freqdata.trainers.classify import ClassifyConfig, train_classify

    if input not in ("dct", "rgb"):
        fail(f"--input must be dct or rgb, got {input!r}")
    cfg = ClassifyConfig(
        store=str(store), val_store=str(val_store) if val_store else None, model=model,
        input=input, gate=gate, gate_lambda=gate_lambda, gate_threshold=gate_threshold,
        width=width, conv=conv, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
        weight_decay=weight_decay, label_smoothing=label_smoothing,
        warmup_epochs=warmup_epochs, seed=seed, crop=crop, transport=transport, out=str(out),
        augment=augment, box_step=box_step, preset=preset, geometry=geometry,
        keep_preset=keep_preset,
        resume=resume,
        overwrite=overwrite, device=device, amp=amp, channels_last=channels_last, threads=threads,
        torch_threads=torch_threads, smoke=smoke,
    )  # fmt: skip

    run_trainer(train_classify, cfg, quiet=quiet, as_json=as_json)


@train_app.command("rgb-store")
def rgb_store_cmd(
    src: Annotated[Path, typer.Argument(help="Folder of images (class sub-folders → labels).")],
    out: Annotated[Path, typer.Argument(help="RGB store to write (Zarr v3).")],
    geometry: Annotated[
        str, typer.Option(help="S:C: shorter side S, centre crop C x C (freqdata's pixel path).")
    ] = "256:240",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="The summary as one JSON line (also when stdout is not a terminal).")]
    = False,
) -> None:
    """Write an RGB store (uint8 (N, 3, C, C)) for the RGB arm of ``train classify``."""
    from freqdata.trainers.rgb import encode_rgb

    try:
        with reported():
            summary = encode_rgb(src, out, geometry, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError) as e:
        fail(str(e))
    shown = {k: v for k, v in summary.items() if k != "errors"}
    if as_json or not sys.stdout.isatty():
        typer.echo(json.dumps(shown))
    else:
        t = Table(title=f"freqdata train rgb-store → {out}", show_header=False)
        for k, v in shown.items():
            t.add_row(k, str(v))
        Console().print(t)
    for err in summary["errors"]:
        typer.echo(f"failed {err['path']}: {err['reason']}", err=True)
    raise typer.Exit(EXIT_SOME_FAILED if summary["failed"] else EXIT_OK)


# Commands with their own modules (one trainer each), registered on the same sub-app.
from freqdata.cli.train_masks import masks_cmd  # noqa: E402
from freqdata.cli.train_recipe import recipe_cmd  # noqa: E402
from freqdata.cli.train_semantic import semantic_cmd  # noqa: E402

train_app.command("masks")(masks_cmd)
train_app.command("semantic")(semantic_cmd)
train_app.command("recipe")(recipe_cmd)
