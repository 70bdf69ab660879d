"""``freqdata quality ...``: how faithful a representation is (tables, JSON, PNG).

Each command prints a plain-text table on stdout, ``--json PATH`` writes the full result and
``--png PATH`` a figure. Exit status: 0 (also when a structure check fails: the lines say
FAIL), 2 for bad usage.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from freqdata.cli.common import console, fail, int_list, reported

quality_app = typer.Typer(help="Representation quality reports.", no_args_is_help=True)

def _write_json(result: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _first_images(annotations: Path, count: int | None) -> list[int] | None:
    """The ``count`` smallest image ids of the file (None = all)."""
    if count is None:
        return None
    if count < 1:
        fail(f"--max-images must be >= 1, got {count}")
    from freqdata.masks import load_coco

    return sorted(int(im["id"]) for im in load_coco(annotations)["images"])[:count]


def _progress(quiet: bool, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    console=console, disable=quiet, transient=True)


_MASKS_HELP = (
    "DCT-Mask representation quality: mean IoU between every ground-truth mask (full image) "
    "and its reconstruction (decode, paste bilinearly into the box, >= 0.5), for the K x K "
    "grid alone and for n DCT coefficients at each K; optional boundary IoU (Cheng et al. "
    "2021, dilation ratio 0.02). Prints the paper's figures beside ours and PASS/FAIL lines "
    "for the paper's structure."
)


@quality_app.command("masks", help=_MASKS_HELP)
def masks_cmd(
    annotations: Annotated[Path, typer.Argument(help="COCO instances_*.json file.")],
    k: Annotated[str, typer.Option("--k", help="Grid sizes K, comma-separated.")]
    = "28,64,128,256",
    n: Annotated[str, typer.Option("--n", help="DCT vector lengths n, comma-separated.")]
    = "100,300,500,700",
    method: Annotated[str, typer.Option(help="box (DCT-Mask's targets, default) or crop.")]
    = "box",
    protocol: Annotated[str, typer.Option(
        help="full-image: foreground IoU vs the full-image ground truth (default); "
             "dctmask-repo: DCT-Mask's evaluate_iou.py (two-class IoU inside the rounded "
             "box, OpenCV bilinear resize), the measure behind the paper's table.")]
    = "full-image",
    boundary: Annotated[bool, typer.Option(help="Also the boundary IoU (full-image "
                                           "protocol).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.")]
    = None,
    png_path: Annotated[Path | None, typer.Option("--png", help="Draw 4 instances, their "
                                                  "reconstructions at n=100/300 and errors.")]
    = None,
    images: Annotated[Path | None, typer.Option(help="Folder of the JPEGs: adds the photo "
                                                "crop to the --png figure.")] = None,
    max_images: Annotated[int | None, typer.Option(help="Use only the first N images (by "
                                                   "id): a quick look.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata quality masks``: see ``_MASKS_HELP`` and :mod:`freqdata.masks.report`."""
    from freqdata.masks.report import masks_quality, render_masks_png, render_masks_table

    ks, ns = int_list(k, "--k"), int_list(n, "--n")
    if method not in ("box", "crop"):
        fail(f"--method must be box or crop, got {method!r}")
    if protocol not in ("full-image", "dctmask-repo"):
        fail(f"--protocol must be full-image or dctmask-repo, got {protocol!r}")
    if boundary and protocol != "full-image":
        fail("--boundary needs --protocol full-image")
    if not annotations.is_file():
        fail(f"{annotations} is not a file")
    if min(ks) < 1 or min(ns) < 1:
        fail("K and n must be >= 1")
    t0 = time.perf_counter()
    with _progress(quiet, "reconstructing") as bar:
        task = bar.add_task("q", total=None)
        with reported():  # not COCO instances: UsageError
            q = masks_quality(annotations, ks, ns, method=method, protocol=protocol,
                              boundary=boundary,
                              image_ids=_first_images(annotations, max_images),
                              on_progress=lambda d, t: bar.update(task, completed=d, total=t))
    q.result["seconds"] = round(time.perf_counter() - t0, 2)
    parts = ["freqdata", "quality", "masks", str(annotations), "--k", k, "--n", n,
             "--method", method, "--protocol", protocol] + (
                 ["--boundary"] if boundary else []) + (
                 ["--max-images", str(max_images)] if max_images else [])
    q.result["command"] = shlex.join(parts)
    print(render_masks_table(q.result))
    print(f"({q.result['seconds']:.1f} s)")
    _write_json(q.result, json_path)
    if png_path is not None:
        print(f"wrote {render_masks_png(q, annotations, png_path, images_dir=images)}")


_WEAK_HELP = (
    "Block-wise weak labels per band limit nu_max: spectral energy of the label maps kept "
    "in |f| <= nu_max (mean over images) and the mIoU of the block-wise labels against the "
    "full labels (an upper bound for training on them). Label maps come from the instance "
    "annotations (background 0, categories 1..K, larger instances first, crowd = ignore). "
    "R_ce needs a trained model's logits and is not computed."
)


@quality_app.command("weak", help=_WEAK_HELP)
def weak_cmd(
    annotations: Annotated[Path, typer.Argument(help="COCO instances_*.json file.")],
    nu: Annotated[str, typer.Option("--nu", help="Band limits nu_max, comma-separated.")]
    = "4,8,16,32,64",
    crowd: Annotated[str, typer.Option(help="Crowd regions: ignore (255), category or skip.")]
    = "ignore",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.")]
    = None,
    png_path: Annotated[Path | None, typer.Option("--png", help="Line plot + an example "
                                                  "image's labels (PNG).")] = None,
    max_images: Annotated[int | None, typer.Option(help="Use only the first N images (by "
                                                   "id): a quick look.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata quality weak``: see ``_WEAK_HELP`` and :mod:`freqdata.masks.report`."""
    from freqdata.masks.report import render_weak_png, render_weak_table, weak_quality

    nus = int_list(nu, "--nu")
    if crowd not in ("ignore", "category", "skip"):
        fail(f"--crowd must be ignore, category or skip, got {crowd!r}")
    if not annotations.is_file():
        fail(f"{annotations} is not a file")
    t0 = time.perf_counter()
    with _progress(quiet, "label maps") as bar:
        task = bar.add_task("w", total=None)
        with reported():  # not COCO instances: UsageError
            result = weak_quality(annotations, nus, crowd=crowd,
                                  image_ids=_first_images(annotations, max_images),
                                  on_progress=lambda d, t: bar.update(task, completed=d,
                                                                      total=t))
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["command"] = shlex.join(["freqdata", "quality", "weak", str(annotations),
                                    "--nu", nu, "--crowd", crowd] + (
                                        ["--max-images", str(max_images)] if max_images
                                        else []))
    print(render_weak_table(result))
    print(f"({result['seconds']:.1f} s)")
    _write_json(result, json_path)
    if png_path is not None:
        print(f"wrote {render_weak_png(result, png_path)}")
