"""``python -m freqdata.bench.training_store``: which store to train from with device augmentation.

A training store holds every image resized to a shorter side ``S`` and cut to its centre
square ``S x S`` (``--geometry S:S``: no centre crop to the model's input, so
RandomResizedCrop has the whole square to draw from) with a preset's channels. This
measures, per ``(preset, S)``, on real JPEGs:

* **stored bytes** per sample: the cube array of a real store of the files on disk (Blosc,
  the writer's defaults), divided by the number of samples;
* **bytes sent to the device** per sample: ``C * (S/8)^2 * 2`` (int16; half with the int8
  transport), what the trainer's ``--augment`` moves before cropping on the device;
* **crop error**: the DCT-domain RandomResizedCrop to ``size`` blocks (448 pixels at 56x56)
  of the stored cube (torchvision's boxes drawn on the ``S x S`` square, ``"triangle"``
  kernel), on the channels of the *target* preset the model reads (``dctnet-24``; a store
  may hold more, the trainer keeps the target's after the crop), against the on-the-fly
  reference for the *same* region of the source: the
  decoded, upright source planes (float) resampled once from that region — a fractional box
  in source pixels — to 448 x 448 by PIL's ``BILINEAR`` (the same triangle filter, the pixel
  path's resampler) and block-DCT'd in float64 (no uint8 or int16 rounding). Reported as RMS
  error / RMS value over the preset's luma and chroma channels, the luma mean absolute error
  in coefficient units, and the luma ratio for small boxes (area < 25 % of the square, where
  magnification brings unstored frequencies into the band). The ``all`` rows are the floor
  that resizing the store first (two resamplings instead of one) and rounding cost.

Writes JSON (``--out``); docs/loader.md ("Stores for training") has the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freqdata.augment import resized_crop
from freqdata.augment.sampling import draw_boxes
from freqdata.bench.augment import preset_channels
from freqdata.dct import block_dct
from freqdata.errors import UsageError
from freqdata.transforms import channel_info

__all__ = ["main", "measure_training_stores", "stored_bytes"]

def stored_bytes(files: Sequence[str | Path], preset: str, geometry: str) -> float:
    """On-disk bytes of the ``cubes`` array per sample of a store of ``files``."""
    from freqdata.job import EncodeOptions, encode_images
    from freqdata.sources import Sources

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.zarr"
        src = Sources([str(f) for f in files], [0] * len(files), ["x"])
        encode_images(src, out, EncodeOptions(preset, "pixels", geometry), workers=0)
        total = sum(p.stat().st_size for p in (out / "cubes").rglob("*") if p.is_file())
    return total / len(files)


def _reference(planes: np.ndarray, box: tuple[float, ...], side: int) -> np.ndarray:
    """``(192, side/8, side/8)`` float64: the float box ``(x0, y0, x1, y1)`` of the source
    planes ``(3, H, W)`` resampled to ``side x side`` by PIL ``BILINEAR``, block DCT."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(p.astype(np.float32), mode="F").resize(
        (side, side), Image.Resampling.BILINEAR, box=box), np.float64) for p in planes]  # fmt: skip
    cube = block_dct(np.stack(out), dtype=np.float64)  # (3, 64, hb, wb)
    return cube.reshape(3 * 64, *cube.shape[-2:])


def measure_training_stores(
    files: Sequence[str | Path],
    presets: Sequence[str] = ("dctnet-24", "dctnet-48", "all"),
    sides: Sequence[int] = (256, 384, 512),
    boxes_per_file: int = 4,
    size: tuple[int, int] = (56, 56),
    seed: int = 0,
    target: str = "dctnet-24",
) -> dict[str, Any]:
    """The table of the module docstring: one row per ``(preset, S)``; every preset must
    hold the ``target`` preset's channels."""
    from freqdata.encode import encode_image
    from freqdata.pixels import centre_offset, load_ycbcr, resized_size

    acc: dict[tuple[str, int], dict[str, float]] = {}
    for fi, f in enumerate(files):
        img = load_ycbcr(f, "none")
        width, height = img.source_size
        planes = img.planes[:, :height, :width].astype(np.float64)
        for s in sides:
            tw, th = resized_size(width, height, s)
            x0, y0 = centre_offset(tw, s), centre_offset(th, s)
            sx, sy = width / tw, height / th
            gen = torch.Generator().manual_seed(seed * 100_003 + fi)
            boxes = draw_boxes(s, s, boxes_per_file, gen)
            refs = [torch.from_numpy(_reference(planes, (
                (x0 + left) * sx, (y0 + top) * sy, (x0 + left + w) * sx, (y0 + top + h) * sy,
            ), size[0] * 8)) for top, left, h, w in boxes.tolist()]  # fmt: skip
            t_names, t_idx = preset_channels(target)
            luma = torch.as_tensor(channel_info(t_names).component == 0)
            for preset in presets:
                names, _ = preset_channels(preset)
                if not set(t_names) <= set(names):
                    raise UsageError(f"{preset} does not hold the channels of {target}")
                pick = [names.index(n) for n in t_names]
                cube = torch.from_numpy(
                    encode_image(f, preset, "pixels", f"{s}:{s}").astype(np.float64)
                )[None]
                a = acc.setdefault((preset, s), dict.fromkeys(
                    ("le", "lr", "ce", "cr", "labs", "ln", "sle", "slr"), 0.0))  # fmt: skip
                for b, ref in zip(boxes, refs, strict=True):
                    got = resized_crop(cube, names, b[None], size)[0][pick]
                    e, r = got - ref[t_idx], ref[t_idx]
                    a["le"] += float((e[luma] ** 2).sum())
                    a["lr"] += float((r[luma] ** 2).sum())
                    a["ce"] += float((e[~luma] ** 2).sum())
                    a["cr"] += float((r[~luma] ** 2).sum())
                    a["labs"] += float(e[luma].abs().sum())
                    a["ln"] += e[luma].numel()
                    if float(b[2] * b[3]) < 0.25 * s * s:
                        a["sle"] += float((e[luma] ** 2).sum())
                        a["slr"] += float((r[luma] ** 2).sum())
    rows = []
    for (preset, s), a in acc.items():
        names, _ = preset_channels(preset)
        rows.append({
            "preset": preset,
            "geometry": f"{s}:{s}",
            "channels": len(names),
            "stored_bytes_per_sample": stored_bytes(files, preset, f"{s}:{s}"),
            "device_bytes_per_sample_int16": len(names) * (s // 8) ** 2 * 2,
            "luma_rel": (a["le"] / a["lr"]) ** 0.5,
            "chroma_rel": (a["ce"] / a["cr"]) ** 0.5,
            "luma_mean_abs": a["labs"] / a["ln"],
            "luma_rel_small_boxes": (a["sle"] / a["slr"]) ** 0.5 if a["slr"] else None,
        })  # fmt: skip
    return {
        "what": "RandomResizedCrop from an S:S training store (DCT domain) vs the on-the-fly "
        "reference (the same source region resampled once on float pixels, PIL BILINEAR, "
        "float64 DCT), same boxes",
        "target": target,
        "files": [Path(f).name for f in files],
        "boxes_per_file": boxes_per_file,
        "output_blocks": list(size),
        "seed": seed,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (module docstring)."""
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("FREQDATA_DATA", "../shared/data"))
    ap.add_argument("--images", type=Path, default=data / "imagenet-sample" / "images")
    ap.add_argument("--files", type=int, default=16, help="the first N JPEGs, sorted")
    ap.add_argument("--boxes", type=int, default=4, help="random boxes per file and side")
    ap.add_argument("--out", type=Path, default=None, help="JSON output")
    a = ap.parse_args(argv)
    files = sorted(a.images.glob("*.JPEG"))[: a.files]
    res = measure_training_stores(files, boxes_per_file=a.boxes)
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    print("| preset | geometry | stored KB/sample | device KB/sample (int16) | luma rel | "
          "luma rel, boxes < 25 % | chroma rel | luma mean abs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['preset']} | {r['geometry']} | {r['stored_bytes_per_sample'] / 1e3:.1f} | "
              f"{r['device_bytes_per_sample_int16'] / 1e3:.1f} | {r['luma_rel']:.3f} | "
              f"{r['luma_rel_small_boxes'] or float('nan'):.3f} | {r['chroma_rel']:.3f} | "
              f"{r['luma_mean_abs']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
