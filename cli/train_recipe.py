"""``freqdata train recipe NAME``: a named paper recipe, dataset folder → stores → trained
model (:mod:`freqdata.trainers.recipes`, docs/trainers.md "Paper recipes")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from freqdata.cli.common import AsJson, Device, Overwrite, Quiet, Resume, run_trainer


def recipe_cmd(
    name: Annotated[str, typer.Argument(help="dctnet-resnet50-imagenet | dctmask-coco | "
                                        "patchdct-coco | deeplab-blockwise-coco.")],
    work: Annotated[Path, typer.Option(help="Folder for the stores (WORK/stores) and the "
                                       "run (WORK/run).")] = Path("runs/recipe"),
    data: Annotated[Path | None, typer.Option(help="Dataset root (ImageNet: train/ and val/ "
                                              "class folders; COCO: train2017/, val2017/, "
                                              "annotations/). With --smoke: the test data "
                                              "(default $FREQDATA_DATA).")] = None,
    smoke: Annotated[bool, typer.Option(help="The recipe on a few test images at tiny sizes, "
                                        "2 steps (what the tests run).")] = False,
    workers: Annotated[int, typer.Option(help="Encoding processes.")] = 0,
    device: Device = "auto",
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Run a named paper recipe: encode the dataset into stores under WORK/stores (resumed or
    reused when present), then train into WORK/run with the recipe's configuration. Exit
    status as the other trainers (0 finished, 1 unusable store, 2 bad usage)."""
    from freqdata.trainers.recipes import run_recipe

    overrides = {"device": device, "resume": resume, "overwrite": overwrite}

    def run(cfg: Any, **kw: Any) -> Any:
        return run_recipe(name, work, data=data, smoke=smoke, workers=workers,
                          overrides=overrides, **kw)  # fmt: skip

    run_trainer(run, SimpleNamespace(out=str(work / "run")), quiet=quiet, as_json=as_json)
