"""``freqdata encode masks``: COCO instance masks → DCT-Mask / PatchDCT vectors in a store.

Registered on the ``encode`` group by cli/main.py; :func:`inspect_masks` is what
``freqdata inspect`` prints for a mask store. Exit status: 0 ok, 1 some annotations failed
(listed in the store's error log and the summary), 2 bad usage (nothing written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from freqdata.cli.common import EXIT_OK, EXIT_SOME_FAILED, console, fail, human, int_list
from freqdata.errors import DataError, UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS


def encode_masks_cmd(
    annotations: Annotated[Path, typer.Argument(help="COCO instances_*.json file.")],
    out: Annotated[Path | None, typer.Argument(
        help="Mask store to write (a Zarr v3 directory); omit with --into.")] = None,
    into: Annotated[Path | None, typer.Option(
        help="Add the masks as the 'masks' group of this image store (same images, matched "
             "by file name / COCO id) instead of writing OUT.")] = None,
    k: Annotated[int, typer.Option("--k", help="DCT-Mask grid size K.")] = 128,
    n: Annotated[int, typer.Option("--n", help="DCT coefficients kept per mask.")] = 300,
    method: Annotated[str, typer.Option(
        help="box: polygons rasterized in the box at K x K (DCT-Mask / detectron2); crop: "
             "full-image mask, ROIAlign crop.")] = "box",
    patch: Annotated[bool, typer.Option(
        "--patch/--no-patch", help="Also PatchDCT vectors and labels (112x112 mask).")] = True,
    weak: Annotated[str | None, typer.Option(
        help="Block-wise semantic labels for these nu_max, e.g. 8,16,32 (plus the full "
             "category map).")] = None,
    include_crowd: Annotated[bool, typer.Option(
        help="Encode crowd regions as instances too (default: skip and count them).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store / masks group.")]
    = False,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted encode (same annotations and options).")] = False,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (a "
             "LocalCluster of N workers). Needs dask[distributed]; see docs/scale-out.md.")]
    = None,
    max_pixels: Annotated[int, typer.Option(
        help="Refuse images larger than this (height x width) and polygons whose rasterization "
             "needs more points; recorded as failed annotations (same limit as encode "
             "images).")] = DEFAULT_MAX_PIXELS,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Encode COCO instance masks (DCT-Mask, PatchDCT, block-wise labels) into a Zarr store.

    Prints a summary. Exit 1 if some annotations could not be encoded (see the error log),
    2 for bad options or a file that is not COCO (nothing written).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from freqdata.masks.store import encode_masks

    if (out is None) == (into is None):
        fail("give exactly one of OUT (a new mask store) and --into IMAGE_STORE")
    if not annotations.is_file():
        fail(f"{annotations} is not a file")
    nus = int_list(weak, "--weak", allow_empty=True)
    target = out if out is not None else into
    assert target is not None
    if resume and overwrite:
        fail("--resume and --overwrite exclude each other")
    if out is not None and out.exists() and not (overwrite or resume):
        fail(f"{out} exists: use --resume to continue it or --overwrite to replace it")
    if scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError as e:
            fail(f"--scheduler needs dask[distributed] ({e})")
    bar = Progress(TextColumn("[bold]encoding masks"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TextColumn("[red]{task.fields[failed]} failed"),
                   TimeElapsedColumn(), console=console, disable=quiet)
    tasks: list[Any] = []  # the bar appears with the first progress report, after validation

    def on_progress(done: int, total: int, failed: int) -> None:
        if not tasks:
            bar.start()
            tasks.append(bar.add_task("encode", total=None, failed=0))
        bar.update(tasks[0], completed=done, total=total, failed=failed)

    try:
        summary = encode_masks(annotations, out, into=into, k=k, n=n, method=method,
                               patch=patch, weak=nus, include_crowd=include_crowd,
                               overwrite=overwrite, resume=resume, scheduler=scheduler,
                               on_progress=on_progress, max_pixels=max_pixels)
    except DataError as e:  # a store that cannot be used (resume, --into): exit 1
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(EXIT_SOME_FAILED) from None
    except (UsageError, FileExistsError, FileNotFoundError) as e:  # bad options or files
        fail(str(e))
    finally:
        bar.stop()
    table = Table(title=f"freqdata encode masks → {summary.out}", show_header=False)
    reasons: dict[str, int] = {}
    for e in summary.errors:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    rows = [
        ("images", str(summary.images)
         + (f" ({summary.matched_images} in the image store)"
            if summary.matched_images is not None else "")
         + (f" (resumed at {summary.resumed_from})" if summary.resumed_from else "")),
        ("instances encoded", str(summary.instances)),
        ("skipped (policy)", ", ".join(f"{r}: {c}" for r, c in summary.skipped.items())
         or "none"),
        ("failed", str(summary.failed) + (" (" + ", ".join(f"{r}: {c}" for r, c in
                                                          sorted(reasons.items())) + ")"
                                          if reasons else "")),
        ("config", f"K={k} n={n} method={method} patch={'112/8/6' if patch else 'no'} "
                   f"weak={','.join(map(str, nus)) or 'no'}"),
        ("arrays (raw)", human(summary.raw_bytes)),
        ("store bytes on disk", human(summary.store_bytes)),
        ("time", f"{summary.seconds:.2f} s "
                 f"({summary.instances / max(summary.seconds, 1e-9):.0f} instances/s)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    for e in summary.errors[:20]:
        console.print(f"[red]failed[/] annotation #{e['index']} (id {e['ann_id']}, image "
                      f"{e['image_id']}): {e['reason']}", soft_wrap=True)
    if len(summary.errors) > 20:
        console.print(f"... and {len(summary.errors) - 20} more "
                      f"(freqdata inspect {target} --errors)")
    raise typer.Exit(EXIT_SOME_FAILED if summary.failed else EXIT_OK)


def mask_store_info(path: Path) -> dict[str, Any]:
    """The summary ``freqdata inspect`` shows for a mask store (JSON-able)."""
    from freqdata.masks.store import open_mask_store
    from freqdata.store import store_bytes

    s = open_mask_store(path)
    first: dict[str, list[int]] = {"vectors": list(s.vectors.shape[1:])}
    if s.config["patch"]:
        first["patch_vectors"] = list(s.patch_vectors.shape[1:])
        first["patch_labels"] = list(s.patch_labels.shape[1:])
    return {
        "store": str(path),
        "format": s.attrs["format"],
        "complete": s.complete,
        "instances": len(s),
        "images": len(s.images),
        "images_in_image_store": int((s.images.image_index >= 0).sum()),
        "failed": len(s.errors),
        "skipped": s.skipped,
        "per_instance_shapes": first,
        "weak_nus": s.nus,
        "categories": len(s.categories),
        "config": {key: v for key, v in s.config.items()
                   if key not in ("dct", "patchdct", "weak_labels")},
        "bytes_on_disk": store_bytes(s.path),
    }


def inspect_masks(path: Path, *, errors: bool = False, as_json: bool = False) -> None:
    """Print a mask store's summary (``freqdata inspect`` on a mask store)."""
    from freqdata.masks.store import open_mask_store

    info = mask_store_info(path)
    if as_json:
        info["errors"] = open_mask_store(path).errors
        print(json.dumps(info, indent=2))
        return
    s = open_mask_store(path)
    out = Console()
    t = Table(title=f"freqdata mask store {path}", show_header=False)
    t.add_row("status", "complete" if info["complete"] else
              "[bold red]INCOMPLETE[/] (the encode did not finish: encode again)")
    for key in ("instances", "images", "images_in_image_store", "failed", "categories"):
        t.add_row(key, str(info[key]))
    t.add_row("skipped", ", ".join(f"{r}: {c}" for r, c in info["skipped"].items()) or "none")
    t.add_row("per instance", ", ".join(f"{name} {tuple(v)}"
                                        for name, v in info["per_instance_shapes"].items()))
    t.add_row("block-wise labels", ", ".join(f"nu{v}" for v in info["weak_nus"]) or "none")
    for key, v in info["config"].items():
        t.add_row(key, str(v))
    t.add_row("bytes on disk", human(info["bytes_on_disk"]))
    out.print(t)
    shown = s.errors if errors else s.errors[:5]
    for e in shown:
        out.print(f"[red]failed[/] annotation #{e['index']} (id {e['ann_id']}): {e['reason']}")
    if len(s.errors) > len(shown):
        out.print(f"... {len(s.errors) - len(shown)} more failures (--errors lists all)")
