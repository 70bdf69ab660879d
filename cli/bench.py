"""``freqdata bench ...``: benchmarks (commands, never timed tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freqdata.bench.busy import busy_line
from freqdata.cli.common import EXIT_USAGE, reported

bench_app = typer.Typer(help="Benchmarks: print a table, write JSON.", no_args_is_help=True)



_DECODE_HELP = (
    "Per-image cost of freqdata's encoders vs RGB decoding and DCTNet's pipeline, on one core."
    "\n\n"
    "Rows: coeff, pixels-resnet, simplejpeg-rgb (baseline), simplejpeg-rgb+resize224, "
    "pil-rgb+resize224, dctnet-style (anchor). Files are read into memory first and "
    "everything runs serially in this process; the median of --repeats passes is reported."
    "\n\n"
    "Prints a table and PASS/FAIL per target. Exit status 0 even when a target fails; "
    "2 for bad usage (no usable JPEG, bad option)."
)


@bench_app.command("decode", help=_DECODE_HELP)
def decode_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of JPEGs (*.jpg, *.jpeg; searched "
                                           "recursively).")],
    limit: Annotated[int, typer.Option(help="Use the first N usable files in sorted order.")]
    = 200,
    repeats: Annotated[int, typer.Option(help="Timed passes over the files; the median is "
                                         "reported.")] = 3,
    preset: Annotated[str, typer.Option(help="Channels for the freqdata rows and the anchor.")]
    = "dctnet-24",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result "
                                                   "as JSON to this file.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the result.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata bench decode``: see ``_DECODE_HELP`` and :mod:`freqdata.bench.decode`."""
    import json
    import shlex

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from freqdata.bench.decode import render_table, run_decode_bench, target_lines

    err = Console(stderr=True)
    parts = ["freqdata", "bench", "decode", str(folder), "--limit", str(limit),
             "--repeats", str(repeats), "--preset", preset]
    if json_path is not None:
        parts += ["--json", str(json_path)]
    if label is not None:
        parts += ["--label", label]
    command = shlex.join(parts)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, disable=quiet, transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description="validating (untimed)" if stage == "validate"
                       else "timed passes", completed=done, total=total)

        with reported():  # NoImagesError, a bad preset: UsageError
            result = run_decode_bench(folder, limit=limit, repeats=repeats, preset=preset,
                                      label=label, command=command, on_progress=on_progress)

    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 100)  # logs and captured output: no truncated row names
    out.print(render_table(result))
    for line in target_lines(result):
        out.print(line)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {json_path}")


def _write_json(result: dict, json_path: Path | None, out: object) -> None:
    """Write ``result`` as JSON to ``json_path`` (if given) and say so on ``out`` (a Console)."""
    import json

    if json_path is None:
        return
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    out.print(f"wrote {json_path}")  # type: ignore[attr-defined]


_TRANSFER_HELP = (
    "Bytes per sample and host→device cost of RGB inputs vs every DCT preset."
    "\n\n"
    "Representations: rgb224-uint8 (baseline), rgb448-uint8, rgb224-float32, and for "
    "dctnet-6/24/32/48/64 and all at 56x56 blocks: int16, float16 and the compact int8 "
    "transport, each with full and native (4:2:0) chroma. Reports exact bytes per sample, "
    "CPU batch-preparation samples/s and, on a CUDA GPU only, host→device GB/s (pinned and "
    "pageable, % of the pinned peak measured in the same run) and end-to-end samples/s to "
    "the device. Without a GPU those figures are N/A."
    "\n\n"
    "Prints a table and PASS/FAIL/N/A per target. Exit status 0 even when a target fails; "
    "2 for bad usage."
)


@bench_app.command("transfer", help=_TRANSFER_HELP)
def transfer_cmd(
    batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = 128,
    repeats: Annotated[int, typer.Option(help="Timed runs per figure (median reported).")]
    = 5,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]
    = "auto",
    peak_mib: Annotated[int, typer.Option(help="Size of the copies that measure the pinned "
                                          "host→device peak and host memcpy (MiB).")] = 256,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result "
                                                   "as JSON to this file.")] = None,
    png_path: Annotated[Path | None, typer.Option("--png", help="Also draw bytes per sample "
                                                  "as a bar chart (PNG) to this file.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the result.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata bench transfer``: see ``_TRANSFER_HELP`` and :mod:`freqdata.bench.transfer`."""
    import shlex

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from freqdata.bench.transfer import (
        render_png,
        render_table,
        run_transfer_bench,
        target_lines,
    )

    err = Console(stderr=True)
    parts = ["freqdata", "bench", "transfer", "--batch-size", str(batch_size),
             "--repeats", str(repeats), "--device", device, "--peak-mib", str(peak_mib)]
    for flag, value in (("--json", json_path), ("--png", png_path), ("--label", label)):
        if value is not None:
            parts += [flag, str(value)]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, disable=quiet, transient=True) as bar:
        task = bar.add_task("measuring", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        with reported():
            result = run_transfer_bench(batch_size=batch_size, repeats=repeats, device=device,
                                        peak_bytes=peak_mib * 2**20, label=label,
                                        command=shlex.join(parts),
                                        on_progress=on_progress)

    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 200)  # logs and captured output: the whole table
    out.print(render_table(result))
    for line in target_lines(result):
        out.print(line)
    _write_json(result, json_path, out)
    if png_path is not None:
        out.print(f"wrote {render_png(result, png_path)}")


_LOADER_HELP = (
    "Streaming a store into PyTorch: samples/s of freqdata's loader (see "
    "freqdata.bench.loader). Prints a table; --json writes the full result."
)


@bench_app.command("loader", help=_LOADER_HELP)
def loader_cmd(
    store: Annotated[Path, typer.Argument(help="A store written by freqdata encode.")],
    batch_size: Annotated[int | None, typer.Option(help="Samples per batch.")] = None,
    workers: Annotated[int | None, typer.Option(help="Loader worker processes.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed passes (median reported).")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Use at most N samples.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Seconds per timed run.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result "
                                                   "as JSON to this file.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the result.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata bench loader``: a thin wrapper over ``freqdata.bench.loader``.

    Calls ``run_loader_bench(store, **options)`` with the options given on the command line
    (those its signature accepts), then prints its ``render_table`` / ``target_lines`` when
    the module has them (else the result as JSON).
    """
    import inspect
    import json
    import shlex

    from rich.console import Console

    err = Console(stderr=True)
    try:
        from freqdata.bench import loader as bench_loader
    except ImportError as e:
        err.print(f"[bold red]error:[/] the loader benchmark is not available: {e}")
        raise typer.Exit(EXIT_USAGE) from None
    parts = ["freqdata", "bench", "loader", str(store)]
    options: dict[str, object] = {}
    for key, flag, value in (("batch_size", "--batch-size", batch_size),
                             ("workers", "--workers", workers), ("device", "--device", device),
                             ("repeats", "--repeats", repeats), ("limit", "--limit", limit),
                             ("seconds", "--seconds", seconds),
                             ("label", "--label", label)):
        if value is not None:
            options[key] = value
            parts += [flag, str(value)]
    if json_path is not None:
        parts += ["--json", str(json_path)]
    options["command"] = shlex.join(parts)
    if quiet:
        options["quiet"] = True
    run = bench_loader.run_loader_bench
    params = inspect.signature(run).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in options if k not in params and k not in ("command", "quiet")]
        if unknown:
            err.print(f"[bold red]error:[/] option(s) not supported by this loader benchmark: "
                      f"{', '.join('--' + k.replace('_', '-') for k in unknown)}")
            raise typer.Exit(EXIT_USAGE)
        options = {k: v for k, v in options.items() if k in params}
    with reported():  # not a store: StoreError (exit 1)
        result = run(store, **options)

    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    render = getattr(bench_loader, "render_table", None)
    if render is not None:
        out.print(render(result))
    else:
        out.print_json(json.dumps(result, default=str))
    for line in getattr(bench_loader, "target_lines", lambda r: [])(result):
        out.print(line)
    others = [r["other_cpu"] for r in result.get("rows", {}).values() if "other_cpu" in r]
    busy = busy_line(max(others)) if others else None
    if busy is not None:
        out.print(busy, markup=False, highlight=False)
    _write_json(result, json_path, out)


_MASKS_HELP = (
    "COCO polygons → DCT-Mask vectors per core: freqdata's encoder against pycocotools, "
    "scipy.fft.dctn and a naive detectron2-style loop measured in the same run (see "
    "freqdata.bench.masks). Target: >= 20,000 masks/s/core on CPU; torch rows on CUDA "
    ">= 100k masks/s (N/A without a GPU)."
    "\n\n"
    "Prints a table and PASS/FAIL/N/A per target. Exit status 0 even when a target fails; "
    "2 for bad usage."
)


@bench_app.command("masks", help=_MASKS_HELP)
def masks_cmd(
    annotations: Annotated[Path, typer.Argument(help="COCO instances_*.json file.")],
    k: Annotated[int, typer.Option("--k", help="Mask grid size K.")] = 128,
    n: Annotated[int, typer.Option("--n", help="DCT coefficients per mask.")] = 300,
    repeats: Annotated[int, typer.Option(help="Timed passes (median reported).")] = 5,
    device: Annotated[str | None, typer.Option(help="Torch rows' device (default: cuda when "
                                               "available, else cpu).")] = None,
    torch_rows: Annotated[bool, typer.Option("--torch/--no-torch", help="Also the torch "
                                             "rows (needs torch).")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result "
                                                   "as JSON to this file.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the result.")] = None,
) -> None:
    """``freqdata bench masks``: see ``_MASKS_HELP`` and :mod:`freqdata.bench.masks`."""
    import shlex

    from rich.console import Console

    from freqdata.bench.decode import software_info
    from freqdata.bench.masks import TARGET_GPU_MASKS_PER_S, render_table, run_masks_bench

    err = Console(stderr=True)
    if not annotations.is_file():
        err.print(f"[bold red]error:[/] {annotations} is not a file")
        raise typer.Exit(EXIT_USAGE)
    if k < 1 or not 1 <= n <= k * k or repeats < 1:
        err.print(f"[bold red]error:[/] need K >= 1, 1 <= n <= K*K, repeats >= 1 "
                  f"(got K={k}, n={n}, repeats={repeats})")
        raise typer.Exit(EXIT_USAGE)
    parts = ["freqdata", "bench", "masks", str(annotations), "--k", str(k), "--n", str(n),
             "--repeats", str(repeats)]
    if device is not None:
        parts += ["--device", device]
    if not torch_rows:
        parts.append("--no-torch")
    if json_path is not None:
        parts += ["--json", str(json_path)]
    with reported():  # annotations that are not COCO instances: UsageError
        result = run_masks_bench(annotations, k=k, n=n, repeats=repeats, device=device,
                                 include_torch=torch_rows, print_table=False)
    result["command"] = shlex.join(parts)
    result["label"] = label
    result["software"] = software_info()
    if not (result.get("hardware") or {}).get("gpu"):
        why = "torch rows not run" if result.get("torch") is None else (
            f"no CUDA device, torch rows ran on {result['torch']['device']}")
        result["targets"].append({"name": "gpu-torch-targets", "row": "torch-targets",
                                  "value": None, "limit": TARGET_GPU_MASKS_PER_S,
                                  "pass": None, "text": f"torch-targets >= "
                                  f"{TARGET_GPU_MASKS_PER_S:.0f} masks/s (GPU): {why}"})
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    lines = render_table({**result, "targets": [t for t in result["targets"]
                                                if t["pass"] is not None]}).splitlines()
    out.print("\n".join(lines), markup=False, highlight=False)
    for t in result["targets"]:
        if t["pass"] is None:
            out.print(f"N/A  {t['text']}", markup=False, highlight=False)
    busy = busy_line(result["hardware"].get("other_processes_cpu_fraction"))
    if busy is not None:
        out.print(busy, markup=False, highlight=False)
    _write_json(result, json_path, out)
