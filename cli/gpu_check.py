"""``freqdata gpu-check OUT [--cpu]``: every CUDA check and benchmark in one command
(:mod:`freqdata.bench.gpu_check`, docs/gpu.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freqdata.cli.common import EXIT_SOME_FAILED, console, reported

_HELP = (
    "Run everything that needs CUDA and write OUT/gpu-check.json and OUT/gpu-check.md: "
    "machine description, pytest -m gpu, bench transfer, bench loader and bench masks on "
    "CUDA, and ResNet-50 RGB-224 vs DCT-24 training images/s (bf16, channels_last; from "
    "stores and from DALI). About 8 minutes on one GPU. --cpu: the same steps on the CPU at "
    "tiny sizes (the dry run CI does). Exit 0 when every step passed or was skipped, 1 when "
    "one failed or timed out, 2 for bad usage (e.g. no GPU without --cpu)."
)


def gpu_check_cmd(
    out: Annotated[Path, typer.Argument(help="Folder for the results (created).")],
    cpu: Annotated[bool, typer.Option("--cpu", help="Dry run on the CPU at tiny sizes.")]
    = False,
    data: Annotated[Path | None, typer.Option(help="Test data folder (default: "
                                              "$FREQDATA_DATA, else ../shared/data).")] = None,
    step: Annotated[list[str] | None, typer.Option(help="Run only this step (repeatable): "
                                                   "machine, stores, gpu-tests, bench-transfer, "
                                                   "bench-loader, bench-masks, "
                                                   "train-throughput.")] = None,
) -> None:
    from freqdata.bench.gpu_check import STEPS, run_gpu_check

    with reported():
        result = run_gpu_check(out, cpu=cpu, data=data, steps=tuple(step) if step else STEPS,
                               echo=lambda line: console.print(line, markup=False,
                                                               highlight=False))
    typer.echo((out / "gpu-check.md").read_text())
    if result["exit_status"]:
        raise typer.Exit(EXIT_SOME_FAILED)


gpu_check_cmd.__doc__ = _HELP  # typer shows the docstring as the help
