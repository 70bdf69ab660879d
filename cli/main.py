"""The ``freqdata`` command (typer). Exit statuses: :mod:`freqdata.cli.common`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from freqdata.cli.bench import bench_app
from freqdata.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    console,
    fail,
    human,
    plain_help,
    reported,
)
from freqdata.cli.gpu_check import gpu_check_cmd
from freqdata.cli.masks import encode_masks_cmd
from freqdata.cli.quality import quality_app
from freqdata.cli.train import train_app
from freqdata.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

app = typer.Typer(
    help="freqdata: JPEGs and masks → DCT tensors in Zarr stores, streamed into PyTorch.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from freqdata import __version__

        typer.echo(f"freqdata {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version,
        is_eager=True)] = False,
) -> None:
    """freqdata: JPEGs and masks → DCT tensors in Zarr stores, streamed into PyTorch."""
encode_app = typer.Typer(help="Encode a dataset into a Zarr v3 store.", no_args_is_help=True)
app.add_typer(encode_app, name="encode")
app.add_typer(bench_app, name="bench")
app.add_typer(quality_app, name="quality")
app.add_typer(train_app, name="train")
app.command("gpu-check")(gpu_check_cmd)
encode_app.command("masks")(encode_masks_cmd)

@encode_app.command("images")
def encode_images_cmd(
    src: Annotated[
        str,
        typer.Argument(
            help="Folder of images (class sub-folders → labels), one image, or a text file of "
            "paths; a local path or an fsspec URL (s3://, gs://, memory://)."
        ),
    ],
    out: Annotated[
        str, typer.Argument(help="Store to write (a Zarr v3 directory; a path or an fsspec URL).")
    ],
    preset: Annotated[
        str, typer.Option(help="Channels: dctnet-6/24/32/48/64, all, zigzag-Y-C.")
    ] = "dctnet-24",
    path: Annotated[
        str | None,
        typer.Option(
            help="coeff (JPEG coefficients, no IDCT), pixels, or dctnet (DCTNet's own "
            "transform, bit for bit; a crop geometry). Default: coeff, or pixels when "
            "--geometry resamples (resnet, mobilenet, S:C)."
        ),
    ] = None,
    geometry: Annotated[
        str, typer.Option(help="none, resnet (512→448), mobilenet (1024→896) or S:C.")
    ] = "none",
    chroma: Annotated[
        str, typer.Option(help="full (luma grid) or native (file's sampling).")
    ] = "full",
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Worker processes (default: all CPUs; 0 = in-process, no isolation)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted encode of OUT.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Reject images larger than this (width x height).")
    ] = DEFAULT_MAX_PIXELS,
    max_bytes: Annotated[
        int,
        typer.Option(
            min=1, help="Record input files larger than this (bytes) as failed, unread."
        ),
    ] = DEFAULT_MAX_BYTES,
    lenient: Annotated[
        bool,
        typer.Option(
            help="Store damaged or truncated JPEGs as far as they decode (listed as warnings "
            "in the store, freqdata inspect) instead of recording them as failed."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs per commit.")] = 64,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
            "(a LocalCluster of N workers). Needs dask[distributed]; see docs/scale-out.md."
        ),
    ] = None,
) -> None:
    """Encode images into DCT cubes; prints a summary. Exit 1 if some inputs failed, 2 for bad
    options (checked before anything is written), 130 when interrupted (--resume continues)."""
    from freqdata.job import EncodeOptions, default_workers, encode_images
    from freqdata.pixels import parse_geometry
    from freqdata.sources import list_sources
    from freqdata.store import exists

    if resume and overwrite:
        fail("--resume and --overwrite exclude each other")
    with reported():
        if path is None:  # a geometry that resamples implies the pixel path
            path = "coeff" if parse_geometry(geometry).resize is None else "pixels"
        opts = EncodeOptions(preset, path, geometry, chroma, max_pixels, max_bytes, lenient)
        opts.validate()
    try:
        with reported():
            sources = list_sources(src)
            opts.spec(sources)  # the store layout: validates the options against the inputs
    except FileNotFoundError as e:
        fail(str(e))
    if exists(out) and not (resume or overwrite):
        fail(f"{out} exists: use --resume to continue it or --overwrite to replace it")
    n_workers = default_workers() if workers is None else workers
    bar = Progress(
        TextColumn("[bold]encoding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )
    task = bar.add_task("encode", total=len(sources), failed=0)
    done = [0]

    def on_progress(n_done: int, total: int, failed: int) -> None:
        done[0] = n_done
        bar.start()  # only once the store is open: a refused --resume prints no empty bar
        bar.update(task, completed=n_done, failed=failed)

    try:
        with reported():
            if scheduler is not None:
                try:
                    import distributed  # noqa: F401

                    from freqdata.distributed import encode_distributed
                except ImportError as e:
                    fail(f"--scheduler needs dask[distributed] ({e})")
                summary = encode_distributed(
                    sources,
                    out,
                    opts,
                    scheduler=scheduler,
                    resume=resume,
                    overwrite=overwrite,
                    on_progress=on_progress,
                )
            else:
                summary = encode_images(
                    sources,
                    out,
                    opts,
                    workers=n_workers,
                    resume=resume,
                    overwrite=overwrite,
                    batch_size=batch_size,
                    on_progress=on_progress,
                )
    except FileExistsError as e:
        fail(str(e))
    except KeyboardInterrupt:
        bar.stop()
        console.print(
            f"[bold yellow]interrupted:[/] {done[0]} of {len(sources)} inputs done; "
            f"continue with: freqdata encode images {src} {out} --resume"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        bar.stop()
    table = Table(title=f"freqdata encode images → {out}", show_header=False)
    for k, v in (
        (
            "inputs",
            f"{summary.inputs}"
            + (f" (resumed at {summary.resumed_from})" if summary.resumed_from else ""),
        ),
        ("encoded", str(summary.encoded)),
        (
            "failed",
            str(summary.failed)
            + (f" ({summary.store_failed} in the whole store)" if summary.resumed_from else ""),
        ),
        ("cube bytes (raw int16)", human(summary.raw_bytes)),
        ("store bytes on disk", human(summary.store_bytes)),
        (
            "time",
            f"{summary.seconds:.2f} s ({summary.encoded / max(summary.seconds, 1e-9):.1f} "
            f"images/s, {n_workers} workers)",
        ),
    ):
        table.add_row(k, v)
    Console().print(table)
    for err in summary.errors[:20]:
        console.print(f"[red]failed[/] {err['path']}: {err['reason']}")
    if len(summary.errors) > 20:
        console.print(f"... and {len(summary.errors) - 20} more (freqdata inspect {out} --errors)")
    # the whole store: a --resume that had nothing left to do still reports earlier failures
    raise typer.Exit(EXIT_SOME_FAILED if summary.store_failed else EXIT_OK)


@app.command("inspect")
def inspect_cmd(
    store: Annotated[Path, typer.Argument(help="A store written by freqdata encode.")],
    errors: Annotated[bool, typer.Option(help="List every failed input.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Read and check every chunk and committed row instead (checksums, missing "
            "chunks, index, statistics, completeness); exit 1 on damage.",
        ),
    ] = False,
) -> None:
    """Summarize a store: layout, samples, classes, statistics, failures."""
    from freqdata.masks.store import is_mask_store
    from freqdata.store import open_store, store_bytes

    if verify:
        from freqdata.store.verify import verify_store

        if not store.exists():
            fail(f"{store} does not exist", EXIT_SOME_FAILED)
        with reported(f"{store}: "):
            report = verify_store(store)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            Console().print(str(report), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_FAILED)

    if is_mask_store(store):
        from freqdata.cli.masks import inspect_masks

        inspect_masks(store, errors=errors, as_json=as_json)
        return

    if not store.exists():
        fail(f"{store} does not exist", EXIT_SOME_FAILED)
    with reported(f"{store}: "):
        s = open_store(store)
    labels = s.labels
    counts = {name: int((labels == k).sum()) for k, name in enumerate(s.class_names)}
    first = s.cube(0) if len(s) else None
    shapes = (
        [list(a.shape) for a in (first if isinstance(first, tuple) else (first,))]
        if first is not None
        else []
    )
    size = store_bytes(store)
    info = {
        "store": str(store),
        "complete": s.complete,
        "layout": s.layout,
        "samples": len(s),
        "inputs": s.attrs["inputs"]["count"],
        "inputs_done": s.progress.inputs_done,
        "failed": len(s.errors),
        "warnings": len(s.warnings),
        "first_sample_shapes": shapes,
        "classes": counts,
        "config": {k: v for k, v in s.config.items() if k != "indices"},
        "channels": len(s.channel_names),
        "bytes_on_disk": size,
        "mean": np.round(s.mean, 3).tolist(),
        "std": np.round(s.std, 3).tolist(),
    }
    if is_mask_store(store / "masks"):  # attached with encode masks --into
        from freqdata.cli.masks import mask_store_info

        m = mask_store_info(store / "masks")
        info["masks"] = {k: m[k] for k in ("store", "complete", "instances", "images",
                                           "images_in_image_store", "failed", "weak_nus")}
    if as_json:
        info["errors"] = s.errors
        info["warning_log"] = s.warnings
        print(json.dumps(info, indent=2))
        return
    out = Console()
    t = Table(title=f"freqdata store {store}", show_header=False)
    status = "complete" if s.complete else "[bold red]INCOMPLETE[/] (resume with --resume)"
    for k in ("layout", "samples", "inputs", "failed", "warnings", "channels"):
        t.add_row(k, str(info[k]))
    t.add_row("status", status)
    t.add_row("sample shape", ", ".join(str(tuple(x)) for x in shapes) + " (first sample)")
    for k, v in info["config"].items():
        t.add_row(k, str(v))
    if counts:
        t.add_row("classes", ", ".join(f"{n}: {c}" for n, c in counts.items()))
    t.add_row("bytes on disk", human(size))
    if "masks" in info:
        m = info["masks"]
        weak = ", ".join(f"nu{v}" for v in m["weak_nus"]) or "none"
        t.add_row("masks", f"{m['instances']} instances of {m['images_in_image_store']} images"
                  f" ({'complete' if m['complete'] else 'INCOMPLETE'}; block-wise labels "
                  f"{weak}; freqdata inspect {m['store']})")
    out.print(t)
    st = Table(title="per-channel statistics (first 8 channels)")
    for col in ("channel", "mean", "std"):
        st.add_column(col, justify="right")
    for name, m, sd in list(zip(s.channel_names, s.mean, s.std, strict=True))[:8]:
        st.add_row(name, f"{m:.2f}", f"{sd:.2f}")
    out.print(st)
    shown = s.errors if errors else s.errors[:5]
    for err in shown:
        out.print(f"[red]failed[/] #{err['index']} {err['path']}: {err['reason']}")
    if len(s.errors) > len(shown):
        out.print(f"... {len(s.errors) - len(shown)} more failures (--errors lists all)")


plain_help(app)  # last: every command above is registered (usage "SRC OUT", no "<bool>")
